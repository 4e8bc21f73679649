"""The flux-controlplane binary as a managed child process."""

import pathlib
import secrets
import subprocess

from . import paths
from harness.ports import free_port, port_open
from harness.process import ManagedProcess, child_env

from .api import Api


def new_api_key() -> str:
    return "it-key-" + secrets.token_hex(12)


class ControlPlaneProcess(ManagedProcess):
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
        self.port = free_port()
        api_key = new_api_key()
        merged = {
            "PORT": str(self.port),
            "BIND_ADDRESS": "127.0.0.1",
            "ENV": "production",
            "API_KEYS": api_key,
            "LOG_LEVEL": "info",
            "DATABASE_PATH": str(pathlib.Path(root) / "flux.db"),
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
        super().__init__(root, name, paths.controlplane_binary(), child_env(merged),
                         binary_variable="FLUX_CONTROLPLANE_BIN")
        self.api = Api(self.base_url, self.api_key)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_path(self) -> pathlib.Path:
        return pathlib.Path(self.env["DATABASE_PATH"])

    # ---- life cycle -----------------------------------------------------------

    def start(self, wait: bool = True) -> "ControlPlaneProcess":
        self.spawn()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> "ControlPlaneProcess":
        """Waits until GET /health answers 200."""
        def healthy():
            if not port_open(self.port):
                return False, "port closed"
            try:
                response = self.api.get("/health", auth=False, timeout=2)
            except Exception as error:  # noqa: BLE001 - not ready yet
                return False, repr(error)
            return response.status_code == 200, f"HTTP {response.status_code}"

        self.wait_until(healthy, timeout, "answer /health")
        return self


def _address(worker) -> str:
    if isinstance(worker, str):
        return worker
    return f"127.0.0.1:{worker.grpc_port}"


def run_to_exit(env: dict, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Runs flux-controlplane with exactly `env` (plus PATH and sanitizer
    options) and waits for it to exit: for start-up refusals."""
    return subprocess.run([str(paths.controlplane_binary())], env=child_env(env), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
