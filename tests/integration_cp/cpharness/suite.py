"""The control plane suite's conftest as a module, for other suites
(tests/security, tests/integration_cli) that re-export its fixtures."""

import importlib.util
import pathlib
import sys

_NAME = "cp_suite_conftest"
_CONFTEST = pathlib.Path(__file__).resolve().parent.parent / "conftest.py"


def load_conftest():
    """tests/integration_cp/conftest.py, executed once per session under its own module name."""
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    spec = importlib.util.spec_from_file_location(_NAME, _CONFTEST)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module
