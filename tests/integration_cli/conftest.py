"""Fixtures of the fluxctl integration tests: the control plane suite's
fixtures (which include the worker suite's) re-exported, a local-storage stack
(one worker behind one control plane with an API key), and a runner for the
fluxctl binary."""

import os
import pathlib
import shlex
import subprocess
import sys

import pytest

_HERE = pathlib.Path(__file__).resolve().parent
_CP_SUITE = _HERE.parent / "integration_cp"
if str(_CP_SUITE) not in sys.path:
    sys.path.insert(0, str(_CP_SUITE))

from cpharness import paths, suite  # noqa: E402  (paths puts the worker suite's harness on sys.path too)
from harness.process import child_env, sanitizer_report  # noqa: E402

_cp_suite = suite.load_conftest()

# Re-exported fixtures of the control plane suite (and, through it, the worker suite).
clips = _cp_suite.clips
inputs = _cp_suite.inputs
worker_factory = _cp_suite.worker_factory
module_worker_factory = _cp_suite.module_worker_factory
cp_factory = _cp_suite.cp_factory
module_cp_factory = _cp_suite.module_cp_factory
local_worker_env = _cp_suite.local_worker_env


def fluxctl_binary() -> pathlib.Path:
    """The fluxctl under test: $FLUXCTL_BIN, else <build>/bin/fluxctl."""
    explicit = os.environ.get("FLUXCTL_BIN")
    return pathlib.Path(explicit) if explicit else paths.BUILD_DIR / "bin" / "fluxctl"


def fluxctl_env(url: str = None, api_key: str = None, extra: dict = None) -> dict:
    """Only what fluxctl needs: no FLUX_* or proxy settings leak in from the
    developer's shell."""
    return child_env({"FLUX_URL": url, "FLUX_API_KEY": api_key, **(extra or {})})


def assert_no_sanitizer_report(stderr: str, what: str) -> None:
    report = sanitizer_report(stderr)
    assert not report, f"{what}: sanitizer report:\n{report}"


class Result:
    def __init__(self, args, code: int, out: str, err: str):
        self.args, self.code, self.out, self.err = args, code, out, err

    def __repr__(self):
        return (f"fluxctl {shlex.join(self.args)} -> exit {self.code}\n--- stdout ---\n{self.out}"
                f"\n--- stderr ---\n{self.err}")


class Fluxctl:
    """Runs fluxctl against one control plane (FLUX_URL / FLUX_API_KEY)."""

    def __init__(self, url: str, api_key: str = None):
        self.url = url
        self.api_key = api_key

    def env(self, **extra) -> dict:
        return fluxctl_env(self.url, self.api_key, extra)

    def __call__(self, *args, env: dict = None, timeout: float = 120) -> Result:
        """Runs with stdout and stderr on pipes (no terminal)."""
        args = [str(a) for a in args]
        proc = subprocess.run([str(fluxctl_binary()), *args], env=env or self.env(),
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
        result = Result(args, proc.returncode, proc.stdout.decode(errors="replace"),
                        proc.stderr.decode(errors="replace"))
        assert_no_sanitizer_report(result.err, repr(result))
        return result

    def in_terminal(self, *args, timeout: float = 120, columns: int = 100) -> Result:
        """Runs under a pseudo-terminal (util-linux `script`); stdout and
        stderr both arrive on the captured stdout, as the terminal shows them."""
        args = [str(a) for a in args]
        command = shlex.join([str(fluxctl_binary()), *args])
        env = self.env(COLUMNS=str(columns))
        proc = subprocess.run(["script", "-qfec", command, "/dev/null"], env=env, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        result = Result(args, proc.returncode, proc.stdout.decode(errors="replace"),
                        proc.stderr.decode(errors="replace"))
        assert_no_sanitizer_report(result.out, repr(result))
        return result

    def popen(self, *args, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([str(fluxctl_binary()), *[str(a) for a in args]], env=self.env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **kwargs)


class Stack:
    """One local-storage worker behind one control plane (ENV=production, with
    an API key), and fluxctl pointed at it."""

    def __init__(self, worker, cp, output_root: pathlib.Path):
        self.worker = worker
        self.cp = cp
        self.output_root = output_root
        self.fluxctl = Fluxctl(cp.base_url, cp.api_key)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, module_worker_factory, module_cp_factory):
    root = tmp_path_factory.mktemp("cli-stack")
    output_root = root / "out"
    worker = module_worker_factory(env=local_worker_env(output_root), name="w")
    cp = module_cp_factory([worker], name="cp")
    return Stack(worker, cp, output_root)


def pytest_report_header(config):
    return [f"fluxctl under test: {fluxctl_binary()}"]
