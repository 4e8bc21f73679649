#!/usr/bin/env python3
"""Durable submissions per second: POST /api/v1/jobs -> 202, every job stays queued.

The control plane's only worker address has nothing listening, so no job is
ever dispatched and every 202 is one durable INSERT (SQLite, WAL, synchronous
FULL, group commit) plus validation. Load: wrk, 2 threads, 64 connections.
Baseline in the same run: the same wrk against GET /health (the HTTP floor of
this server on this machine). Afterwards the store is opened directly and must
hold every job that was answered 202 (a request still in flight when wrk
stops may be stored without its 202 reaching wrk, so the store may hold up to
one extra job per connection, never fewer).

Usage: bench/submissions.py [--duration 10] [--connections 64] [--threads 2] [--out docs/BENCHMARKS.md]
(FLUX_BIN_DIR=build/<dir>/bin to measure another build than build/bin.)
"""
import argparse
import os
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import shutil
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc  # noqa: E402
import bench_report  # noqa: E402

TITLE = "Durable submissions (bench/submissions.py)"
# An IP-literal public address: validation accepts it without a DNS lookup (no DNS here).
JOB_BODY = ('{"input_url":"https://93.184.216.34/a.mp4","preset":"720p_h264",'
            '"output":{"storage":"local","path":"bench/a.mp4"}}')

LUA = r"""
-- Counts responses by status; with ids_path set, writes every job_id answered 202.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  counts = {}
  ids = {}
  collect = wrk.method == "POST"
end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if collect and status == 202 then
    local id = string.match(body, '"job_id":"([^"]+)"')
    if id then ids[#ids + 1] = id end
  end
end
function done(summary, latency, requests)
  local total = {}
  local out = nil
  if os.getenv("FLUX_BENCH_IDS") then out = io.open(os.getenv("FLUX_BENCH_IDS"), "w") end
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do total[k] = (total[k] or 0) + v end
    if out then
      for _, id in ipairs(t:get("ids")) do out:write(id, "\n") end
    end
  end
  if out then out:close() end
  io.write("STATUS_COUNTS")
  for k, v in pairs(total) do io.write(" ", k, "=", v) end
  io.write("\n")
  io.write(string.format("LATENCY p50=%d p99=%d\n", latency:percentile(50), latency:percentile(99)))
end
"""


# Thread names (pthread_setname_np) -> what they do; unnamed threads keep the
# program's name: the HTTP io threads and the main thread.
THREAD_ROLES = {
    "flux-controlpla": "HTTP io and other unnamed threads",
    "cp-blocking": "blocking pool (validation, waiting for the commit)",
    "store-writer": "store writer (SQLite inserts, commit, answers)",
    "store-wal-ckpt": "WAL checkpointer",
}


def thread_cpu(pid):
    """{role: CPU seconds so far} over the process's threads, grouped by thread name."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        role = THREAD_ROLES.get(name, "other (gRPC, housekeeping)")
        out[role] = out.get(role, 0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def run_wrk(cp, url, lua_path, args, method=None, ids_path=None):
    script = lua_path.read_text()
    if method == "POST":
        script = ('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                  f"wrk.body = [[{JOB_BODY}]]\n") + script
    path = lua_path.with_name(f"{'post' if method == 'POST' else 'get'}.lua")
    path.write_text(script)
    env = dict(os.environ)
    if ids_path:
        env["FLUX_BENCH_IDS"] = str(ids_path)
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "10s",
           "-s", str(path), url]
    cpu0, switches0, threads0 = cp.cpu_seconds(), cp.context_switches(), thread_cpu(cp.pid)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.duration + 60).stdout
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu, switches = cp.cpu_seconds() - cpu0, cp.context_switches() - switches0
    threads1 = thread_cpu(cp.pid)
    by_role = {role: threads1[role] - threads0.get(role, 0) for role in threads1}
    counts = {}
    m = re.search(r"^STATUS_COUNTS(.*)$", out, re.M)
    if not m:
        raise SystemExit(f"wrk printed no status counts:\n{out}")
    for part in m.group(1).split():
        k, v = part.split("=")
        counts[int(k)] = int(v)
    lat = re.search(r"^LATENCY p50=(\d+) p99=(\d+)$", out, re.M)
    errors = re.search(r"Socket errors: (.*)$", out, re.M)
    return {
        "counts": counts,
        "p50_ms": int(lat.group(1)) / 1000,
        "p99_ms": int(lat.group(2)) / 1000,
        "socket_errors": errors.group(1).strip() if errors else "none",
        "cmd": " ".join(c if not c.endswith(".lua") else Path(c).name for c in cmd),
        "cpu_s": cpu,
        "switches": switches,
        "cpu_by_role": by_role,
        # wrk's own CPU: it shares the cores with the control plane.
        "wrk_cpu_s": (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime),
        "raw": out,
    }


def per_request(run, requests):
    if requests == 0:
        return "– | –"
    return f"{run['cpu_s'] / requests * 1e6:.0f} µs | {run['switches'] / requests:.1f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(bc.DOCS))
    args = ap.parse_args()
    bc.require_binaries("flux-controlplane")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    tmp = Path(tempfile.mkdtemp(prefix="flux-bench-submit-"))
    try:
        lua = tmp / "counts.lua"
        lua.write_text(LUA)
        dead_worker = f"127.0.0.1:{bc.free_port()}"  # nothing listens there
        with bc.Services() as services:
            cp = bc.start_controlplane(services, tmp, [dead_worker], QUEUE_LIMIT=10000000,
                                       WORKER_STARTUP_TIMEOUT=1, nofile=4096)
            load_before = bc.load_average()
            subprocess.run(["wrk", "-t1", "-c8", "-d2s", f"{cp.url}/health"], capture_output=True, timeout=30)
            health = run_wrk(cp, f"{cp.url}/health", lua, args)
            ids_path = tmp / "ids.txt"
            post = run_wrk(cp, f"{cp.url}/api/v1/jobs", lua, args, method="POST", ids_path=ids_path)
            load_after = bc.load_average()
            rss = cp.rss_mib()
            rc = cp.stop()
            if rc != 0:
                raise SystemExit(f"control plane exited with {rc}:\n{cp.log_tail()}")

        accepted = post["counts"].get(202, 0)
        rejected = {k: v for k, v in post["counts"].items() if k != 202}
        health_ok = health["counts"].get(200, 0)
        sub_rate = accepted / args.duration
        health_rate = health_ok / args.duration

        db = sqlite3.connect(str(cp.database_path))
        stored = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
        queued = db.execute("SELECT count(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
        stored_ids = {r[0] for r in db.execute("SELECT job_id FROM jobs")}
        db.close()
        acked_ids = ids_path.read_text().split() if ids_path.exists() else []
        missing = [i for i in acked_ids if i not in stored_ids]
        extra = stored - accepted
        store_ok = (not missing and len(acked_ids) == accepted and 0 <= extra <= args.connections
                    and queued == stored)

        bin_dir = bc.BIN.resolve()
        if bin_dir.is_relative_to(bc.ROOT):
            bin_dir = bin_dir.relative_to(bc.ROOT)
        cpu_per_job = max(post["cpu_s"], 1e-6) / max(accepted, 1)
        wrk_per_job = post["wrk_cpu_s"] / max(accepted, 1)
        roles = sorted(post["cpu_by_role"].items(), key=lambda kv: -kv[1])
        breakdown = ", ".join(f"{role} {seconds / max(accepted, 1) * 1e6:.0f} µs" for role, seconds in roles
                              if seconds > 0)
        verdict = "meets the goal" if sub_rate >= 10000 else ("above the floor" if sub_rate >= 5000 else
                                                              "BELOW THE FLOOR")
        section = [
            f"**{sub_rate:,.0f} submissions/s** ({verdict}: goal ≥ 10,000/s, floor 5,000/s), "
            f"**{sub_rate / health_rate:.3f}×** the same server's `GET /health` rate ({health_rate:,.0f} req/s) "
            f"measured in the same run.",
            "",
            "| load | 2xx/s | other statuses | socket errors | latency p50 | p99 | control-plane CPU per request "
            "| context switches per request |",
            "|---|---|---|---|---|---|---|---|",
            f"| `GET /health` (baseline) | {health_rate:,.0f} | "
            f"{sum(v for k, v in health['counts'].items() if k != 200)} | {health['socket_errors']} | "
            f"{health['p50_ms']:.2f} ms | {health['p99_ms']:.2f} ms | {per_request(health, health_ok)} |",
            f"| `POST /api/v1/jobs` → 202 | {sub_rate:,.0f} | "
            f"{sum(rejected.values())}{f' {rejected}' if rejected else ''} | {post['socket_errors']} | "
            f"{post['p50_ms']:.2f} ms | "
            f"{post['p99_ms']:.2f} ms | {per_request(post, accepted)} |",
            "",
            f"Store check after a graceful stop: {stored:,} rows, all `queued`: {queued == stored}; "
            f"every one of the {accepted:,} jobs answered 202 is stored: {not missing and len(acked_ids) == accepted}; "
            f"{extra} stored without their 202 reaching wrk (requests in flight when wrk stopped, ≤ "
            f"{args.connections} expected). Check {'passed' if store_ok else 'FAILED'}. "
            f"Control plane RSS at the end: {rss:.0f} MiB.",
            "",
            f"CPU bound: at {cpu_per_job * 1e6:.0f} µs of control-plane CPU per submission, {os.cpu_count()} cores "
            f"would allow at most {os.cpu_count() / cpu_per_job:,.0f}/s even with the machine to itself and wrk "
            f"costing nothing; wrk itself used {wrk_per_job * 1e6:.0f} µs per submission, so with both on these "
            f"cores and nothing else the ceiling is {os.cpu_count() / (cpu_per_job + wrk_per_job):,.0f}/s. During "
            f"this run the control plane got {post['cpu_s'] / args.duration:.2f} cores and wrk "
            f"{post['wrk_cpu_s'] / args.duration:.2f} on average.",
            "",
            f"Where that CPU went, per submission, by thread: {breakdown}.",
            "",
            f"Command: `{post['cmd']}` and `{health['cmd']}`; body `{JOB_BODY}`. Control plane: release build "
            f"(`{bin_dir}/flux-controlplane`), `ENV=development`, `QUEUE_LIMIT=10000000`, "
            "`WORKER_NODES` = one loopback port where nothing listens, a fresh `DATABASE_PATH` on ext4 "
            "(SQLite WAL, synchronous FULL, group commit), 2 HTTP threads (default). wrk runs on the same 2 cores. "
            f"Load average 1 min: {load_before:.1f} before, {load_after:.1f} after (other work shares the machine).",
        ]
        bench_report.write_section(Path(args.out), TITLE, "\n".join(section))
        print("\n".join(section))
        if not store_ok or rejected:
            raise SystemExit("store check failed or non-202 answers")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
