"""s3rver, the local S3-compatible server, as a managed child process."""

import os
import pathlib
import re
import signal
import subprocess
import time
import uuid

import boto3
from botocore.config import Config

from . import paths
from .ports import free_port, port_open

ACCESS_KEY = "S3RVER"
# s3rver looks the access key up but does not verify SigV4 signatures, so a
# worker may be given any secret (the log tests give it a canary to search for).
SECRET_KEY = "S3RVER"
REGION = "us-east-1"


def worker_env(server: "S3rver", bucket: str, secret: str = SECRET_KEY) -> dict:
    """The environment that points a flux-worker at this s3rver and bucket."""
    return {
        "STORAGE_TYPE": "s3",
        "S3_BUCKET": bucket,
        "S3_REGION": REGION,
        "S3_ENDPOINT": server.endpoint,
        "S3_FORCE_PATH_STYLE": "true",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": secret,
    }


class S3rver:
    """One s3rver on 127.0.0.1 with its own data directory.

    stop() and start() again keep the same port and directory, so a test can
    take the store away under a running upload and bring it back to look.
    """

    def __init__(self, root: pathlib.Path):
        self.root = pathlib.Path(root)
        self.data_dir = self.root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.root / "s3rver.log"
        self.port = free_port()
        self.proc = None
        self._client = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        if not paths.S3RVER_BIN.exists():
            raise RuntimeError(
                f"{paths.S3RVER_BIN} is missing: run `npm ci` in {paths.SOURCE_DIR / 'tests'}"
            )
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                str(paths.S3RVER_BIN),
                "-d", str(self.data_dir),
                "-a", "127.0.0.1",
                "-p", str(self.port),
                "--no-vhost-buckets",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"s3rver exited with {self.proc.returncode}: {self.log_tail()}")
            if port_open(self.port):
                try:
                    self.client().list_buckets()
                    return
                except Exception:  # not ready yet
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"s3rver did not answer on {self.endpoint}: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stored_parts(self, bucket: str) -> list:
        """(upload id, part number) of every multipart part s3rver stored in bucket.

        s3rver reports a plain MD5 ETag for multipart objects, so its log is
        the only witness that an upload really went in parts.
        """
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        pattern = re.compile(r'Stored part (\d+) of (\w+) in bucket "%s"' % re.escape(bucket))
        return [(m.group(2), int(m.group(1))) for m in pattern.finditer(text)]

    def client(self):
        if self._client is None:
            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=REGION,
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
                config=Config(
                    s3={"addressing_style": "path"},
                    signature_version="s3v4",
                    retries={"max_attempts": 2},
                    connect_timeout=3,
                    read_timeout=30,
                ),
            )
        return self._client

    def create_bucket(self, prefix: str = "it") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def list_objects(self, bucket: str, prefix: str = "") -> dict:
        """{key: size} of every object under prefix."""
        objects = {}
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                objects[item["Key"]] = item["Size"]
        return objects

    def download(self, bucket: str, key: str, dest: pathlib.Path) -> pathlib.Path:
        dest = pathlib.Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        body = self.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        dest.write_bytes(body)
        return dest

    def download_prefix(self, bucket: str, prefix: str, dest: pathlib.Path) -> dict:
        """Downloads every object under prefix into dest, keeping the relative paths.

        Returns {relative path: local path}.
        """
        files = {}
        base = prefix.rstrip("/") + "/"
        for key in self.list_objects(bucket, base):
            relative = key[len(base):]
            files[relative] = self.download(bucket, key, pathlib.Path(dest) / relative)
        return files
