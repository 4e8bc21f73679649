"""Makes the worker suite's `harness` package importable and locates the
control plane binary."""

import os
import pathlib
import sys

_HERE = pathlib.Path(__file__).resolve().parent
WORKER_SUITE = _HERE.parents[1] / "integration"
if str(WORKER_SUITE) not in sys.path:
    sys.path.insert(0, str(WORKER_SUITE))

from harness import paths as worker_paths  # noqa: E402  (needs the sys.path entry above)

SOURCE_DIR = worker_paths.SOURCE_DIR
BUILD_DIR = worker_paths.BUILD_DIR
REDOCLY_BIN = SOURCE_DIR / "tests" / "node_modules" / ".bin" / "redocly"
OPENAPI_LINT = SOURCE_DIR / "tests" / "unit" / "cp_api" / "openapi_lint.sh"


def controlplane_binary() -> pathlib.Path:
    """The flux-controlplane under test: $FLUX_CONTROLPLANE_BIN, else <build>/bin/flux-controlplane."""
    explicit = os.environ.get("FLUX_CONTROLPLANE_BIN")
    return pathlib.Path(explicit) if explicit else BUILD_DIR / "bin" / "flux-controlplane"
