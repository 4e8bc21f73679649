"""Failures (SPEC §4): a worker killed mid-job, a worker down (or still
starting) at dispatch, JOB_TIMEOUT, cancel of a queued and a running job."""

import signal
import time

from conftest import local_worker_env
from cpharness.api import job_body
from cpharness.checks import accepted_count, assert_error, dump, epoch, wait_until
from cpharness.sse import open_stream
from harness.ports import free_port
from harness.worker import WorkerProcess


def long_job(cp, inputs, path: str, preset: str = "1080p_h264") -> str:
    """About 30 s of encoding at 1080p: still running when the test acts."""
    return cp.api.submit(job_body(inputs.clip_url("small_long.mp4"), path, preset=preset))


def test_worker_killed_mid_job_completes_on_the_other(worker_factory, cp_factory, inputs, tmp_path):
    workers = {name: worker_factory(env=local_worker_env(tmp_path / name), name=name)
               for name in ("wa", "wb")}
    cp = cp_factory(list(workers.values()))
    job_id = long_job(cp, inputs, "kill/out.mp4", preset="480p_h264")
    doc = cp.api.wait_job(job_id, predicate=lambda d: d.get("phase") == "encoding",
                          timeout=30, what="encoding")
    victim_name = doc["worker_id"].removeprefix("it-")
    victim = workers[victim_name]
    other = workers["wb" if victim_name == "wa" else "wa"]
    victim.send_signal(signal.SIGKILL)
    victim.wait_exit(10)

    final = cp.api.wait_job(job_id, timeout=120)
    assert final["status"] == "completed", dump(final)
    assert final["attempts"] == 2, dump(final)
    assert final["worker_id"] == f"it-{other.name}", dump(final)
    assert (tmp_path / other.name / "kill" / "out.mp4").stat().st_size > 0
    assert accepted_count([other], job_id) == 1
    logs = [r for r in cp.log_records() if isinstance(r, dict) and r.get("job_id") == job_id]
    assert any(r.get("msg") == "job requeued" for r in logs), logs


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


def test_job_timeout(worker_factory, cp_factory, inputs, tmp_path):
    worker = worker_factory(env=local_worker_env(tmp_path / "out"), name="w")
    cp = cp_factory([worker], env={"JOB_TIMEOUT": "2"})
    job_id = long_job(cp, inputs, "timeout/out.mp4")
    doc = cp.api.wait_job(job_id, timeout=30)
    assert doc["status"] == "failed" and doc["error_code"] == "timeout", dump(doc)
    assert doc["attempts"] == 1, f"a timed-out job is not retried:\n{dump(doc)}"
    took = epoch(doc["finished_at"]) - epoch(doc["started_at"])
    assert 1.5 <= took < 15, f"failed {took:.1f}s after it started, JOB_TIMEOUT=2:\n{dump(doc)}"
    # The worker really stopped it.
    left = worker.wait_no_ffmpeg(timeout=10)
    assert not left, f"ffmpeg still running after the timeout: {left}"
    wait_until(lambda: worker.status().current_jobs == 0, 10, "the worker idle again")
    assert not (tmp_path / "out" / "timeout" / "out.mp4").exists()


def test_cancel_queued_and_running(worker_factory, cp_factory, inputs, tmp_path):
    worker = worker_factory(env=local_worker_env(tmp_path / "out", MAX_CONCURRENT_JOBS=1), name="w")
    cp = cp_factory([worker])
    running = long_job(cp, inputs, "cancel/running.mp4")
    cp.api.wait_job(running, predicate=lambda d: d.get("phase") == "encoding", timeout=30,
                    what="encoding")
    queued = cp.api.submit(job_body(inputs.clip_url("small.mp4"), "cancel/queued.mp4"))
    assert cp.api.job(queued)["status"] == "queued"

    # Queued: cancelled at once, never reaches a worker.
    response = cp.api.cancel(queued)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["job_id"] == queued and doc["status"] == "cancelled", dump(doc)
    assert doc["error_code"] == "cancelled" and doc["finished_at"], dump(doc)
    again = cp.api.cancel(queued)
    assert again.status_code == 200 and again.json()["status"] == "cancelled", again.text

    # Running: the cancel reaches the worker, which stops ffmpeg; watchers
    # see the cancellation and their stream ends.
    stream = open_stream(cp, running)
    assert stream.wait_head() == 200
    response = cp.api.cancel(running)
    assert response.status_code == 200, response.text
    assert response.json()["job_id"] == running
    doc = cp.api.wait_job(running, timeout=20)
    assert doc["status"] == "cancelled" and doc["error_code"] == "cancelled", dump(doc)
    assert doc["output_url"] is None, dump(doc)
    again = cp.api.cancel(running)
    assert again.status_code == 200 and again.json()["status"] == "cancelled", again.text
    assert stream.wait_closed(10), "the stream of a cancelled job stayed open"
    assert stream.json_events()[-1]["status"] == "cancelled", stream.events[-3:]
    left = worker.wait_no_ffmpeg(timeout=10)
    assert not left, f"ffmpeg still running after cancel: {left}"
    assert not (tmp_path / "out" / "cancel" / "running.mp4").exists()
    assert accepted_count([worker], queued) == 0, "the cancelled queued job reached the worker"

    # Finished: 409.
    done = cp.api.submit(job_body(inputs.clip_url("small.mp4"), "cancel/done.mp4"))
    assert cp.api.wait_job(done, timeout=60)["status"] == "completed"
    assert_error(cp.api.cancel(done), 409, "job_finished")
    assert cp.api.job(done)["status"] == "completed"


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
