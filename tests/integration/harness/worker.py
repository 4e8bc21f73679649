"""The flux-worker binary as a managed child process."""

import json
import os
import pathlib
import signal
import subprocess
import time

import grpc

from . import paths, stubs
from .ports import free_port, port_open

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                     "ERROR: ThreadSanitizer", "WARNING: ThreadSanitizer")

# Inherited from the test environment; everything else the worker sees is set
# explicitly, so a developer's own S3_BUCKET or AWS_* never leaks into a test.
_PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ",
                "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS")


def sanitizer_env() -> dict:
    env = {}
    if "ASAN_OPTIONS" not in os.environ:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0"
    if "LSAN_OPTIONS" not in os.environ:
        env["LSAN_OPTIONS"] = f"suppressions={paths.LSAN_SUPPRESSIONS}:print_suppressions=0"
    if "UBSAN_OPTIONS" not in os.environ:
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return env


class WorkerProcess:
    """One flux-worker with its own ports, work dir and log files.

    `env` overrides the defaults; a value of None removes the variable.
    """

    def __init__(self, root: pathlib.Path, env: dict = None, name: str = "worker",
                 args=()):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.binary = paths.worker_binary()
        self.stdout_path = self.root / f"{name}.stdout"
        self.stderr_path = self.root / f"{name}.stderr"
        self.grpc_port = free_port()
        self.pb, self.pb_grpc = stubs.load()
        merged = {
            "GRPC_PORT": str(self.grpc_port),
            "GRPC_BIND_ADDRESS": "127.0.0.1",
            "METRICS_PORT": "0",
            "WORK_DIR": str(self.root / "work"),
            "WORKER_ID": f"it-{name}",
            "LOG_LEVEL": "info",
            "DISABLE_AUTO_SHUTDOWN": "true",
            "DRAIN_TIMEOUT": "10",
            "MAX_CONCURRENT_JOBS": "2",
            # ffmpeg at the product's default nice 10 would yield to the other
            # suite ctest runs beside this one; tests that check nice set their own.
            "FFMPEG_NICE": "0",
        }
        merged.update(env or {})
        self.work_dir = pathlib.Path(merged["WORK_DIR"]) if merged.get("WORK_DIR") else None
        self.env = {k: v for k, v in os.environ.items() if k in _PASSTHROUGH}
        self.env.update(sanitizer_env())
        self.env.update({k: str(v) for k, v in merged.items() if v is not None})
        self.args = list(args)
        self.proc = None
        self.channel = None
        self.stub = None
        self._signalled = []  # signals the harness sent

    # ---- life cycle -----------------------------------------------------------

    def start(self) -> "WorkerProcess":
        if not self.binary.exists():
            raise AssertionError(f"flux-worker binary not found at {self.binary} "
                                 "(set FLUX_WORKER_BIN)")
        if self.work_dir is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([str(self.binary), *self.args], env=self.env,
                                         stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.started_at = time.monotonic()
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
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode} before answering GetStatus\n"
                    + self.output_tail())
            if not port_open(self.grpc_port):
                time.sleep(0.05)
                continue
            try:
                self.stub.GetStatus(self.pb.StatusRequest(), timeout=2, wait_for_ready=True)
                self.ready_at = time.monotonic()
                return self
            except grpc.RpcError as error:
                last_error = error
                time.sleep(0.1)
        raise AssertionError(f"{self.name} did not answer GetStatus within {timeout}s "
                             f"(last error: {last_error})\n" + self.output_tail())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        self._signalled.append(sig)
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float):
        """The exit code, or None if still running after timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 30.0) -> list:
        """SIGTERM, then SIGKILL. Returns a list of problems (empty when clean)."""
        problems = []
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            self.send_signal(signal.SIGTERM)
            if self.wait_exit(timeout) is None:
                self.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
                problems.append(f"{self.name} did not exit within {timeout}s of SIGTERM (killed)")
            elif self.proc.returncode != 0:
                problems.append(f"{self.name} exited with {self.proc.returncode} after SIGTERM")
        code = self.proc.returncode
        if code is not None and code < 0 and -code not in self._signalled:
            problems.append(f"{self.name} died of signal {-code}")
        report = self.sanitizer_report()
        if report:
            problems.append(f"{self.name}: sanitizer report in stderr:\n{report}")
        if problems:
            problems.append(self.output_tail())
        return problems

    # ---- RPC shortcuts ----------------------------------------------------------

    def status(self, timeout: float = 5.0):
        return self.stub.GetStatus(self.pb.StatusRequest(), timeout=timeout)

    def cancel(self, job_id: str, timeout: float = 10.0):
        return self.stub.CancelJob(self.pb.CancelRequest(job_id=job_id), timeout=timeout)

    def list_presets(self, timeout: float = 5.0):
        return self.stub.ListPresets(self.pb.ListPresetsRequest(), timeout=timeout)

    # ---- observation ------------------------------------------------------------

    def stdout_text(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def log_records(self) -> list:
        """stdout lines parsed as JSON; a line that is not a JSON object is returned as str."""
        records = []
        for line in self.stdout_text().splitlines():
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                value = line
            records.append(value if isinstance(value, dict) else line)
        return records

    def sanitizer_report(self) -> str:
        text = self.stderr_text()
        for marker in SANITIZER_MARKERS:
            index = text.find(marker)
            if index >= 0:
                return text[max(0, index - 200):index + 4000]
        return ""

    def output_tail(self, lines: int = 40) -> str:
        out = self.stdout_text().splitlines()[-lines:]
        err = self.stderr_text().splitlines()[-lines:]
        return (f"--- {self.name} stdout (last {lines} lines) ---\n" + "\n".join(out)
                + f"\n--- {self.name} stderr (last {lines} lines) ---\n" + "\n".join(err))

    def work_dir_entries(self) -> list:
        if self.work_dir is None or not self.work_dir.exists():
            return []
        return sorted(str(p.relative_to(self.work_dir)) for p in self.work_dir.rglob("*"))

    def wait_work_dir_empty(self, timeout: float = 5.0) -> list:
        """Polls until WORK_DIR is empty; returns what is left (empty list = clean)."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.work_dir_entries()
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.1)

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
        deadline = time.monotonic() + timeout
        while True:
            found = self.ffmpeg_processes()
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)

    def wait_no_ffmpeg(self, timeout: float = 7.0) -> list:
        deadline = time.monotonic() + timeout
        while True:
            left = self.ffmpeg_processes()
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.1)
