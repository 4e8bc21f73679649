#!/usr/bin/env python3
"""Worker overhead: one job through flux-worker ÷ the same ffmpeg command run directly.

Same input (a 10 s 1280x720 clip with audio), preset 720p_h264, local storage,
validation level standard. Runs alternate (direct, worker, direct, worker, ...)
so that machine noise hits both sides alike; the figure is the median ratio.
The ffmpeg command is the one the worker itself logs (LOG_LEVEL=debug), so the
baseline is exactly what the worker runs.

Usage: bench/worker_overhead.py [--worker build/bin/flux-worker] [--runs 5] [--out docs/BENCHMARKS.md]
"""
import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import bench_report  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate_stubs(tmp):
    out = Path(tmp) / "stubs"
    out.mkdir()
    subprocess.run(["protoc", f"--proto_path={ROOT / 'proto'}", f"--python_out={out}", f"--grpc_python_out={out}",
                    "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin", "worker/v1/worker.proto"], check=True)
    for d in (out / "worker", out / "worker" / "v1"):
        (d / "__init__.py").touch()
    sys.path.insert(0, str(out))
    from worker.v1 import worker_pb2, worker_pb2_grpc  # noqa: E402
    return worker_pb2, worker_pb2_grpc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", default=str(ROOT / "build" / "bin" / "flux-worker"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    args = ap.parse_args()

    import grpc
    tmp = tempfile.mkdtemp(prefix="flux-bench-")
    worker = None
    try:
        pb, pb_grpc = generate_stubs(tmp)
        inputs = Path(tmp) / "inputs"
        inputs.mkdir()
        clip = inputs / "clip.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "10",
                        "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-shortest", str(clip)], check=True)
        port = free_port()
        log_path = Path(tmp) / "worker.log"
        env = dict(os.environ, GRPC_PORT=str(port), METRICS_PORT="0", WORK_DIR=f"{tmp}/work",
                   LOCAL_STORAGE_DIR=f"{tmp}/out", LOCAL_INPUT_DIR=str(inputs), DISABLE_AUTO_SHUTDOWN="true",
                   LOG_LEVEL="debug", VALIDATION_LEVEL="standard", MAX_CONCURRENT_JOBS="1")
        worker = subprocess.Popen([args.worker], env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
        stub = pb_grpc.WorkerServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        deadline = time.time() + 20
        while True:
            try:
                stub.GetStatus(pb.StatusRequest(), timeout=1)
                break
            except grpc.RpcError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)

        def run_job(n):
            req = pb.JobRequest(job_id=f"bench-{n}", input_url=f"file://{clip}", preset="720p_h264",
                                output=pb.OutputConfig(storage="local", path=f"bench/{n}.mp4"))
            start = time.perf_counter()
            last = None
            for ev in stub.SubmitJob(req):
                last = ev
            elapsed = time.perf_counter() - start
            if last is None or last.status != pb.JOB_STATUS_COMPLETED:
                raise SystemExit(f"job {n} did not complete: {last}")
            return elapsed, last.result

        # Warm-up job: also yields the exact ffmpeg argv the worker runs.
        run_job("warmup")
        argv = None
        for line in log_path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("msg") == "ffmpeg command":
                argv = rec["argv"]
        if not argv:
            raise SystemExit("worker did not log its ffmpeg command")
        direct_out = Path(tmp) / "direct"

        def run_direct():
            shutil.rmtree(direct_out, ignore_errors=True)
            direct_out.mkdir()
            cmd = []
            for a in argv:
                if a.startswith("file:") and "input" in a:
                    a = f"file:{clip}"
                elif a.endswith("output.mp4"):
                    a = str(direct_out / "output.mp4")
                cmd.append(a)
            # Drop "-progress pipe:N": the baseline has no progress reader.
            clean = []
            skip = False
            for c in cmd:
                if skip:
                    skip = False
                elif c == "-progress":
                    skip = True
                else:
                    clean.append(c)
            start = time.perf_counter()
            subprocess.run(clean, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return time.perf_counter() - start, clean

        ratios, directs, jobs = [], [], []
        breakdown = {k: [] for k in ("download", "probe", "encode", "validate", "upload")}
        direct_cmd = None
        for n in range(args.runs):
            d, direct_cmd = run_direct()
            j, result = run_job(n)
            directs.append(d)
            jobs.append(j)
            ratios.append(j / d)
            for k in breakdown:
                breakdown[k].append(getattr(result, f"{k}_seconds"))
        med = statistics.median
        section = [
            f"Median ratio **{med(ratios):.3f}** (goal ≤ 1.05) over {args.runs} alternating runs: "
            f"job through the worker {med(jobs):.2f} s vs. ffmpeg run directly {med(directs):.2f} s.",
            "",
            "| phase | median seconds |",
            "|---|---|",
        ] + [f"| {k} | {med(v):.3f} |" for k, v in breakdown.items()] + [
            f"| whole job (SubmitJob → COMPLETED) | {med(jobs):.3f} |",
            f"| ffmpeg alone | {med(directs):.3f} |",
            "",
            "Input: 10 s 1280x720 30 fps H.264 + AAC (lavfi testsrc2 + sine), preset `720p_h264`, local storage, "
            "validation `standard`, worker build: `" + os.path.relpath(args.worker, ROOT) + "`.",
            "",
            "Baseline command (the worker's own argv, `-progress` removed):",
            "",
            "```",
            " ".join(direct_cmd),
            "```",
        ]
        bench_report.write_section(Path(args.out), "Worker overhead (bench/worker_overhead.py)", "\n".join(section))
        print("\n".join(section))
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
