"""Python gRPC stubs generated at test time from proto/worker/v1/worker.proto alone.

This is the proof that a client generated from the proto, and nothing of the
project's code, can drive the worker.
"""

import atexit
import importlib
import pathlib
import shutil
import subprocess
import sys
import tempfile

from . import paths

_cache = {}


def load():
    """Returns (worker_pb2, worker_pb2_grpc), generating them once per process."""
    if "modules" in _cache:
        return _cache["modules"]
    out_dir = pathlib.Path(tempfile.mkdtemp(prefix="flux-it-stubs-"))
    atexit.register(shutil.rmtree, out_dir, True)
    cmd = [
        "protoc",
        f"--proto_path={paths.PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
        paths.PROTO_FILE,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"protoc failed ({' '.join(cmd)}):\n{result.stderr}")
    for package in (out_dir / "worker", out_dir / "worker" / "v1"):
        (package / "__init__.py").touch()
    sys.path.insert(0, str(out_dir))
    pb2 = importlib.import_module("worker.v1.worker_pb2")
    pb2_grpc = importlib.import_module("worker.v1.worker_pb2_grpc")
    _cache["modules"] = (pb2, pb2_grpc)
    return pb2, pb2_grpc
