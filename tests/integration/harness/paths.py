"""Where the things under test live, from the environment CTest sets."""

import os
import pathlib
import re

_HERE = pathlib.Path(__file__).resolve().parent

SOURCE_DIR = pathlib.Path(os.environ.get("FLUX_SOURCE_DIR", _HERE.parents[2]))
BUILD_DIR = pathlib.Path(os.environ.get("FLUX_BUILD_DIR", SOURCE_DIR / "build"))
PROTO_ROOT = SOURCE_DIR / "proto"
PROTO_FILE = "worker/v1/worker.proto"
S3RVER_BIN = SOURCE_DIR / "tests" / "node_modules" / ".bin" / "s3rver"
LSAN_SUPPRESSIONS = SOURCE_DIR / "tests" / "sanitizers" / "lsan.supp"


def worker_binary() -> pathlib.Path:
    """The flux-worker under test: $FLUX_WORKER_BIN, else <build>/bin/flux-worker."""
    explicit = os.environ.get("FLUX_WORKER_BIN")
    return pathlib.Path(explicit) if explicit else BUILD_DIR / "bin" / "flux-worker"


def project_version() -> str:
    """The VERSION of project() in the top-level CMakeLists.txt."""
    text = (SOURCE_DIR / "CMakeLists.txt").read_text()
    match = re.search(r"project\([^)]*VERSION\s+([0-9][0-9A-Za-z.\-]*)", text)
    return match.group(1) if match else ""
