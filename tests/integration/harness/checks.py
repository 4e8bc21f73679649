"""Assertions shared by several test files."""

import pathlib

from .jobs import describe


def assert_worker_clean(worker, what: str = "after the job") -> None:
    """No job directory left in WORK_DIR and no ffmpeg left running in it."""
    left = worker.wait_work_dir_empty(timeout=5.0)
    assert not left, f"WORK_DIR {worker.work_dir} not empty {what}: {left[:20]}"
    procs = worker.wait_no_ffmpeg(timeout=7.0)
    assert not procs, f"ffmpeg/ffprobe still running {what}: {procs}"


def assert_nothing_uploaded(s3=None, bucket=None, local_dir=None, prefix="", events=()) -> None:
    if s3 is not None and bucket is not None:
        objects = s3.list_objects(bucket, prefix)
        assert not objects, (f"objects left in bucket {bucket} under {prefix!r}: {objects}\n"
                             f"{describe(events)}")
    if local_dir is not None:
        root = pathlib.Path(local_dir)
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) \
            if root.exists() else []
        assert not files, f"files left in LOCAL_STORAGE_DIR {root}: {files}\n{describe(events)}"
