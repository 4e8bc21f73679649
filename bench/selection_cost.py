#!/usr/bin/env python3
"""Worker-selection cost: GetStatus calls and time per selection, 10 workers of which 9 are full.

Ten real workers (release builds, MAX_CONCURRENT_JOBS=1). Nine are made full
with one job each whose input download is held open by a loopback HTTP gate in
this script, so they stay busy without using any CPU. The control plane's own
selection code (balancer::WorkerPool, the original round robin: start after the
worker chosen last, GetStatus on each in turn, first with room wins) then runs
against them from a small C++ driver (bench/native/selection_cost.cc, linked
with the control plane's flux_cp_balancer library), which counts GetStatus calls
with WorkerPool::stats() and times each selection. The control plane exposes
neither figure, so the driver is the way to see them.

Baselines in the same run, same channels: one GetStatus round trip to the free
worker, and a selection over a pool of the free worker alone (the best case:
one call).

Usage: bench/selection_cost.py [--workers 10] [--rounds 200] [--out docs/BENCHMARKS.md]
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc  # noqa: E402
import bench_report  # noqa: E402

TITLE = "Worker-selection cost (bench/selection_cost.py)"
PRESET = "480p_h264"


def build_driver():
    """bench_selection_cost (bench/CMakeLists.txt) in the release build, linked by CMake against
    flux_cp_balancer and what it needs."""
    build = bc.ROOT / "build"
    if not (build / "CMakeCache.txt").exists():
        raise SystemExit("no release build in build/: run `make build` first")
    subprocess.run(["cmake", "--build", str(build), "--target", "bench_selection_cost"], check=True)
    return build / "bin" / "bench_selection_cost"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--out", default=str(bc.DOCS))
    args = ap.parse_args()
    bc.require_binaries("flux-worker")
    driver = build_driver()

    import grpc
    from worker_overhead import generate_stubs

    tmp = Path(tempfile.mkdtemp(prefix="flux-bench-select-"))
    gate = None
    try:
        pb, pb_grpc = generate_stubs(tmp)
        media = tmp / "media"
        bc.make_clip(media / "hold.mp4", 1, size="320x240")
        gate = bc.Gate(media)
        free_index = args.workers // 2
        with bc.Services() as services:
            workers = [bc.start_worker(services, tmp, f"worker-{i:02d}", MAX_CONCURRENT_JOBS=1,
                                       ALLOW_PRIVATE_INPUTS="true") for i in range(args.workers)]
            stubs = [pb_grpc.WorkerServiceStub(grpc.insecure_channel(w.address)) for w in workers]
            streams = []

            def consume(stream):
                try:
                    for _ in stream:
                        pass
                except grpc.RpcError:
                    pass  # cancelled at the end

            for i, stub in enumerate(stubs):
                if i == free_index:
                    continue
                req = pb.JobRequest(job_id=f"hold-{i}", input_url=f"http://127.0.0.1:{gate.port}/hold.mp4",
                                    preset=PRESET, output=pb.OutputConfig(storage="local", path=f"hold/{i}.mp4"))
                stream = stub.SubmitJob(req, timeout=600)
                t = threading.Thread(target=consume, args=(stream,), daemon=True)
                t.start()
                streams.append((stream, t))
            deadline = time.monotonic() + 30
            while True:
                busy = [stub.GetStatus(pb.StatusRequest(), timeout=5).current_jobs for stub in stubs]
                if busy == [0 if i == free_index else 1 for i in range(args.workers)]:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"workers did not fill up: current_jobs {busy}")
                time.sleep(0.1)

            load_before = bc.load_average()
            addresses = ",".join(w.address for w in workers)
            cmd = [str(driver), "--workers", addresses, "--expect", workers[free_index].address,
                   "--rounds", str(args.rounds), "--storage", "local", "--preset", PRESET]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            load_after = bc.load_average()
            lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
            if out.returncode != 0 or not lines:
                raise SystemExit(f"selection driver failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
            result = json.loads(lines[-1][len("RESULT "):])
            still_busy = [stub.GetStatus(pb.StatusRequest(), timeout=5).current_jobs for stub in stubs]

            for i, stub in enumerate(stubs):
                if i != free_index:
                    stub.CancelJob(pb.CancelRequest(job_id=f"hold-{i}"), timeout=10)
            for stream, t in streams:
                t.join(timeout=15)

        full, alone = result["full"], result["alone"]
        rtt = result["get_status_p50_ms"]
        ok = full["wrong"] == 0 and full["failed"] == 0 and alone["wrong"] == 0 and alone["failed"] == 0
        n = args.workers
        section = [
            f"With {n} workers of which {n - 1} are full: **{full['calls_mean']:.1f} `GetStatus` calls per "
            f"selection** (min {full['calls_min']:.0f}, max {full['calls_max']:.0f}) and "
            f"**p50 {full['p50_ms']:.2f} ms** per selection (p99 {full['p99_ms']:.2f} ms) = "
            f"**{full['p50_ms'] / rtt:.1f}×** one `GetStatus` round trip ({rtt:.3f} ms) and "
            f"**{full['p50_ms'] / alone['p50_ms']:.1f}×** the best case (a pool whose first worker has room: "
            f"{alone['calls_mean']:.1f} call, p50 {alone['p50_ms']:.3f} ms), all measured in the same run. "
            "Every selection chose the free worker: " + ("yes." if ok else "NO."),
            "",
            "| selection | GetStatus calls (mean / min / max) | p50 | p99 | max |",
            "|---|---|---|---|---|",
            f"| {n} workers, {n - 1} full (free one at position {free_index + 1}) | {full['calls_mean']:.2f} / "
            f"{full['calls_min']:.0f} / {full['calls_max']:.0f} | {full['p50_ms']:.3f} ms | {full['p99_ms']:.3f} ms | "
            f"{full['max_ms']:.3f} ms |",
            f"| baseline: 1 worker with room | {alone['calls_mean']:.2f} / {alone['calls_min']:.0f} / "
            f"{alone['calls_max']:.0f} | {alone['p50_ms']:.3f} ms | {alone['p99_ms']:.3f} ms | "
            f"{alone['max_ms']:.3f} ms |",
            f"| baseline: one `GetStatus` round trip | 1 | {rtt:.3f} ms | {result['get_status_p99_ms']:.3f} ms | |",
            "",
            f"Round robin starts after the worker chosen last; with a single free worker that worker is always the "
            f"last one chosen, so in steady state every selection asks all {n} workers one after the other (the "
            f"calls are sequential, so the time grows with the number of full workers asked). Workers still "
            f"full at the end: {sum(still_busy)} of {n - 1}.",
            "",
            f"Command: `bench/selection_cost.py --workers {n} --rounds {args.rounds}` ({args.rounds} selections "
            f"after 5 warm-up ones). {n} workers (release builds, `MAX_CONCURRENT_JOBS=1`, local storage) on "
            "loopback; the driver is `bench/native/selection_cost.cc` linked with `flux_cp_balancer` from "
            "`build/`. Load average 1 min: "
            f"{load_before:.1f} before, {load_after:.1f} after (other work shares the machine).",
        ]
        bench_report.write_section(Path(args.out), TITLE, "\n".join(section))
        print("\n".join(section))
        if not ok:
            raise SystemExit("a selection did not choose the free worker")
    finally:
        if gate:
            gate.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
