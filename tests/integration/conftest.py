"""Fixtures shared by the integration tests: clips, s3rver, an HTTP input server
and flux-worker processes. See harness/ for the pieces."""

import os
import pathlib

import pytest

from harness import paths, stubs
from harness.http_inputs import InputServer
from harness.media import ClipLibrary
from harness.s3server import S3rver
from harness.worker import WorkerProcess


@pytest.fixture(scope="session")
def pb():
    """worker_pb2, generated from the proto alone."""
    return stubs.load()[0]


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    return ClipLibrary(tmp_path_factory.mktemp("clips"))


class Inputs:
    """The session's HTTP input server plus the clip library behind it."""

    def __init__(self, server: InputServer, clips: ClipLibrary):
        self.server = server
        self.clips = clips

    def clip_url(self, name: str) -> str:
        link = self.server.root / "clips" / name
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(self.clips.path(name), link)
        return self.server.url(f"clips/{name}")


@pytest.fixture(scope="session")
def inputs(tmp_path_factory, clips):
    server = InputServer(tmp_path_factory.mktemp("http"))
    yield Inputs(server, clips)
    server.close()


@pytest.fixture
def recorder(tmp_path):
    """A fresh HTTP server of its own, to prove the worker never contacted it."""
    server = InputServer(tmp_path / "recorder")
    yield server
    server.close()


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    server = S3rver(tmp_path_factory.mktemp("s3rver"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3):
    return s3.create_bucket()


class WorkerFactory:
    """Starts workers and, at teardown, stops them and fails on sanitizer reports."""

    def __init__(self, root: pathlib.Path):
        self.root = pathlib.Path(root)
        self.workers = []

    def __call__(self, env: dict = None, name: str = None, wait: bool = True, args=()):
        name = name or f"worker{len(self.workers) + 1}"
        worker = WorkerProcess(self.root / name, env=env, name=name, args=args)
        self.workers.append(worker)
        worker.start()
        if wait:
            worker.wait_ready()
        return worker

    def close(self) -> list:
        problems = []
        for worker in self.workers:
            problems += worker.stop()
        return problems


@pytest.fixture
def worker_factory(tmp_path):
    factory = WorkerFactory(tmp_path / "workers")
    yield factory
    problems = factory.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def module_worker_factory(tmp_path_factory):
    factory = WorkerFactory(tmp_path_factory.mktemp("module-workers"))
    yield factory
    problems = factory.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def pytest_report_header(config):
    return [f"flux-worker under test: {paths.worker_binary()}"]
