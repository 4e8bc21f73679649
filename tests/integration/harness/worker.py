"""The flux-worker binary as a managed child process."""

import contextlib
import os
import pathlib
import signal
import time

import grpc

from . import paths, stubs
from .ports import free_port, port_open
from .process import SANITIZER_MARKERS, ManagedProcess, child_env, sanitizer_env  # noqa: F401


class WorkerProcess(ManagedProcess):
    """One flux-worker with its own ports, work dir and log files.

    `env` overrides the defaults; a value of None removes the variable.
    start() again after the worker exited (scale to zero) is a restart on the
    same port and work dir.
    """

    def __init__(self, root: pathlib.Path, env: dict = None, name: str = "worker",
                 args=()):
        self.grpc_port = free_port()
        self.pb, self.pb_grpc = stubs.load()
        merged = {
            "GRPC_PORT": str(self.grpc_port),
            "GRPC_BIND_ADDRESS": "127.0.0.1",
            "METRICS_PORT": "0",
            "WORK_DIR": str(pathlib.Path(root) / "work"),
            "WORKER_ID": f"it-{name}",
            "LOG_LEVEL": "info",
            "DISABLE_AUTO_SHUTDOWN": "true",
            "DRAIN_TIMEOUT": "10",
            "MAX_CONCURRENT_JOBS": "2",
            # ffmpeg at the tests' own priority: at the default niceness (10)
            # it crawls whenever anything else runs (the parallel test, other
            # builds), and every wait on a job becomes a wait on the scheduler.
            # test_limits.py checks FFMPEG_NICE itself.
            "FFMPEG_NICE": "0",
        }
        merged.update(env or {})
        super().__init__(root, name, paths.worker_binary(), child_env(merged), args=args,
                         binary_variable="FLUX_WORKER_BIN")
        self.work_dir = pathlib.Path(merged["WORK_DIR"]) if merged.get("WORK_DIR") else None
        self.channel = None
        self.stub = None

    # ---- life cycle -----------------------------------------------------------

    def start(self) -> "WorkerProcess":
        if self.work_dir is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        self.spawn()
        self._close_channel()
        # Short reconnect backoff: the default (1 s, growing) would make a
        # test see the worker seconds after it starts listening.
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}", options=[
            ("grpc.initial_reconnect_backoff_ms", 50),
            ("grpc.min_reconnect_backoff_ms", 50),
            ("grpc.max_reconnect_backoff_ms", 250),
        ])
        self.stub = self.pb_grpc.WorkerServiceStub(self.channel)
        return self

    def wait_ready(self, timeout: float = 20.0) -> "WorkerProcess":
        """Waits until GetStatus answers; fails with the worker's output if it never does."""
        def answers():
            if not port_open(self.grpc_port):
                return False, "port closed"
            try:
                self.stub.GetStatus(self.pb.StatusRequest(), timeout=2, wait_for_ready=True)
                return True, None
            except grpc.RpcError as error:
                return False, error

        self.wait_until(answers, timeout, "answer GetStatus")
        return self

    def stop(self, timeout: float = 30.0) -> list:
        """SIGTERM, then SIGKILL. Returns a list of problems (empty when clean)."""
        self._close_channel()
        return super().stop(timeout)

    def _close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    # ---- RPC shortcuts ----------------------------------------------------------

    def status(self, timeout: float = 5.0):
        return self.stub.GetStatus(self.pb.StatusRequest(), timeout=timeout)

    def cancel(self, job_id: str, timeout: float = 10.0):
        return self.stub.CancelJob(self.pb.CancelRequest(job_id=job_id), timeout=timeout)

    def list_presets(self, timeout: float = 5.0):
        return self.stub.ListPresets(self.pb.ListPresetsRequest(), timeout=timeout)

    # ---- observation ------------------------------------------------------------

    def work_dir_entries(self) -> list:
        if self.work_dir is None or not self.work_dir.exists():
            return []
        return sorted(str(p.relative_to(self.work_dir)) for p in self.work_dir.rglob("*"))

    def wait_work_dir_empty(self, timeout: float = 5.0) -> list:
        """Polls until WORK_DIR is empty; returns what is left (empty list = clean)."""
        return _poll(self.work_dir_entries, lambda left: not left, timeout)

    def ffmpeg_processes(self) -> list:
        """(pid, argv) of live ffmpeg/ffprobe processes working inside this WORK_DIR."""
        found = []
        if self.work_dir is None:
            return found
        needle = str(self.work_dir)
        for entry in pathlib.Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().split(")")[-1].split()[0]
            except OSError:
                continue
            if not argv or not argv[0] or state == "Z":
                continue
            program = os.path.basename(argv[0].decode(errors="replace"))
            if not program.startswith(("ffmpeg", "ffprobe")):
                continue
            text = [a.decode(errors="replace") for a in argv if a]
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                cwd = ""
            if any(needle in a for a in text) or cwd.startswith(needle):
                found.append((int(entry.name), text))
        return found

    def wait_ffmpeg(self, timeout: float = 10.0) -> list:
        """Polls until an ffmpeg/ffprobe runs inside WORK_DIR; returns them (may be empty)."""
        return _poll(self.ffmpeg_processes, bool, timeout)

    @contextlib.contextmanager
    def ffmpeg_paused(self, timeout: float = 10.0):
        """Stops (SIGSTOP) the ffmpeg encoding in this worker's WORK_DIR for
        the duration of the block, then lets it go on (SIGCONT). The job
        stays busy, holding its slot, without taking a core from the rest of
        the run: for a job that only has to be running while a test looks
        elsewhere. Yields the (pid, argv) paused."""
        found = _poll(lambda: [p for p in self.ffmpeg_processes()
                               if os.path.basename(p[1][0]).startswith("ffmpeg")], bool, timeout)
        assert found, f"{self.name}: no ffmpeg encoding in WORK_DIR within {timeout}s"
        for pid, _ in found:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield found
        finally:
            for pid, _ in found:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def wait_no_ffmpeg(self, timeout: float = 7.0) -> list:
        """Polls until no ffmpeg/ffprobe runs inside WORK_DIR; returns those left."""
        return _poll(self.ffmpeg_processes, lambda left: not left, timeout)


def _poll(observe, done, timeout: float, interval: float = 0.05):
    """observe() until done(value) or the timeout; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = observe()
        if done(value) or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
