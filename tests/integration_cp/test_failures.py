"""Failures (SPEC §4): a worker killed mid-job, JOB_TIMEOUT, cancel of a
queued and a running job. (Workers down, starting, draining or stopped when
idle: test_worker_availability.py.)"""

import signal

from conftest import local_worker_env
from cpharness.api import job_body
from cpharness.checks import accepted_count, assert_error, dump, epoch, wait_until
from cpharness.sse import open_stream


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
