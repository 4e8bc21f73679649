"""`make demo` end to end: scripts/demo.sh against the built programs.

The script is run as a user runs it (no terminal, and under a pseudo-terminal
for Ctrl-C), with FLUX_BIN_DIR pointing at the build under test and
FLUX_STATE_DIR at a temporary directory. Each test checks what the user is
promised: the exit status, the outputs and their summary lines, and that
nothing it started is left running or listening afterwards.
"""

import json
import os
import pathlib
import pty
import re
import select
import signal
import socket
import subprocess
import time

import pytest

SOURCE_DIR = pathlib.Path(os.environ.get("FLUX_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BIN_DIR = pathlib.Path(os.environ.get("FLUX_BIN_DIR", SOURCE_DIR / "build" / "bin"))
DEMO = SOURCE_DIR / "scripts" / "demo.sh"
PROGRAMS = ("flux-controlplane", "flux-worker", "fluxctl")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer", "ThreadSanitizer")


def _sanitizer_defaults() -> dict:
    env = {}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0")
    env.setdefault("LSAN_OPTIONS", f"suppressions={SOURCE_DIR}/tests/sanitizers/lsan.supp:print_suppressions=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


@pytest.fixture(scope="session", autouse=True)
def programs_built():
    missing = [p for p in PROGRAMS if not (BIN_DIR / p).is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found in {BIN_DIR} (build them or set FLUX_BIN_DIR)")


def demo_env(state_dir: pathlib.Path, bin_dir: pathlib.Path = BIN_DIR) -> dict:
    env = {**_sanitizer_defaults(), **os.environ}
    env.update({"FLUX_BIN_DIR": str(bin_dir), "FLUX_STATE_DIR": str(state_dir), "FLUX_DEMO_JOB_TIMEOUT": "600"})
    env.pop("FLUX_URL", None)
    return env


def seed_sample(state_dir: pathlib.Path, seconds: int = 2) -> pathlib.Path:
    """A short clip where the demo looks for its sample, so it skips generating one."""
    samples = state_dir / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    path = samples / "sample.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-shortest", str(path)], check=True)
    return path


def processes_using(state_dir: pathlib.Path) -> list:
    """Every live process whose command line or environment names state_dir:
    the control plane and workers (their directories are in their
    environment) and the ffmpeg processes of a worker (paths in argv)."""
    needle = str(state_dir).encode()
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            status = (entry / "status").read_text()
            if re.search(r"^State:\s+Z", status, re.M):
                continue
            blob = (entry / "cmdline").read_bytes() + b"\0" + (entry / "environ").read_bytes()
        except (OSError, ProcessLookupError):
            continue
        if needle in blob:
            command = blob.split(b"\0\0")[0].replace(b"\0", b" ")[:200]
            found.append(f"{entry.name}: {command!r}")
    return found


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stack_ports(state_dir: pathlib.Path, output: str) -> list:
    """The ports the demo's stack listened on: the API from the demo's output,
    gRPC and metrics from the workers' start-up lines."""
    ports = [int(p) for p in re.findall(r"API\s+http://127\.0\.0\.1:(\d+)", output)]
    for log in (state_dir / "logs" / "demo").glob("worker-*.log"):
        text = log.read_text(errors="replace")
        ports += [int(p) for p in re.findall(r"\b(?:grpc_port|metrics_port)=(\d+)", text)]
    return sorted(set(ports))


def assert_nothing_left(state_dir: pathlib.Path, output: str, expect_ports: bool = True) -> None:
    left = processes_using(state_dir)
    assert not left, "processes left running:\n" + "\n".join(left)
    ports = stack_ports(state_dir, output)
    if expect_ports:
        assert len(ports) >= 5, f"expected the API and 2x2 worker ports in the output/logs, found {ports}"
    still = [p for p in ports if listening(p)]
    assert not still, f"ports still listening: {still}"
    run_dir = state_dir / "run"
    assert not run_dir.exists() or not any(run_dir.iterdir()), f"run files left: {list(run_dir.iterdir())}"
    work = state_dir / "scratch"
    assert not work.exists() or not any(work.rglob("*")), f"work files left: {list(work.rglob('*'))}"
    partial = list((state_dir / "samples").glob("*.partial*")) if (state_dir / "samples").exists() else []
    assert not partial, f"temporary files left: {partial}"


def assert_no_sanitizer_reports(state_dir: pathlib.Path) -> None:
    for log in (state_dir / "logs").rglob("*.log"):
        text = log.read_text(errors="replace")
        for marker in SANITIZER_MARKERS:
            assert marker not in text, f"{log.name}: {text[text.find(marker) - 200:][:4000]}"


def probe(path: pathlib.Path) -> dict:
    answer = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                             "format=duration:stream=codec_type,codec_name,width,height", "-of", "json",
                             str(path)], check=True, capture_output=True, text=True)
    return json.loads(answer.stdout)


def run_in_terminal(cmd, env, interrupt_after: str, delay: float, timeout: float, before_interrupt=None):
    """Runs cmd under a pseudo-terminal; once `interrupt_after` has appeared,
    waits `delay` seconds, calls before_interrupt(output so far) if given, and
    types Ctrl-C. Returns (exit code, output, seconds from Ctrl-C to exit)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(SOURCE_DIR)
        os.execvpe(cmd[0], cmd, env)
    output = b""
    seen_at = sent_at = problem = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the terminal's last writer is gone
                    break
                if not chunk:
                    break
                output += chunk
            if seen_at is None and interrupt_after.encode() in output:
                seen_at = time.monotonic()
            if sent_at is None and seen_at is not None and time.monotonic() - seen_at >= delay:
                if before_interrupt is not None:
                    try:
                        before_interrupt(output.decode(errors="replace"))
                    except Exception as error:  # re-raised once the program has stopped
                        problem = error
                os.write(fd, b"\x03")
                sent_at = time.monotonic()
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the demo did not end in time:\n" + output.decode(errors="replace")[-4000:])
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    text = output.decode(errors="replace")
    if problem is not None:
        raise problem
    assert sent_at is not None, f"never saw {interrupt_after!r}:\n{text[-4000:]}"
    return os.waitstatus_to_exitcode(status), text, time.monotonic() - sent_at


def test_demo_runs_both_jobs_and_leaves_nothing_behind(tmp_path):
    state = tmp_path / "state"
    run = subprocess.run([str(DEMO)], cwd=SOURCE_DIR, env=demo_env(state), capture_output=True, text=True,
                         timeout=1200)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]

    # It generated its own sample: 6 s of 1280x720 with audio.
    sample = probe(state / "samples" / "sample.mp4")
    assert {s["codec_type"] for s in sample["streams"]} == {"video", "audio"}
    assert abs(float(sample["format"]["duration"]) - 6.0) < 0.2

    mp4 = state / "output" / "demo" / "sample_720p.mp4"
    master = state / "output" / "demo" / "sample_hls" / "master.m3u8"
    assert mp4.is_file() and master.is_file(), output[-4000:]
    video = [s for s in probe(mp4)["streams"] if s["codec_type"] == "video"]
    assert (video[0]["codec_name"], video[0]["height"]) == ("h264", 720)

    # One summary line for the MP4, the master and one per variant.
    assert re.search(r"sample_720p\.mp4: h264 1280x720 30fps, aac 48kHz 2ch, 6\.\d\d s, [\d.]+[KM]iB", run.stdout), \
        run.stdout
    assert "sample_hls/master.m3u8" in run.stdout
    variants = re.findall(r"variant\s+\S+/playlist\.m3u8: h264 (\d+x\d+) 30fps, aac", run.stdout)
    assert variants == ["1280x720", "854x480", "640x360"], run.stdout
    assert "Demo complete" in run.stdout
    # Both workers took part.
    assert "demo-worker-1" in run.stdout and "demo-worker-2" in run.stdout, run.stdout

    assert_nothing_left(state, output)
    assert_no_sanitizer_reports(state)


def test_ctrl_c_while_a_job_runs_stops_everything(tmp_path):
    state = tmp_path / "state"
    seed_sample(state, seconds=20)  # long enough to be mid-encode at Ctrl-C
    code, output, stop_seconds = run_in_terminal([str(DEMO)], demo_env(state), interrupt_after="Job job_",
                                                 delay=2.0, timeout=600)
    assert code == 130, output[-4000:]
    assert "interrupted" in output
    assert stop_seconds < 60, f"took {stop_seconds:.0f}s to stop after Ctrl-C"
    assert_nothing_left(state, output)
    assert_no_sanitizer_reports(state)
    # The interrupted jobs were cancelled, not left to be dispatched again by
    # the next demo (which starts from an empty database anyway).
    log = (state / "logs" / "demo" / "controlplane.log").read_text(errors="replace")
    assert "cancel requested" in log, log[-3000:]


def test_a_failed_job_fails_the_demo_with_its_reason(tmp_path):
    state = tmp_path / "state"
    samples = state / "samples"
    samples.mkdir(parents=True)
    (samples / "sample.mp4").write_bytes(b"this is not a video\n" * 1000)
    run = subprocess.run([str(DEMO)], cwd=SOURCE_DIR, env=demo_env(state), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert "demo failed" in run.stderr
    # The reason names the job, its status and the machine code from the worker.
    assert re.search(r"job job_\w+ \(720p_h264\) ended 'failed' \[\w+\]", run.stderr), run.stderr[-3000:]
    assert "last" in run.stderr and "worker-" in run.stderr  # the worker's log tail
    assert_nothing_left(state, run.stdout + run.stderr)
    assert_no_sanitizer_reports(state)


def test_a_component_that_cannot_start_fails_the_demo_with_its_log(tmp_path):
    state = tmp_path / "state"
    seed_sample(state)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("flux-controlplane", "fluxctl"):
        (bin_dir / program).symlink_to(BIN_DIR / program)
    broken = bin_dir / "flux-worker"
    broken.write_text("#!/bin/sh\necho 'flux-worker: configuration error: GRPC_PORT: broken on purpose' >&2\nexit 2\n")
    broken.chmod(0o755)
    run = subprocess.run([str(DEMO)], cwd=SOURCE_DIR, env=demo_env(state, bin_dir), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.search(r"worker-\d exited during start-up", run.stderr), run.stderr
    assert "broken on purpose" in run.stderr
    assert "the stack did not start" in run.stderr
    assert_nothing_left(state, run.stdout + run.stderr, expect_ports=False)


def test_a_second_demo_on_the_same_state_is_refused(tmp_path):
    state = tmp_path / "state"
    (state / "run").mkdir(parents=True)
    holder = subprocess.Popen(["flock", str(state / "run" / "demo.lock"), "sleep", "60"])
    try:
        time.sleep(0.3)
        run = subprocess.run([str(DEMO)], cwd=SOURCE_DIR, env=demo_env(state), capture_output=True, text=True,
                             timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode == 1
    assert "another 'demo' stack is running" in run.stderr
    # It started nothing and generated nothing.
    assert not (state / "logs" / "demo").exists() or not any((state / "logs" / "demo").iterdir())
    assert not (state / "samples" / "sample.mp4").exists()



def test_up_serves_until_ctrl_c_then_stops_everything(tmp_path):
    """`make up`: the stack answers on the URLs it prints until Ctrl-C."""
    state = tmp_path / "state"
    seed_sample(state)
    up = SOURCE_DIR / "scripts" / "up.sh"
    checked = {}

    def check_while_running(output: str) -> None:
        api = re.search(r"API\s+(http://127\.0\.0\.1:\d+)/api/v1", output).group(1)
        checked["ready"] = subprocess.run(["curl", "-fsS", "--noproxy", "*", api + "/ready"],
                                          capture_output=True, text=True).stdout
        checked["docs"] = subprocess.run(["curl", "-fsS", "-o", "/dev/null", "-w", "%{http_code}",
                                          "--noproxy", "*", api + "/docs"], capture_output=True, text=True).stdout
        metrics = re.findall(r"metrics http://127\.0\.0\.1:(\d+)/metrics", output)
        checked["worker_metrics"] = [listening(int(p)) for p in metrics]

    code, output, stop_seconds = run_in_terminal([str(up)], demo_env(state), interrupt_after="Ctrl-C stops",
                                                 delay=0.5, timeout=300, before_interrupt=check_while_running)
    assert '"status":"ready"' in checked.get("ready", ""), output[-3000:]
    assert checked["docs"] == "200"
    assert checked["worker_metrics"] == [True, True]
    assert code == 0, output[-3000:]
    assert stop_seconds < 60
    # up keeps its own database between runs, apart from the demo's.
    assert (state / "flux.db").is_file() and not (state / "demo.db").exists()
    left = processes_using(state)
    assert not left, "processes left running:\n" + "\n".join(left)
    api_port = int(re.search(r"API\s+http://127\.0\.0\.1:(\d+)", output).group(1))
    assert not listening(api_port)
    assert_no_sanitizer_reports(state)
