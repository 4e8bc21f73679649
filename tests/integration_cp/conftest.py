"""Fixtures of the control plane integration tests.

The worker suite's fixtures (clips, the HTTP input server, s3rver, worker
processes) are reused as they are: its conftest is loaded under another module
name and its fixtures re-exported here. This suite adds control plane
processes and the helpers to build a stack of workers behind one.
"""

import importlib.util
import pathlib

import pytest

from cpharness import paths  # noqa: F401  (puts the worker suite's harness on sys.path)
from cpharness.controlplane import ControlPlaneProcess

_spec = importlib.util.spec_from_file_location("worker_suite_conftest",
                                               paths.WORKER_SUITE / "conftest.py")
_worker_suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_worker_suite)

# Re-exported fixtures of the worker suite.
clips = _worker_suite.clips
inputs = _worker_suite.inputs
s3 = _worker_suite.s3
bucket = _worker_suite.bucket
worker_factory = _worker_suite.worker_factory
module_worker_factory = _worker_suite.module_worker_factory


def local_worker_env(root: pathlib.Path, **extra) -> dict:
    """A worker writing its outputs under root (STORAGE_TYPE=local) and
    allowed to fetch inputs from loopback."""
    env = {"STORAGE_TYPE": "local", "LOCAL_STORAGE_DIR": str(root), "ALLOW_PRIVATE_INPUTS": "true"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


class ControlPlaneFactory:
    """Starts control planes and, at teardown, stops them and fails on a
    non-zero exit or a sanitizer report."""

    def __init__(self, root: pathlib.Path):
        self.root = pathlib.Path(root)
        self.planes = []

    def __call__(self, workers=(), env: dict = None, name: str = None,
                 start: bool = True) -> ControlPlaneProcess:
        name = name or f"cp{len(self.planes) + 1}"
        plane = ControlPlaneProcess(self.root / name, workers=workers, env=env, name=name)
        self.planes.append(plane)
        if start:
            plane.start()
        return plane

    def close(self) -> list:
        problems = []
        for plane in self.planes:
            problems += plane.stop()
        return problems


@pytest.fixture
def cp_factory(tmp_path, worker_factory):
    # Depends on worker_factory so that the control planes stop first: a
    # worker stopping under a connected control plane is a test of its own.
    factory = ControlPlaneFactory(tmp_path / "controlplanes")
    yield factory
    problems = factory.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def module_cp_factory(tmp_path_factory, module_worker_factory):
    factory = ControlPlaneFactory(tmp_path_factory.mktemp("module-controlplanes"))
    yield factory
    problems = factory.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def pytest_report_header(config):
    from harness import paths as worker_paths
    return [f"flux-controlplane under test: {paths.controlplane_binary()}",
            f"flux-worker under test: {worker_paths.worker_binary()}"]
