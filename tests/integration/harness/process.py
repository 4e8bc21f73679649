"""A program under test as a managed child process: a controlled environment,
stdout and stderr in files (one pair per run), a readiness wait that fails
with the program's own output, a graceful stop that reports what went wrong,
and a check of every run's stderr for sanitizer reports.

The worker (harness.worker) and the control plane (cpharness.controlplane)
are both built on ManagedProcess; fluxctl runs use child_env() and
sanitizer_report() directly.
"""

import json
import os
import pathlib
import signal
import subprocess
import time

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                     "ERROR: ThreadSanitizer", "WARNING: ThreadSanitizer")

# Inherited from the test environment; everything else a program under test
# sees is set explicitly, so a developer's own S3_BUCKET or AWS_* never leaks
# into a test.
PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ",
               "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS")


def sanitizer_env() -> dict:
    """Sanitizer options for a child, where the test environment sets none."""
    from . import paths  # late: paths reads the environment CTest sets
    env = {}
    if "ASAN_OPTIONS" not in os.environ:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0"
    if "LSAN_OPTIONS" not in os.environ:
        env["LSAN_OPTIONS"] = f"suppressions={paths.LSAN_SUPPRESSIONS}:print_suppressions=0"
    if "UBSAN_OPTIONS" not in os.environ:
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return env


def child_env(overrides: dict = None) -> dict:
    """PASSTHROUGH from this environment, sanitizer options, then `overrides`
    (a value of None leaves the variable out)."""
    env = {k: v for k, v in os.environ.items() if k in PASSTHROUGH}
    env.update(sanitizer_env())
    env.update({k: str(v) for k, v in (overrides or {}).items() if v is not None})
    return env


def sanitizer_report(text: str) -> str:
    """The first sanitizer report in `text` with some context, or ""."""
    for marker in SANITIZER_MARKERS:
        index = text.find(marker)
        if index >= 0:
            return text[max(0, index - 200):index + 4000]
    return ""


def parse_log_records(text: str) -> list:
    """Lines parsed as JSON; a line that is not a JSON object is returned as str."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            value = line
        records.append(value if isinstance(value, dict) else line)
    return records


def _read(path: pathlib.Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


class ManagedProcess:
    """One program with its own log files under `root`.

    start() may be called again after the process exited or was stopped (a
    restart): each run has its own <name>.run<n>.stdout/.stderr, stop()
    checks every run's stderr for sanitizer reports, and a death by a signal
    the harness did not send is a problem.
    """

    def __init__(self, root: pathlib.Path, name: str, binary: pathlib.Path, env: dict,
                 args=(), binary_variable: str = ""):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.binary = pathlib.Path(binary)
        self.binary_variable = binary_variable
        self.env = env
        self.args = list(args)
        self.proc = None
        self.runs = 0
        self.started_at = None
        self._signalled = {}  # run number -> signals the harness sent
        self._problems = []

    def stdout_path(self, run: int = None) -> pathlib.Path:
        return self.root / f"{self.name}.run{run or self.runs}.stdout"

    def stderr_path(self, run: int = None) -> pathlib.Path:
        return self.root / f"{self.name}.run{run or self.runs}.stderr"

    # ---- life cycle -----------------------------------------------------------

    def spawn(self) -> None:
        """Starts a new run (does not wait for readiness)."""
        if not self.binary.exists():
            hint = f" (set {self.binary_variable})" if self.binary_variable else ""
            raise AssertionError(f"{self.binary.name} binary not found at {self.binary}{hint}")
        if self.alive():
            raise AssertionError(f"{self.name} is already running")
        self.runs += 1
        self._signalled[self.runs] = []
        with open(self.stdout_path(), "wb") as out, open(self.stderr_path(), "wb") as err:
            self.proc = subprocess.Popen([str(self.binary), *self.args], env=self.env,
                                         stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.started_at = time.monotonic()

    def wait_until(self, probe, timeout: float, what: str, interval: float = 0.05):
        """Polls probe() until it returns (True, value); probe returns
        (False, why) meanwhile. Fails with the program's output if it exits
        first or the time runs out. Returns the value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode} before "
                                     f"{what}\n" + self.output_tail())
            ok, value = probe()
            if ok:
                return value
            last = value
            time.sleep(interval)
        raise AssertionError(f"{self.name} did not {what} within {timeout}s (last: {last})\n"
                             + self.output_tail())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        self._signalled[self.runs].append(sig)
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float):
        """The exit code, or None if still running after timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL: no chance to flush or say goodbye."""
        self.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 20.0):
        """SIGTERM and wait; returns the exit code (None if it did not exit)."""
        self.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def stop(self, timeout: float = 20.0) -> list:
        """SIGTERM, then SIGKILL. Returns a list of problems (empty when clean),
        including sanitizer reports of every run."""
        problems = list(self._problems)
        self._problems = []
        if self.alive():
            self.send_signal(signal.SIGTERM)
            if self.wait_exit(timeout) is None:
                self.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
                problems.append(f"{self.name} did not exit within {timeout}s of SIGTERM (killed)")
            elif self.proc.returncode != 0:
                problems.append(f"{self.name} exited with {self.proc.returncode} after SIGTERM")
        if self.proc is not None:
            code = self.proc.returncode
            if code is not None and code < 0 and -code not in self._signalled.get(self.runs, []):
                problems.append(f"{self.name} died of signal {-code}")
        for run in range(1, self.runs + 1):
            report = self.sanitizer_report(run)
            if report:
                problems.append(f"{self.name} (run {run}): sanitizer report in stderr:\n{report}")
        if problems:
            problems.append(self.output_tail())
        return problems

    # ---- observation ------------------------------------------------------------

    def stdout_text(self, run: int = None) -> str:
        return _read(self.stdout_path(run))

    def stderr_text(self, run: int = None) -> str:
        return _read(self.stderr_path(run))

    def log_records(self, run: int = None) -> list:
        """stdout of one run (default: the current one) parsed as JSON lines."""
        return parse_log_records(self.stdout_text(run))

    def all_log_records(self) -> list:
        records = []
        for run in range(1, self.runs + 1):
            records += self.log_records(run)
        return records

    def sanitizer_report(self, run: int = None) -> str:
        return sanitizer_report(self.stderr_text(run))

    def output_tail(self, lines: int = 40) -> str:
        out = self.stdout_text().splitlines()[-lines:]
        err = self.stderr_text().splitlines()[-lines:]
        label = f"{self.name} run {self.runs}"
        return (f"--- {label} stdout (last {lines} lines) ---\n" + "\n".join(out)
                + f"\n--- {label} stderr (last {lines} lines) ---\n" + "\n".join(err))
