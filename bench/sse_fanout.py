#!/usr/bin/env python3
"""SSE fan-out: 10,000 watchers of one job, each must get every event.

A control plane and one real worker (release builds, local storage) run a real
encoding job. Its input is served by a gate in this script that holds the
download until every watcher is connected, so all watchers see the same event
sequence from the start of the job to its terminal event.

Watchers are raw non-blocking sockets on one epoll loop in a small C++ helper
(bench/native/sse_watchers.cc: a Python loop needs ~10x the CPU per event and,
on 2 shared cores, starves the server it measures). Each socket has
SO_TIMESTAMPNS set, so the receive time of an event is the kernel's arrival
time on that socket, not the time the loop got round to reading it (events the
kernel merged before a read are counted: for those only an upper bound is
known, and the upper bound is used). Latency of an event = that arrival time minus the
event's own `timestamp` field, which the control plane sets when it builds the
event from the worker's message (same machine, same clock; the field has
millisecond resolution, so figures can be up to 1 ms high). The headline is
the p50/p99 over events of the LAST watcher's arrival; the baseline is the same
measure with 1 watcher on an identical job, in the same run.

Memory: VmRSS of the control plane before the watchers connect, with all of
them connected, and its peak (VmHWM) at the end.

The worker and its ffmpeg run at nice 19 (--worker-nice): in production they are on other machines.
Every process stays in this script's session, because with autogroup scheduling a session of its own would
give the worker an equal share of the CPU whatever its nice value (see bench_common.Service).

Usage: bench/sse_fanout.py [--watchers 10000] [--clip-seconds 10] [--preset 480p_h264] [--out docs/BENCHMARKS.md]
                           [--worker-nice 19|N|idle] [--[no-]pin-threads] [--bin-dir DIR]
The binaries come from build/bin unless --bin-dir (or FLUX_BIN_DIR) names another build's bin directory.
"""
import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc  # noqa: E402
import bench_report  # noqa: E402

TITLE = "SSE fan-out (bench/sse_fanout.py)"


def read_line(proc, prefix, timeout):
    """The next stdout line of `proc` starting with `prefix` (the rest of it), within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit(f"no {prefix} from the watchers within {timeout} s")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"the watchers exited ({proc.wait()}) before {prefix}")
        if line.startswith(prefix):
            return line[len(prefix):].strip()


def run_fanout(cp, gate, watchers_bin, clip_name, preset, watchers_count, job_timeout):
    """Submits a job gated on `clip_name`, attaches the watchers, releases the input, collects."""
    status, doc = bc.http_call("POST", f"{cp.url}/api/v1/jobs", {
        "input_url": f"http://127.0.0.1:{gate.port}/{clip_name}", "preset": preset,
        "output": {"storage": "local", "path": f"bench/{clip_name}"}})
    if status != 202:
        raise SystemExit(f"submission refused: {status} {doc}")
    job_id = doc["job_id"]
    # The job is on the worker and stuck in its download: no event until the gate opens.
    deadline = time.monotonic() + 60
    while True:
        _, job = bc.http_call("GET", f"{cp.url}/api/v1/jobs/{job_id}")
        if job.get("phase") == "downloading":
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"job never reached its download: {job}")
        time.sleep(0.05)
    time.sleep(0.3)

    rss_before = cp.rss_mib()
    proc = subprocess.Popen([str(watchers_bin), "--port", str(cp.port), "--path", f"/api/v1/jobs/{job_id}/stream",
                             "--count", str(watchers_count), "--timeout", str(job_timeout + 120)],
                            stdout=subprocess.PIPE, text=True)
    try:
        connect_started = time.monotonic()
        read_line(proc, "READY", timeout=120)
        connect_seconds = time.monotonic() - connect_started
        time.sleep(0.5)
        rss_connected = cp.rss_mib()
        _, metrics = bc.http_call("GET", f"{cp.url}/metrics")
        open_streams = float("nan")
        for line in str(metrics).splitlines():
            if line.startswith("flux_sse_connections "):
                open_streams = float(line.split()[1])
        cpu0 = cp.cpu_seconds()
        released = time.monotonic()
        gate.open(clip_name)
        result = json.loads(read_line(proc, "RESULT", timeout=job_timeout))
        job_seconds = time.monotonic() - released
        cpu = cp.cpu_seconds() - cpu0
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result.update(job_id=job_id, rss_before=rss_before, rss_connected=rss_connected, open_streams=open_streams,
                  connect_seconds=connect_seconds, job_seconds=job_seconds, cpu_seconds=cpu)
    return result


def peak_rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--watchers", type=int, default=10000)
    ap.add_argument("--clip-seconds", type=int, default=10)
    ap.add_argument("--preset", default="480p_h264")
    ap.add_argument("--job-timeout", type=int, default=600)
    ap.add_argument("--http-threads", type=int, default=2, help="the control plane's HTTP_THREADS")
    ap.add_argument("--pin-threads", action=argparse.BooleanOptionalAction, default=True,
                    help="the control plane's HTTP_PIN_THREADS (one io thread per CPU)")
    ap.add_argument("--worker-nice", default="19", help="nice increment of the worker and its ffmpeg, or idle")
    ap.add_argument("--raw-json", help="also write both runs' raw results (per-event figures) to this file")
    ap.add_argument("--out", default=str(bc.DOCS))
    ap.add_argument("--bin-dir", default=os.environ.get("FLUX_BIN_DIR"),
                    help="directory of flux-controlplane and flux-worker (default build/bin)")
    args = ap.parse_args()
    if args.worker_nice != "idle":
        args.worker_nice = int(args.worker_nice)
    if args.bin_dir:
        bc.BIN = Path(args.bin_dir).resolve()
    bc.require_binaries("flux-controlplane", "flux-worker")
    nofile = bc.raise_nofile(args.watchers + 1024)
    if nofile < args.watchers + 64:
        raise SystemExit(f"open-file limit {nofile} is too low for {args.watchers} watchers")

    watchers_bin = bc.build_native("sse_watchers", ["sse_watchers.cc"])
    floor_bin = bc.build_native("send_floor", ["send_floor.cc"])
    tmp = Path(tempfile.mkdtemp(prefix="flux-bench-sse-"))
    gate = None
    try:
        media = tmp / "media"
        clip = bc.make_clip(media / "base.mp4", args.clip_seconds)
        for name in ("baseline.mp4", "fanout.mp4"):
            shutil.copy(clip, media / name)
        gate = bc.Gate(media)
        with bc.Services() as services:
            # The worker (and its ffmpeg) would run on another machine in production: here it yields
            # to the control plane (nice 19 by default; see bc.Service on why that needs all the
            # processes in one session). The watchers keep nice 0: they must read promptly, or several
            # events arrive before a read and only an upper bound of the earlier ones' arrival is known.
            worker = bc.start_worker(services, tmp, "worker-1", nice=args.worker_nice, ALLOW_PRIVATE_INPUTS="true",
                                     VALIDATION_LEVEL="standard")
            cp = bc.start_controlplane(services, tmp, [worker.address], nofile=args.watchers + 1024,
                                       ALLOW_PRIVATE_INPUTS="true", WORKER_STARTUP_TIMEOUT=30,
                                       HTTP_THREADS=args.http_threads,
                                       HTTP_PIN_THREADS="true" if args.pin_threads else "false")
            load_before = bc.load_average()
            base = run_fanout(cp, gate, watchers_bin, "baseline.mp4", args.preset, 1, args.job_timeout)
            fan = run_fanout(cp, gate, watchers_bin, "fanout.mp4", args.preset, args.watchers, args.job_timeout)
            load_after = bc.load_average()
            peak = peak_rss_mib(cp.pid)
        # The floor under any fan-out here and now: one send() of a frame of the same size per socket, from one
        # thread and from as many threads as the control plane writes with.
        frame_bytes = 300

        def send_floor(threads):
            out = subprocess.run([str(floor_bin), "--count", str(args.watchers), "--rounds", "20", "--frame-bytes",
                                  str(frame_bytes), "--threads", str(threads)],
                                 capture_output=True, text=True, timeout=300)
            lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
            if out.returncode != 0 or not lines:
                raise SystemExit(f"send_floor failed ({out.returncode}): {out.stderr}")
            return json.loads(lines[-1][len("RESULT "):])

        floor = send_floor(1)
        floor_threads = send_floor(args.http_threads) if args.http_threads > 1 else floor

        if args.raw_json:
            Path(args.raw_json).write_text(json.dumps({"baseline": base, "fanout": fan, "floor": floor,
                                                       "floor_threads": floor_threads}, indent=1))
        ok = base["complete"] and fan["complete"] and fan["final_status"] == "completed"
        goal_latency = fan["last_p99_ms"] < 100
        rss_connected_mb = fan["rss_connected"] * 1.048576
        goal_rss = rss_connected_mb < 300
        per_stream_kib = (fan["rss_connected"] - fan["rss_before"]) * 1024 / args.watchers
        cpu_per_delivery_us = fan["cpu_seconds"] / max(1, fan["events"] * args.watchers) * 1e6
        p99_note = (f"with {fan['live_events']} live events p99 is their maximum"
                    if fan["last_p99_ms"] >= fan["last_max_ms"]
                    else f"over {fan['live_events']} live events; their maximum: {fan['last_max_ms']:.1f} ms")
        section = [
            f"**{args.watchers:,} watchers** on one job: every watcher received all {fan['events']} events, same ids "
            f"in the same order: **{'yes' if fan['complete'] else 'NO'}** (job {fan['final_status']}). "
            f"Last watcher's receipt of each live event: **p50 {fan['last_p50_ms']:.1f} ms, p99 "
            f"{fan['last_p99_ms']:.1f} ms** ({p99_note}; goal p99 < 100 ms: "
            f"{'met' if goal_latency else 'NOT MET'}) vs. p50 {base['last_p50_ms']:.1f} ms, p99 "
            f"{base['last_p99_ms']:.1f} ms with 1 watcher (baseline, same run): p99 ratio "
            f"**{fan['last_p99_ms'] / max(base['last_p99_ms'], 0.001):.1f}×**. Against the floor of this machine right "
            f"now, the same {frame_bytes}-byte frame written with one `send()` per socket to {args.watchers:,} "
            f"loopback sockets and nothing else (`bench/native/send_floor.cc`): the last socket has it after p50 "
            f"{floor_threads['last_arrival_p50_ms']:.1f} ms from {args.http_threads} threads (as many as the control "
            f"plane's HTTP threads) and {floor['last_arrival_p50_ms']:.1f} ms from one, so the fan-out takes "
            f"**{fan['last_p50_ms'] / floor_threads['last_arrival_p50_ms']:.1f}×** (p50) the {args.http_threads}-thread "
            f"floor. Control plane RSS with {args.watchers:,} streams open: **{fan['rss_connected']:.0f} MiB** "
            f"({rss_connected_mb:.0f} MB; goal < 300 MB: {'met' if goal_rss else 'NOT MET'}).",
            "",
            "| | 1 watcher (baseline) | " + f"{args.watchers:,} watchers |",
            "|---|---|---|",
            f"| events per watcher (initial state + live, to the terminal one) | {base['events']} | {fan['events']} |",
            f"| every watcher got every event | {base['complete']} | {fan['complete']} |",
            f"| last watcher's receipt, p50 / p99 / max over the live events ({base['live_events']} / "
            f"{fan['live_events']}) | {base['last_p50_ms']:.1f} / "
            f"{base['last_p99_ms']:.1f} / {base['last_max_ms']:.1f} ms | {fan['last_p50_ms']:.1f} / "
            f"{fan['last_p99_ms']:.1f} / {fan['last_max_ms']:.1f} ms |",
            f"| any watcher's receipt, p50 / p99 over all (watcher, event) pairs | {base['all_p50_ms']:.1f} / "
            f"{base['all_p99_ms']:.1f} ms | {fan['all_p50_ms']:.1f} / {fan['all_p99_ms']:.1f} ms |",
            f"| control plane RSS before the watchers → with them connected | {base['rss_before']:.0f} → "
            f"{base['rss_connected']:.0f} MiB | {fan['rss_before']:.0f} → {fan['rss_connected']:.0f} MiB "
            f"(≈ {per_stream_kib:.1f} KiB per stream) |",
            f"| open streams reported by `flux_sse_connections` | {base['open_streams']:.0f} | "
            f"{fan['open_streams']:.0f} |",
            f"| time to connect all watchers and get their first event | {base['connect_seconds']:.2f} s | "
            f"{fan['connect_seconds']:.2f} s |",
            f"| job duration (input released → terminal event) | {base['job_seconds']:.1f} s | "
            f"{fan['job_seconds']:.1f} s |",
            f"| control plane CPU during the job | {base['cpu_seconds']:.2f} s | {fan['cpu_seconds']:.2f} s "
            f"(≈ {cpu_per_delivery_us:.1f} µs per event delivered) |",
            f"| floor: one `send()` of {frame_bytes} bytes per socket, last arrival p50 (max) | – | "
            f"{args.http_threads} threads: {floor_threads['last_arrival_p50_ms']:.1f} "
            f"({floor_threads['last_arrival_max_ms']:.1f}) ms; 1 thread: {floor['last_arrival_p50_ms']:.1f} "
            f"({floor['last_arrival_max_ms']:.1f}) ms ({floor['last_arrival_p50_ms'] * 1000 / args.watchers:.1f} µs "
            "per socket) |",
            "",
            f"Control plane peak RSS over the whole run (VmHWM): {peak:.0f} MiB. Arrival times are kernel receive "
            f"timestamps (SO_TIMESTAMPNS): {'yes' if fan['kernel_timestamps'] else 'NO, user-space read times'}. "
            f"{fan['coalesced']:,} of {fan['receipts']:,} receipts came in one read with a later event (they get "
            "that later arrival time, an upper bound). "
            f"Watcher errors: {fan['errors'] or 'none'}.",
            "",
            "What is measured: for each event, its arrival on the last of the watchers' sockets minus the event's "
            "own `timestamp`, which the control plane sets when it turns the worker's message into the event, "
            "after the message came over gRPC and, for a status change, after the change was committed to the "
            "store (the worker-to-control-plane hop and that commit are not in the figure; the 1-watcher baseline "
            "shows what the rest costs without fan-out). The timestamp has millisecond resolution, so figures can "
            "be up to 1 ms high. The first event of each stream (the state on connect) is not counted.",
            "",
            f"Command: `bench/sse_fanout.py --watchers {args.watchers} --clip-seconds {args.clip_seconds} "
            f"--preset {args.preset} --http-threads {args.http_threads}"
            f"{'' if args.pin_threads else ' --no-pin-threads'}"
            f"{'' if args.worker_nice == 19 else f' --worker-nice {args.worker_nice}'}`. One control plane and one worker "
            f"(release builds, local storage), input {args.clip_seconds} s 640x360 H.264 + AAC served over "
            "loopback HTTP and held until every watcher is connected; the watchers "
            "(`bench/native/sse_watchers.cc`, one epoll loop), ffmpeg, the worker and the control plane "
            f"({args.http_threads} HTTP threads, {'pinned one per CPU' if args.pin_threads else 'not pinned'}) share "
            f"the same {os.cpu_count()} cores (the worker and its ffmpeg "
            f"{'as SCHED_IDLE' if args.worker_nice == 'idle' else f'at nice {args.worker_nice}'}, all in one "
            "session, so one scheduling group: see below). "
            f"Load average 1 min: {load_before:.1f} before, {load_after:.1f} after (other work shares the machine).",
        ]
        bench_report.write_section(Path(args.out), TITLE, "\n".join(section))
        print("\n".join(section))
        if not ok:
            raise SystemExit("some watcher missed an event, or the job did not complete")
    finally:
        if gate:
            gate.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
