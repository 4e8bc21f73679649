"""Resource limits on ffmpeg (issue 5): a job that breaks one fails with that
limit's own error_code and a message naming the limit and its value, uploads
nothing, and leaves no work directory and no ffmpeg behind. ffmpeg runs at the
FFMPEG_NICE level. Inputs the probe refuses (an enormous picture, an absurd
duration) fail with input_too_large / input_too_long under the defaults."""

import os
import pathlib
import struct
import subprocess
import time
import zlib

import pytest

from harness.checks import assert_nothing_uploaded, assert_worker_clean
from harness.jobs import job_request, new_job_id, run_job, submit
from harness.media import ClipLibrary

# One worker per limit, each with only that limit made tiny. ffmpeg runs at
# the tests' own priority (FFMPEG_NICE=0) except where the niceness is checked:
# at the default 10 it would crawl on a machine busy with other work.
WORKERS = {
    "wall": {"FFMPEG_MAX_SECONDS": "1", "FFMPEG_NICE": "12"},
    "output": {"MAX_OUTPUT_BYTES": "50000", "FFMPEG_NICE": "0"},
    "cpu": {"FFMPEG_CPU_SECONDS": "1", "FFMPEG_NICE": "0"},
    # Address space, not resident memory: 64 MiB cannot even hold ffmpeg's
    # shared libraries, so the breach does not depend on the input.
    "memory": {"FFMPEG_MEMORY_MB": "64", "FFMPEG_NICE": "0"},
    # Every other limit at its default.
    "defaults": {"FFMPEG_NICE": "0"},
}


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("limits-media")


@pytest.fixture(scope="module")
def clip(media_dir):
    """6 s 640x360 with audio: seconds of CPU at 1080p, hundreds of KB at 480p."""
    return ClipLibrary(media_dir).path("medium.mp4")


@pytest.fixture(scope="module")
def workers(module_worker_factory, media_dir, tmp_path_factory):
    out_root = tmp_path_factory.mktemp("limits-out")
    started = {}
    for name, limits in WORKERS.items():
        env = {"STORAGE_TYPE": "local", "LOCAL_STORAGE_DIR": str(out_root / name),
               "LOCAL_INPUT_DIR": str(media_dir), **limits}
        started[name] = module_worker_factory(env=env, name=name, wait=False)
    for worker in started.values():  # started together, waited for together
        worker.wait_ready()
    return started


def out_dir(worker) -> pathlib.Path:
    return pathlib.Path(worker.env["LOCAL_STORAGE_DIR"])


def request(path: pathlib.Path, preset: str, code: str):
    return job_request(new_job_id(code.split("_")[0]), f"file://{path}", preset,
                       f"limits/{code}.mp4", storage="local")


def expect_breach(worker, stream, code: str, names: str):
    """FAILED with `code`, the message naming the limit, nothing uploaded, nothing left."""
    final = stream.expect_terminal("FAILED", code, timeout=120)
    assert names in final.error, f"error {final.error!r} does not name {names}"
    assert_nothing_uploaded(local_dir=out_dir(worker), events=stream.events)
    assert_worker_clean(worker, f"after {code}")
    return final


def ffmpeg_niceness(worker, timeout: float = 60.0):
    """The niceness of the job's ffmpeg (not ffprobe) while it runs; None if never seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, argv in worker.ffmpeg_processes():
            if os.path.basename(argv[0]) != "ffmpeg":
                continue
            try:
                stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            return int(stat.rsplit(")", 1)[1].split()[16])  # field 19
        time.sleep(0.02)
    return None


def expected_niceness(level: int) -> int:
    # A level, never below the worker's own (inherited from this process).
    return max(level, os.getpriority(os.PRIO_PROCESS, 0))


def test_wall_time_limit(workers, clip):
    worker = workers["wall"]
    stream = submit(worker, request(clip, "1080p_h264", "time_limit_exceeded"))
    niceness = ffmpeg_niceness(worker)
    expect_breach(worker, stream, "time_limit_exceeded", "FFMPEG_MAX_SECONDS=1")
    assert niceness == expected_niceness(12), f"ffmpeg ran at niceness {niceness} with FFMPEG_NICE=12"


def test_output_size_limit(workers, clip):
    worker = workers["output"]
    stream = run_job(worker, request(clip, "480p_h264", "output_too_large"), timeout=120)
    expect_breach(worker, stream, "output_too_large", "MAX_OUTPUT_BYTES=50000")


def test_cpu_limit(workers, clip):
    worker = workers["cpu"]
    stream = run_job(worker, request(clip, "1080p_h264", "cpu_limit_exceeded"), timeout=120)
    expect_breach(worker, stream, "cpu_limit_exceeded", "FFMPEG_CPU_SECONDS=1")


def test_memory_limit(workers, clip):
    worker = workers["memory"]
    stream = run_job(worker, request(clip, "480p_h264", "memory_limit_exceeded"), timeout=120)
    expect_breach(worker, stream, "memory_limit_exceeded", "FFMPEG_MEMORY_MB=64")


def _png(width: int, height: int) -> bytes:
    """A black 1-bit PNG: a few KB of deflate for hundreds of megapixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = (b"\0" * (1 + width // 8)) * height
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def _ffmpeg(*args):
    result = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], capture_output=True, text=True)
    assert result.returncode == 0, f"ffmpeg {' '.join(args)}: {result.stderr}"


def test_decompression_bomb(workers, media_dir):
    """A ~30 KB Matroska file declaring one 15000x15000 picture (libavutil refuses
    16384x16384): 225 megapixels against the default MAX_INPUT_PIXELS."""
    png = media_dir / "bomb.png"
    png.write_bytes(_png(15000, 15000))
    bomb = media_dir / "bomb.mkv"
    _ffmpeg("-i", str(png), "-c", "copy", str(bomb))
    assert bomb.stat().st_size < 100_000
    worker = workers["defaults"]
    stream = run_job(worker, request(bomb, "480p_h264", "input_too_large"), timeout=120)
    final = expect_breach(worker, stream, "input_too_large", "MAX_INPUT_PIXELS=35389440")
    assert "15000x15000" in final.error, final.error
    refused = [r for r in worker.log_records() if isinstance(r, dict)
               and r.get("msg") == "input refused by the probe" and r.get("error_code") == "input_too_large"]
    assert refused, "the worker did not log the probe's refusal"


def test_absurd_duration(workers, media_dir):
    """Three 64x64 frames 2,500,000 s apart: a 6 KB file lasting 58 days."""
    long_file = media_dir / "58days.mkv"
    _ffmpeg("-f", "lavfi", "-t", "3", "-i", "testsrc=size=64x64:rate=1", "-vf", "setpts=PTS*2500000",
            "-fps_mode", "passthrough", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            str(long_file))
    worker = workers["defaults"]
    stream = run_job(worker, request(long_file, "480p_h264", "input_too_long"), timeout=120)
    expect_breach(worker, stream, "input_too_long", "MAX_INPUT_DURATION=86400")
