"""Fixtures of the hostile-input corpus.

The control plane suite's fixtures (and through them the worker suite's:
clips, the HTTP input server, s3rver, worker processes) are reused as they
are: its conftest is loaded under another module name and its fixtures
re-exported here. This suite adds the connection trap.
"""

import pathlib
import sys

import pytest

_HERE = pathlib.Path(__file__).resolve().parent
_CP_SUITE = _HERE.parent / "integration_cp"
if str(_CP_SUITE) not in sys.path:
    sys.path.insert(0, str(_CP_SUITE))

from cpharness import paths, suite  # noqa: E402,F401  (paths puts the worker suite's harness on sys.path)

_cp_suite = suite.load_conftest()

from hostile import ConnectionTrap  # noqa: E402

# Re-exported fixtures of the control plane and worker suites.
pb = _cp_suite._worker_suite.pb
clips = _cp_suite.clips
inputs = _cp_suite.inputs
recorder = _cp_suite._worker_suite.recorder
s3 = _cp_suite.s3
bucket = _cp_suite.bucket
worker_factory = _cp_suite.worker_factory
module_worker_factory = _cp_suite.module_worker_factory
cp_factory = _cp_suite.cp_factory
module_cp_factory = _cp_suite.module_cp_factory
local_worker_env = _cp_suite.local_worker_env


@pytest.fixture(scope="module")
def trap():
    """A loopback listener (127.0.0.1 and ::1, one port) that must see no
    connection: every test of a module that uses it checks it at its end."""
    listener = ConnectionTrap()
    yield listener
    listener.close()


def pytest_report_header(config):
    return _cp_suite.pytest_report_header(config)
