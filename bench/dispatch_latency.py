#!/usr/bin/env python3
"""Dispatch latency: 202 from POST /api/v1/jobs -> ffmpeg started on an idle, warm worker.

A control plane and one real worker (release builds, local storage, LOG_LEVEL=debug
on the worker). Jobs run one after the other on a 1 s clip from LOCAL_INPUT_DIR,
each submitted only when the previous one has completed and the worker is idle.
Times come from one clock: the client's receipt of the 202, and the worker's own
log timestamps (millisecond resolution) of "job accepted" (SubmitJob reached the
worker), "fetching input" and "ffmpeg command" (logged right before ffmpeg is
spawned, after the input copy; ffprobe runs beside ffmpeg, not before it).
Baselines in the same run, from the same client: the round trip of GET /health
on the control plane, and the round trip of an empty GetStatus on the worker.

Binaries come from build/bin, or from FLUX_BIN_DIR when set (see bench_common.py).

Usage: bench/dispatch_latency.py [--jobs 20] [--preset 480p_h264] [--out docs/BENCHMARKS.md]
"""
import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_common as bc  # noqa: E402
import bench_report  # noqa: E402

TITLE = "Dispatch latency (bench/dispatch_latency.py)"


def worker_times(worker, job_id):
    """{msg: epoch seconds} of the worker's log lines about `job_id`."""
    times = {}
    for rec in worker.log_records():
        if rec.get("job_id") == job_id and rec.get("msg") in ("job accepted", "fetching input", "ffmpeg command"):
            times.setdefault(rec["msg"], bc.parse_rfc3339(rec["ts"]))
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--preset", default="480p_h264")
    ap.add_argument("--out", default=str(bc.DOCS))
    args = ap.parse_args()
    bc.require_binaries("flux-controlplane", "flux-worker")

    import grpc
    from worker_overhead import generate_stubs

    tmp = Path(tempfile.mkdtemp(prefix="flux-bench-dispatch-"))
    try:
        pb, pb_grpc = generate_stubs(tmp)
        media = tmp / "media"
        clip = bc.make_clip(media / "clip.mp4", 1, size="320x240")
        with bc.Services() as services:
            worker = bc.start_worker(services, tmp, "worker-1", LOG_LEVEL="debug", LOCAL_INPUT_DIR=media)
            cp = bc.start_controlplane(services, tmp, [worker.address], LOCAL_INPUT_DIR=media,
                                       WORKER_STARTUP_TIMEOUT=30)
            body = {"input_url": f"file://{clip}", "preset": args.preset,
                    "output": {"storage": "local", "path": "bench/out.mp4"}}
            load_before = bc.load_average()

            def run_job(n):
                sent = time.time()
                status, doc = bc.http_call("POST", f"{cp.url}/api/v1/jobs", dict(body, output=dict(
                    body["output"], path=f"bench/{n}.mp4")))
                acked = time.time()
                if status != 202:
                    raise SystemExit(f"job {n}: {status} {doc}")
                final = bc.wait_job(cp, doc["job_id"], {"completed", "failed", "cancelled"}, timeout=180)
                if final["status"] != "completed":
                    raise SystemExit(f"job {n} did not complete: {final}")
                return doc["job_id"], sent, acked, final.get("phase_durations") or {}

            run_job("warmup")  # connects the channel, loads ffmpeg/ffprobe into the page cache
            time.sleep(0.5)
            rows = []
            for n in range(args.jobs):
                rows.append(run_job(n))
                time.sleep(0.2)  # the worker is idle again before the next one
            time.sleep(0.3)

            health = []
            for _ in range(200):
                t0 = time.perf_counter()
                status, _ = bc.http_call("GET", f"{cp.url}/health")
                health.append(time.perf_counter() - t0)
            stub = pb_grpc.WorkerServiceStub(grpc.insecure_channel(worker.address))
            stub.GetStatus(pb.StatusRequest(), timeout=5)
            get_status = []
            for _ in range(200):
                t0 = time.perf_counter()
                stub.GetStatus(pb.StatusRequest(), timeout=5)
                get_status.append(time.perf_counter() - t0)
            # The probe step's floor: the same ffprobe run alone, from the same clip.
            probe_alone = []
            for _ in range(10):
                t0 = time.perf_counter()
                subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
                                str(clip)], check=True, capture_output=True)
                probe_alone.append(time.perf_counter() - t0)
            load_after = bc.load_average()

        samples = {"post_rtt": [], "to_worker": [], "to_ffmpeg": [], "fetch_start": [], "fetch_probe": [],
                   "download": [], "probe": []}
        for job_id, sent, acked, phases in rows:
            samples["download"].append(phases.get("download", float("nan")))
            samples["probe"].append(phases.get("probe", float("nan")))
            t = worker_times(worker, job_id)
            if len(t) != 3:
                raise SystemExit(f"worker log lacks lines for {job_id}: {t}")
            samples["post_rtt"].append(acked - sent)
            samples["to_worker"].append(t["job accepted"] - acked)
            samples["to_ffmpeg"].append(t["ffmpeg command"] - acked)
            samples["fetch_start"].append(t["fetching input"] - t["job accepted"])
            samples["fetch_probe"].append(t["ffmpeg command"] - t["fetching input"])
        ms = {k: [v * 1000 for v in vals] for k, vals in samples.items()}
        med = statistics.median
        health_ms = med(health) * 1000
        status_ms = med(get_status) * 1000
        p50 = med(ms["to_ffmpeg"])
        section = [
            f"**p50 {p50:.1f} ms** from the client's receipt of `202` to ffmpeg being started on an idle warm worker "
            f"(goal p50 < 20 ms: {'met' if p50 < 20 else 'NOT MET'}), over {args.jobs} sequential jobs; "
            f"**{p50 / health_ms:.1f}×** a `GET /health` round trip ({health_ms:.2f} ms) and "
            f"**{p50 / status_ms:.1f}×** an empty `GetStatus` round trip to the worker ({status_ms:.2f} ms), "
            "both measured in the same run.",
            "",
            "| interval | p50 | min | max |",
            "|---|---|---|---|",
        ]
        labels = [
            ("to_ffmpeg", "`202` received → worker logs `ffmpeg command` (spawn follows)"),
            ("to_worker", "`202` received → worker logs `job accepted` (SubmitJob arrived)"),
            ("fetch_start", "`job accepted` → `fetching input`"),
            ("fetch_probe", "`fetching input` → `ffmpeg command` (the input copy; ffprobe is no longer in it)"),
            ("download", "of which the input copy (the job's `phase_durations.download`)"),
            ("probe", "ffprobe, running beside ffmpeg (`phase_durations.probe`)"),
            ("post_rtt", "`POST /api/v1/jobs` round trip (send → 202)"),
        ]
        for key, label in labels:
            section.append(f"| {label} | {med(ms[key]):.1f} ms | {min(ms[key]):.1f} ms | {max(ms[key]):.1f} ms |")
        section += [
            f"| baseline: `GET /health` round trip (200 calls) | {health_ms:.2f} ms | {min(health) * 1000:.2f} ms | "
            f"{max(health) * 1000:.2f} ms |",
            f"| baseline: empty `GetStatus` round trip (200 calls) | {status_ms:.2f} ms | "
            f"{min(get_status) * 1000:.2f} ms | {max(get_status) * 1000:.2f} ms |",
            f"| what the probe would add before ffmpeg: the same `ffprobe` run alone (10 runs) | "
            f"{med(probe_alone) * 1000:.1f} ms | "
            f"{min(probe_alone) * 1000:.1f} ms | {max(probe_alone) * 1000:.1f} ms |",
            "",
            "ffmpeg starts as soon as the input is in the work directory; ffprobe runs beside it and its answer "
            "brings the duration for progress, or stops ffmpeg at once when the input is refused. Every built-in "
            "preset starts at once: single-file and single-variant HLS presets map audio optionally (`0:a:0?`); "
            "ABR HLS and DASH, whose arguments name the audio streams, start as if the input had audio and are "
            "restarted without it when the probe finds none.",
            "",
            "A negative `202 → job accepted` means the worker had the job before the client had read its 202 "
            "(the dispatcher does not wait for the HTTP answer). Worker log times have millisecond resolution.",
            "",
            f"Command: `bench/dispatch_latency.py --jobs {args.jobs} --preset {args.preset}`. One control plane and "
            "one worker (release builds, local storage, worker `LOG_LEVEL=debug`), input a 1 s 320x240 H.264 + AAC "
            "clip as `file://` under `LOCAL_INPUT_DIR`; client: Python urllib, a new connection per request. "
            f"Load average 1 min: {load_before:.1f} before, {load_after:.1f} after (other work shares the machine).",
        ]
        bench_report.write_section(Path(args.out), TITLE, "\n".join(section))
        print("\n".join(section))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
