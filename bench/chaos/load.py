#!/usr/bin/python3
"""Load: the control plane under 1,000 requests/s of mixed API traffic plus 5,000 SSE watchers.

One control plane (release build) and one real worker with room for one
job. Every job's input is served by a "trickle" server in this script that
sends its headers and then 64 bytes every 2 s, so the worker is busy with one
download for as long as the run lasts and every other job waits in the queue
(the state of a loaded service: "workers present but busy").

1. Baseline: GET /health alone at the target rate for --baseline-seconds.
2. --watched-jobs jobs are submitted (priority -10, behind everything) and
   --watchers SSE clients attach to their streams, spread evenly
   (bench/native/sse_watchers.cc, one epoll loop per job).
3. The mix at the target rate for --minutes (bench/native/load_mix.cc, an
   open-loop generator: request i is due at start + i/rate and its latency
   counts from then, so a server that falls behind cannot hide it): per mille,
   GET /health 200, GET job 300, list with cursor pagination 100 (every other
   chain filtered by status), GET /api/v1/workers/status 100, GET /metrics 50,
   POST /api/v1/jobs 125, cancel 125 (the oldest job the run submitted, so the
   queue stays bounded; the running one included, which takes CancelJob to
   the worker).
   Every 10 s: the control plane's VmRSS, open fds, threads and its
   flux_sse_connections gauge.
4. The watched jobs are cancelled: every watcher must then hold the same
   complete event sequence of its job, ending with the terminal event (a
   stream dropped on the way would not).

Errors = responses other than the expected ones (2xx; 409 for a cancel of a
job that already ended; 503 queue_full is counted apart as a refusal the
configuration asks for) + broken connections + requests the generator could
not send in time. The "## Load" section of docs/RELIABILITY.md gets the
figures. Exit status 1 on any error or dropped stream.

Usage: bench/chaos/load.py [--minutes 5] [--rate 1000] [--watchers 5000] [--bin-dir build/r-x/bin]
"""
import argparse
import http.server
import json
import os
import select
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chaos_common as cc  # noqa: E402
from chaos_common import bc  # noqa: E402

TITLE = "Load"
ROUTES = ("health", "get", "list", "workers", "metrics", "submit", "cancel")
ROUTE_LABELS = {
    "health": "GET /health", "get": "GET /api/v1/jobs/{id}", "list": "GET /api/v1/jobs?limit=20&cursor=…",
    "workers": "GET /api/v1/workers/status", "metrics": "GET /metrics", "submit": "POST /api/v1/jobs",
    "cancel": "POST /api/v1/jobs/{id}/cancel",
}
EXPECTED = {"submit": {202}, "cancel": {200, 409}}
MIX = "health=200,get=300,list=100,workers=100,metrics=50,submit=125,cancel=125"
# How long, and for how many finished jobs, the control plane keeps their replay
# rings (kReplayRetention, kReplayRetainedJobs in src/controlplane/app/control_plane.cc).
RETENTION_MINUTES = 10
RETAINED_JOBS = 10000


def log(message):
    print(f"[load {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Trickle:
    """Loopback HTTP server whose every GET answers 200 with a large Content-Length and then 64 bytes every
    2 s: a download that neither ends nor stalls (the worker's low-speed limit is 1 byte/s)."""

    def __init__(self):
        self.stop = threading.Event()
        self.requests = 0
        trickle = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                trickle.requests += 1
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Content-Length", str(1024 * 1024))
                    self.end_headers()
                    while not trickle.stop.wait(2.0):
                        self.wfile.write(b"\0" * 64)
                        self.wfile.flush()
                except OSError:
                    pass  # the worker gave up (a cancelled job)

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def read_prefixed(proc, prefix, timeout):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit(f"no {prefix} within {timeout} s")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"the helper exited ({proc.wait()}) before {prefix}")
        if line.startswith(prefix):
            return line[len(prefix):].strip()


def run_mix(load_bin, cp, rate, seconds, mix, input_url, ids):
    out = subprocess.run([str(load_bin), "--port", str(cp.port), "--rate", str(rate), "--seconds", str(seconds),
                          "--connections", "64", "--mix", mix, "--input-url", input_url, "--ids", ",".join(ids)],
                         capture_output=True, text=True, timeout=seconds + 120)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"load_mix failed ({out.returncode}): {out.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def proc_status(pid):
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def sse_gauge(cp):
    try:
        _, text = bc.http_call("GET", f"{cp.url}/metrics", timeout=10)
    except OSError:
        return float("nan")
    for line in str(text).splitlines():
        if line.startswith("flux_sse_connections "):
            return float(line.split()[1])
    return float("nan")


class Sampler:
    """Every `period` s: (seconds, VmRSS MiB, fds, threads, open SSE streams) of the control plane."""

    def __init__(self, cp, period=10.0):
        self.cp, self.period = cp, period
        self.samples = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        st = proc_status(self.cp.pid)
        fds = len(os.listdir(f"/proc/{self.cp.pid}/fd"))
        self.samples.append((time.monotonic() - self.t0, int(st["VmRSS"].split()[0]) / 1024, fds,
                             int(st["Threads"]), sse_gauge(self.cp)))

    def _run(self):
        while True:
            self.sample()
            if self.stop.wait(self.period):
                return

    def start(self):
        self.thread.start()

    def finish(self):
        self.stop.set()
        self.thread.join()
        self.sample()


def plateau_run(tmp, load_bin, input_url, args):
    """The mix alone at --plateau-rate on a fresh control plane for --plateau-minutes; (result, samples)."""
    tmp.mkdir(parents=True, exist_ok=True)
    with bc.Services() as services:
        worker = bc.start_worker(services, tmp, "worker-1", ALLOW_PRIVATE_INPUTS="true", MAX_CONCURRENT_JOBS=1)
        cp = bc.start_controlplane(services, tmp, [worker.address], ALLOW_PRIVATE_INPUTS="true",
                                   QUEUE_LIMIT=args.queue_limit)
        sampler = Sampler(cp)
        sampler.start()
        log(f"plateau: the mix at {args.plateau_rate:g}/s for {args.plateau_minutes:g} min on a fresh control plane")
        result = run_mix(load_bin, cp, args.plateau_rate, args.plateau_minutes * 60, args.mix, input_url, [])
        sampler.finish()
        return result, sampler.samples


def slope_per_minute(points):
    """Least-squares slope of [(seconds, value)] in value per minute."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den * 60 if den else float("nan")


def classify(route, stats):
    """(ok, expected refusals, unexpected) response counts of one route."""
    ok = expected_refusals = unexpected = 0
    for code, n in stats["statuses"].items():
        code = int(code)
        if code in EXPECTED.get(route, {200}):
            ok += n
        elif route == "submit" and code == 503:
            expected_refusals += n
        else:
            unexpected += n
    return ok, expected_refusals, unexpected


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--watchers", type=int, default=5000)
    ap.add_argument("--watched-jobs", type=int, default=10)
    ap.add_argument("--baseline-seconds", type=float, default=30)
    ap.add_argument("--queue-limit", type=int, default=1000)
    ap.add_argument("--mix", default=MIX, help="per-mille weights of the routes (see bench/native/load_mix.cc)")
    ap.add_argument("--plateau-minutes", type=float, default=0,
                    help="then the same mix without watchers on a fresh control plane for this long (more than the "
                    f"{RETENTION_MINUTES}-minute replay retention), to see where memory levels off; 0: skip")
    ap.add_argument("--plateau-rate", type=float, default=300)
    ap.add_argument("--bin-dir", default=os.environ.get("FLUX_BIN_DIR"))
    ap.add_argument("--out", default=str(cc.RELIABILITY))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    args = ap.parse_args()
    cc.use_bin_dir(args.bin_dir)
    bc.require_binaries("flux-controlplane", "flux-worker")
    nofile = bc.raise_nofile(args.watchers + 4096)
    if nofile < args.watchers + 256:
        raise SystemExit(f"open-file limit {nofile} is too low for {args.watchers} watchers")
    watchers_bin = bc.build_native("sse_watchers", ["sse_watchers.cc"])
    load_bin = bc.build_native("load_mix", ["load_mix.cc"])

    tmp = Path(tempfile.mkdtemp(prefix="flux-load-"))
    trickle = Trickle()
    input_url = f"http://127.0.0.1:{trickle.port}/input.mp4"
    watchers = []
    try:
        with bc.Services() as services:
            worker = bc.start_worker(services, tmp, "worker-1", ALLOW_PRIVATE_INPUTS="true", MAX_CONCURRENT_JOBS=1)
            cp = bc.start_controlplane(services, tmp, [worker.address], nofile=args.watchers + 4096,
                                       ALLOW_PRIVATE_INPUTS="true", QUEUE_LIMIT=args.queue_limit)
            load_before = bc.load_average()

            log(f"baseline: GET /health at {args.rate:g}/s for {args.baseline_seconds:g} s")
            baseline = run_mix(load_bin, cp, args.rate, args.baseline_seconds, "health=1", input_url, [])

            watched = []
            for i in range(args.watched_jobs):
                status, doc = bc.http_call("POST", f"{cp.url}/api/v1/jobs", {
                    "input_url": input_url, "preset": "480p_h264", "priority": -10,
                    "output": {"storage": "local", "path": f"watched/{i}.mp4"}})
                if status != 202:
                    raise SystemExit(f"submission refused: {status} {doc}")
                watched.append(doc["job_id"])
            per_job = [args.watchers // args.watched_jobs + (1 if i < args.watchers % args.watched_jobs else 0)
                       for i in range(args.watched_jobs)]
            rss_before_watchers = cp.rss_mib()
            timeout = int(args.minutes * 60 + args.baseline_seconds + 600)
            connect_started = time.monotonic()
            for job_id, count in zip(watched, per_job):
                watchers.append(subprocess.Popen(
                    [str(watchers_bin), "--port", str(cp.port), "--path", f"/api/v1/jobs/{job_id}/stream", "--count",
                     str(count), "--timeout", str(timeout)], stdout=subprocess.PIPE, text=True))
            for proc in watchers:
                read_prefixed(proc, "READY", timeout=300)
            connect_seconds = time.monotonic() - connect_started
            log(f"{args.watchers} watchers on {args.watched_jobs} jobs connected in {connect_seconds:.1f} s")

            sampler = Sampler(cp)
            sampler.start()
            log(f"mix at {args.rate:g}/s for {args.minutes:g} min")
            mix = run_mix(load_bin, cp, args.rate, args.minutes * 60, args.mix, input_url, watched)
            (tmp / "mix.json").write_text(json.dumps({"baseline": baseline, "mix": mix}, indent=1))
            sampler.finish()
            hwm = int(proc_status(cp.pid)["VmHWM"].split()[0]) / 1024

            log("cancelling the watched jobs")
            for job_id in watched:
                status, doc = bc.http_call("POST", f"{cp.url}/api/v1/jobs/{job_id}/cancel")
                if status != 200:
                    raise SystemExit(f"cancel of a watched job refused: {status} {doc}")
            results = [json.loads(read_prefixed(proc, "RESULT", timeout=120)) for proc in watchers]
            cp_alive = cp.alive()
            load_after = bc.load_average()

        plateau = None
        if args.plateau_minutes > 0:
            plateau = plateau_run(tmp / "plateau", load_bin, input_url, args)

        # ---- figures ----
        problems = []
        if not cp_alive:
            problems.append("the control plane died")
        complete = sum(r["watchers"] for r in results if r["complete"])
        dropped = args.watchers - complete
        if dropped:
            bad = [(r["final_status"], r["errors"]) for r in results if not r["complete"]]
            problems.append(f"{dropped} watchers did not get their job's complete event sequence: {bad[:3]}")
        gauge_min = min((s[4] for s in sampler.samples), default=float("nan"))
        if gauge_min < args.watchers:
            problems.append(f"open SSE streams fell to {gauge_min:.0f} during the mix (of {args.watchers})")
        rows = []
        total_unexpected = total_refused = total_conn = 0
        base_health = baseline["routes"]["health"]
        for route in ROUTES:
            s = mix["routes"][route]
            if not s["count"]:
                continue
            ok, refused, unexpected = classify(route, s)
            total_unexpected += unexpected
            total_refused += refused
            total_conn += s["conn_errors"]
            codes = ", ".join(f"{c}: {n}" for c, n in sorted(s["statuses"].items()))
            rows.append(
                f"| {ROUTE_LABELS[route]} | {s['count']:,} | {codes} | {unexpected + s['conn_errors']} | "
                f"{s['p50_ms']:.1f} / {s['p90_ms']:.1f} / {s['p99_ms']:.1f} / {s['max_ms']:.0f} | "
                f"{s['service_p50_ms']:.1f} / {s['service_p99_ms']:.1f} / {s['service_max_ms']:.0f} | "
                f"{s['p50_ms'] / max(base_health['p50_ms'], 1e-3):.1f}× / "
                f"{s['p99_ms'] / max(base_health['p99_ms'], 1e-3):.1f}× |")
            if unexpected or s["conn_errors"]:
                problems.append(f"{route}: {unexpected} unexpected statuses ({codes}), {s['conn_errors']} broken "
                                "connections")
        if total_conn:
            problems.append(f"broken connections (first ones): {mix['conn_error_notes'][:5]}")
        if mix["skipped"]:
            problems.append(f"{mix['skipped']} requests were more than 5 s overdue and not sent")
        if baseline["skipped"] or classify("health", base_health)[2] or base_health["conn_errors"]:
            problems.append(f"the /health baseline itself had errors: {base_health}")

        samples = sampler.samples
        per_10s = mix["per_10s"][:int(args.minutes * 6)] or [0]  # whole 10 s buckets only
        half = samples[-1][0] / 2
        rss_slope = slope_per_minute([(t, rss) for t, rss, *_ in samples if t >= half])
        fd_slope = slope_per_minute([(t, fds) for t, _, fds, *_ in samples if t >= half])
        rss_start, rss_end = samples[0][1], samples[-1][1]
        rss_peak = max(s[1] for s in samples)
        submitted = int(mix["routes"]["submit"]["statuses"].get("202", 0))
        kib_per_job = (rss_end - rss_start) * 1024 / submitted if submitted else float("nan")
        retention_s = RETENTION_MINUTES * 60
        after_retention = [(t, rss) for t, rss, *_ in samples if t >= retention_s + 30]
        job_rate = submitted / (args.minutes * 60) if submitted else 0
        cap_s = RETAINED_JOBS / job_rate if job_rate else float("inf")
        after_cap = [(t, rss) for t, rss, *_ in samples if t >= cap_s + 30]
        if cap_s < retention_s and len(after_cap) >= 3:
            memory_note = (
                f"The control plane keeps the SSE replay rings (for Last-Event-ID) of at most {RETAINED_JOBS:,} "
                f"finished jobs (and for at most {RETENTION_MINUTES} minutes); at {job_rate:,.0f} jobs/s that cap "
                f"is reached after ≈ {cap_s:.0f} s. From {cap_s + 30:.0f} s on RSS moved "
                f"**{slope_per_minute(after_cap):+.2f} MiB/min**: it levels off at what {RETAINED_JOBS:,} finished "
                f"jobs hold.")
        elif len(after_retention) >= 3:
            memory_note = (
                f"Past the {RETENTION_MINUTES}-minute replay retention (from {retention_s + 30} s on) RSS moved "
                f"{slope_per_minute(after_retention):+.2f} MiB/min: it levelled off at what "
                f"{RETENTION_MINUTES} minutes of finished jobs hold.")
        else:
            memory_note = (
                f"That is ≈ {kib_per_job:.1f} KiB per job submitted during the mix; the control plane keeps every "
                f"finished job's SSE replay ring (for Last-Event-ID) {RETENTION_MINUTES} minutes, so under a steady "
                f"submission rate RSS can only level off after {RETENTION_MINUTES} minutes"
                + (": see the plateau run below." if args.plateau_minutes > RETENTION_MINUTES else
                   f" (`--plateau-minutes {RETENTION_MINUTES + 3}` shows where)."))
        achieved = mix["completed"] / (args.minutes * 60)
        verdict = "no error, no dropped stream" if not problems else f"{len(problems)} problem(s)"
        section = [
            f"**{args.rate:,.0f} requests/s of mixed API traffic for {args.minutes:g} min with {args.watchers:,} SSE "
            f"watchers: {verdict}.** Rate achieved {achieved:,.0f} requests/s ({mix['completed']:,} responses; "
            f"{mix['skipped']} requests skipped as more than 5 s overdue). Control plane RSS {rss_start:.0f} MiB at "
            f"the start of the mix (watchers connected), peak {rss_peak:.0f} MiB (VmHWM {hwm:.0f}), {rss_end:.0f} MiB "
            f"at the end; slope over the last half **{rss_slope:+.2f} MiB/min** (open fds {fd_slope:+.1f}/min) with "
            f"{submitted:,} jobs submitted and cancelled during the mix. {memory_note}",
            "",
            "Latency from the moment each request was due (open loop: time spent waiting for a free connection "
            "counts) to its complete response; beside it the time from sending to the complete response; and the "
            "ratio to GET /health alone at the same rate before the watchers connected (baseline p50 "
            f"{base_health['p50_ms']:.2f} ms, p99 {base_health['p99_ms']:.2f} ms, {baseline['completed']:,} requests, "
            f"same run). Responses per 10 s: {min(per_10s):,} to {max(per_10s):,} (target {args.rate * 10:,.0f}); "
            "dips followed by catch-up are stalls of the whole machine or of the control plane, and show in the "
            "p99 of every route alike:",
            "",
            "| route | requests | statuses | errors | due → response p50 / p90 / p99 / max (ms) | sent → response "
            "p50 / p99 / max (ms) | due → response vs. /health baseline p50 / p99 |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Errors: {total_unexpected} unexpected statuses, {total_conn} broken connections; submissions refused "
            f"with 503 queue_full (QUEUE_LIMIT {args.queue_limit}): {total_refused}. SSE: {complete:,} of "
            f"{args.watchers:,} watchers on {args.watched_jobs} queued jobs received their job's complete event "
            f"sequence through to the terminal event when the jobs were cancelled after the mix; the "
            f"`flux_sse_connections` gauge stayed ≥ {gauge_min:,.0f} throughout. Connecting them took "
            f"{connect_seconds:.1f} s; RSS {rss_before_watchers:.0f} MiB before them.",
            "",
            "Samples every 10 s (s: RSS MiB, fds, threads, SSE streams): "
            + "; ".join(f"{t:.0f}: {rss:.0f}, {fds}, {thr}, {sse:.0f}" for t, rss, fds, thr, sse in samples) + ".",
            "",
        ]
        if plateau:
            p_result, p_samples = plateau
            p_bad = sum(classify(r, p_result["routes"][r])[2] + p_result["routes"][r]["conn_errors"] for r in ROUTES)
            if p_bad or p_result["skipped"]:
                problems.append(f"the plateau run had {p_bad} errors and {p_result['skipped']} skipped requests")
            at_retention = min(p_samples, key=lambda x: abs(x[0] - retention_s))
            after = [(t, rss) for t, rss, *_ in p_samples if t >= retention_s + 30]
            p_submitted = int(p_result["routes"]["submit"]["statuses"].get("202", 0))
            section += [
                f"Where memory levels off: the same mix without watchers at {args.plateau_rate:g} requests/s for "
                f"{args.plateau_minutes:g} min on a fresh control plane ({p_submitted:,} jobs submitted and cancelled, "
                f"{p_bad} errors, {p_result['achieved_rate']:.0f} requests/s achieved): RSS {p_samples[0][1]:.0f} MiB "
                f"at the start, {at_retention[1]:.0f} MiB at {at_retention[0]:.0f} s, {p_samples[-1][1]:.0f} MiB at the "
                f"end; slope from {retention_s + 30} s on **{slope_per_minute(after):+.2f} MiB/min** (before: "
                f"{slope_per_minute([(t, rss) for t, rss, *_ in p_samples if t < retention_s]):+.2f} MiB/min). "
                "Samples every 10 s (s: MiB): "
                + ", ".join(f"{t:.0f}: {rss:.0f}" for t, rss, *_ in p_samples[::3]) + ".",
                "",
            ]
        if problems:
            section += ["Problems:", "", *[f"- {p}" for p in problems], ""]
        section.append(
            f"Command: `bench/chaos/load.py --minutes {args.minutes:g} --rate {args.rate:g} --watchers {args.watchers}"
            + ("" if args.mix == MIX else f" --mix {args.mix}")
            + (f" --plateau-minutes {args.plateau_minutes:g} --plateau-rate {args.plateau_rate:g}" if plateau else "")
            + "`"
            f" (release build, 2 HTTP threads). Generator `bench/native/load_mix.cc` (64 keep-alive connections, one "
            "epoll loop); watchers `bench/native/sse_watchers.cc`; one worker with room for one job, busy with a "
            "download that never ends, so submitted jobs queue and are cancelled by the mix. Everything shares the "
            f"2 cores. Load average 1 min {load_before:.1f} before, {load_after:.1f} after (other engineers' builds "
            "share the machine).")
        cc.write_reliability_section(Path(args.out), TITLE, "\n".join(section))
        print("\n".join(section))
        if problems:
            print("\nPROBLEMS:\n" + "\n".join(problems), file=sys.stderr)
            return 1
        return 0
    finally:
        for proc in watchers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        trickle.close()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
