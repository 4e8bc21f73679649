"""The flux-controlplane binary as a managed child process."""

import json
import os
import pathlib
import secrets
import signal
import subprocess
import time

from . import paths
from harness.ports import free_port, port_open
from harness.worker import _PASSTHROUGH, SANITIZER_MARKERS, sanitizer_env

from .api import Api


def new_api_key() -> str:
    return "it-key-" + secrets.token_hex(12)


class ControlPlaneProcess:
    """One flux-controlplane with its own port, database and log files.

    `env` overrides the defaults; a value of None removes the variable. The
    defaults: ENV=production with one generated API key (so every test goes
    through auth and the logs are JSON), loopback only, inputs from loopback
    allowed, WORKER_STARTUP_TIMEOUT=10 (a sanitizer-built worker on a
    loaded machine can take seconds to answer GetStatus).

    start() may be called again after stop() or kill(): the new process keeps
    the port, the database and the environment (a restart). Each run has its
    own log files, and every run's stderr is checked for sanitizer reports.
    """

    def __init__(self, root: pathlib.Path, workers=(), env: dict = None, name: str = "cp"):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.binary = paths.controlplane_binary()
        self.port = free_port()
        self.api_key = new_api_key()
        merged = {
            "PORT": str(self.port),
            "BIND_ADDRESS": "127.0.0.1",
            "ENV": "production",
            "API_KEYS": self.api_key,
            "LOG_LEVEL": "info",
            "DATABASE_PATH": str(self.root / "flux.db"),
            "WORKER_NODES": ",".join(_address(w) for w in workers),
            "WORKER_STARTUP_TIMEOUT": "10",
            "ALLOW_PRIVATE_INPUTS": "true",
        }
        merged.update(env or {})
        if merged.get("API_KEYS") is None and merged.get("API_KEY") is None:
            self.api_key = None
        elif merged.get("API_KEYS") is not None:
            self.api_key = merged["API_KEYS"].split(",")[0]
        else:
            self.api_key = merged["API_KEY"]
        self.env = {k: v for k, v in os.environ.items() if k in _PASSTHROUGH}
        self.env.update(sanitizer_env())
        self.env.update({k: str(v) for k, v in merged.items() if v is not None})
        self.proc = None
        self.runs = 0
        self._signalled = {}  # run number -> signals the harness sent
        self._problems = []
        self.api = Api(self.base_url, self.api_key)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_path(self) -> pathlib.Path:
        return pathlib.Path(self.env["DATABASE_PATH"])

    def stdout_path(self, run: int = None) -> pathlib.Path:
        return self.root / f"{self.name}.run{run or self.runs}.stdout"

    def stderr_path(self, run: int = None) -> pathlib.Path:
        return self.root / f"{self.name}.run{run or self.runs}.stderr"

    # ---- life cycle -----------------------------------------------------------

    def start(self, wait: bool = True) -> "ControlPlaneProcess":
        if not self.binary.exists():
            raise AssertionError(f"flux-controlplane binary not found at {self.binary} "
                                 "(set FLUX_CONTROLPLANE_BIN)")
        if self.alive():
            raise AssertionError(f"{self.name} is already running")
        self.runs += 1
        self._signalled[self.runs] = []
        with open(self.stdout_path(), "wb") as out, open(self.stderr_path(), "wb") as err:
            self.proc = subprocess.Popen([str(self.binary)], env=self.env, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> "ControlPlaneProcess":
        """Waits until GET /health answers 200."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode} before "
                                     f"answering /health\n" + self.output_tail())
            if port_open(self.port):
                try:
                    response = self.api.get("/health", auth=False, timeout=2)
                    if response.status_code == 200:
                        return self
                    last = f"HTTP {response.status_code}"
                except Exception as error:  # not ready yet
                    last = repr(error)
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not answer /health within {timeout}s "
                             f"(last: {last})\n" + self.output_tail())

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
        including sanitizer reports of every earlier run."""
        problems = list(self._problems)
        self._problems = []
        if self.proc is not None and self.proc.poll() is None:
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
        path = self.stdout_path(run)
        return path.read_text(errors="replace") if path.exists() else ""

    def stderr_text(self, run: int = None) -> str:
        path = self.stderr_path(run)
        return path.read_text(errors="replace") if path.exists() else ""

    def log_records(self, run: int = None) -> list:
        """stdout lines of one run (default: the current one) parsed as JSON;
        a line that is not a JSON object is returned as str."""
        records = []
        for line in self.stdout_text(run).splitlines():
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                value = line
            records.append(value if isinstance(value, dict) else line)
        return records

    def all_log_records(self) -> list:
        records = []
        for run in range(1, self.runs + 1):
            records += self.log_records(run)
        return records

    def sanitizer_report(self, run: int = None) -> str:
        text = self.stderr_text(run)
        for marker in SANITIZER_MARKERS:
            index = text.find(marker)
            if index >= 0:
                return text[max(0, index - 200):index + 4000]
        return ""

    def output_tail(self, lines: int = 40) -> str:
        out = self.stdout_text().splitlines()[-lines:]
        err = self.stderr_text().splitlines()[-lines:]
        return (f"--- {self.name} run {self.runs} stdout (last {lines} lines) ---\n" + "\n".join(out)
                + f"\n--- {self.name} run {self.runs} stderr (last {lines} lines) ---\n" + "\n".join(err))


def _address(worker) -> str:
    if isinstance(worker, str):
        return worker
    return f"127.0.0.1:{worker.grpc_port}"


def run_to_exit(env: dict, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Runs flux-controlplane with exactly `env` (plus PATH and sanitizer
    options) and waits for it to exit: for start-up refusals."""
    full = {k: v for k, v in os.environ.items() if k in _PASSTHROUGH}
    full.update(sanitizer_env())
    full.update({k: str(v) for k, v in env.items() if v is not None})
    return subprocess.run([str(paths.controlplane_binary())], env=full, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
