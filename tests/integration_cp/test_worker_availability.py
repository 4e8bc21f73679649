"""Workers that cannot take a job right now (SPEC §4): one down at dispatch,
one still starting when the job arrives, one draining after SIGTERM, one that
stopped itself when idle and is started again."""

import signal
import time

from conftest import local_worker_env
from cpharness.api import job_body
from cpharness.checks import accepted_count, dump, epoch, wait_until
from harness.ports import free_port
from harness.worker import WorkerProcess


def test_worker_down_at_dispatch_is_skipped(worker_factory, cp_factory, inputs, tmp_path):
    live = worker_factory(env=local_worker_env(tmp_path / "out"), name="live")
    down = f"127.0.0.1:{free_port()}"
    # Round robin starts with the first address: the down one is asked first.
    cp = cp_factory([down, live], env={"WORKER_STARTUP_TIMEOUT": "2"})
    started = time.monotonic()
    job_id = cp.api.submit(job_body(inputs.clip_url("small.mp4"), "down/out.mp4"))
    doc = cp.api.wait_job(job_id, timeout=60)
    assert doc["status"] == "completed" and doc["attempts"] == 1, dump(doc)
    assert doc["worker_id"] == "it-live", dump(doc)
    waited = epoch(doc["started_at"]) - epoch(doc["created_at"])
    assert waited < 2 + 3, f"dispatch took {waited:.1f}s with WORKER_STARTUP_TIMEOUT=2"
    assert time.monotonic() - started < 30
    skipped = [r for r in cp.log_records() if isinstance(r, dict)
               and "startup timeout" in str(r.get("msg")) and r.get("worker") == down]
    assert skipped, "no log line says the down worker was skipped"
    states = {w["address"]: w["state"] for w in cp.api.workers()}
    assert states[down] == "down" and states[f"127.0.0.1:{live.grpc_port}"] == "up", states


def test_worker_that_is_starting_is_waited_for(cp_factory, worker_factory, inputs, tmp_path):
    # Scale to zero: the only worker's machine is being started by its
    # platform when the job arrives; it answers within WORKER_STARTUP_TIMEOUT.
    late = WorkerProcess(tmp_path / "late", env=local_worker_env(tmp_path / "out"), name="late")
    worker_factory.workers.append(late)  # stopped (and checked) at teardown
    cp = cp_factory([late], env={"WORKER_STARTUP_TIMEOUT": "15"})
    job_id = cp.api.submit(job_body(inputs.clip_url("small.mp4"), "late/out.mp4"))
    time.sleep(1.5)
    assert cp.api.job(job_id)["status"] == "queued"
    late.start()
    doc = cp.api.wait_job(job_id, timeout=60)
    assert doc["status"] == "completed" and doc["attempts"] == 1, dump(doc)
    assert doc["worker_id"] == "it-late", dump(doc)


def test_draining_worker_finishes_its_job_and_gets_no_new_one(worker_factory, cp_factory, inputs,
                                                             tmp_path):
    # DRAIN_TIMEOUT long enough for the job to finish while draining, even
    # on a loaded machine.
    workers = {name: worker_factory(env=local_worker_env(tmp_path / name, DRAIN_TIMEOUT=120),
                                    name=name)
               for name in ("wa", "wb")}
    cp = cp_factory(list(workers.values()))
    first = cp.api.submit(job_body(inputs.clip_url("small_long.mp4"), "drain/first.mp4"))
    doc = cp.api.wait_job(first, predicate=lambda d: d.get("phase") == "encoding", timeout=30,
                          what="encoding")
    draining = workers[doc["worker_id"].removeprefix("it-")]
    other = workers["wb" if draining.name == "wa" else "wa"]
    draining.send_signal(signal.SIGTERM)
    address = f"127.0.0.1:{draining.grpc_port}"
    wait_until(lambda: {w["address"]: w["state"] for w in cp.api.workers()}[address] == "draining",
               10, "the worker reported as draining")

    # New work goes elsewhere, even when the draining worker is next in turn.
    later = [cp.api.submit(job_body(inputs.clip_url("small.mp4"), f"drain/later{n}.mp4"))
             for n in range(2)]
    for job_id in later:
        doc = cp.api.wait_job(job_id, timeout=60)
        assert doc["status"] == "completed" and doc["worker_id"] == f"it-{other.name}", dump(doc)
        assert doc["attempts"] == 1, dump(doc)
    # The job it had finishes there, once.
    doc = cp.api.wait_job(first, timeout=60)
    assert doc["status"] == "completed" and doc["worker_id"] == f"it-{draining.name}", dump(doc)
    assert doc["attempts"] == 1 and accepted_count(workers.values(), first) == 1, dump(doc)
    assert draining.wait_exit(20) == 0, "the drained worker did not exit 0"


def test_scale_to_zero_worker_is_started_again(worker_factory, cp_factory, inputs, tmp_path):
    """A worker that stops itself when idle (auto-stop) and is started again
    by its platform when the next job needs it."""
    env = local_worker_env(tmp_path / "out", DISABLE_AUTO_SHUTDOWN="false", AUTO_SHUTDOWN_GRACE="0.5")
    worker = worker_factory(env=env, name="auto")
    cp = cp_factory([worker], env={"WORKER_STARTUP_TIMEOUT": "15"})
    first = cp.api.submit(job_body(inputs.clip_url("small.mp4"), "zero/first.mp4"))
    assert cp.api.wait_job(first, timeout=60)["status"] == "completed"
    assert worker.wait_exit(15) == 0, "the idle worker did not stop itself"

    second = cp.api.submit(job_body(inputs.clip_url("small.mp4"), "zero/second.mp4"))
    time.sleep(1.0)
    assert cp.api.job(second)["status"] == "queued"
    worker.start()  # the platform starts the machine again, same address
    doc = cp.api.wait_job(second, timeout=60)
    assert doc["status"] == "completed" and doc["attempts"] == 1, dump(doc)
    assert (tmp_path / "out" / "zero" / "second.mp4").stat().st_size > 0
