"""Re-attaching after a control plane restart (SPEC §4): a graceful SIGTERM
during a running job leaves it running on its worker and the restarted
control plane follows it to the end; a worker it cannot reach for longer
than the re-attach timeout still ends the job completed."""

import signal
import time

from conftest import local_worker_env
from cpharness.api import job_body
from cpharness.checks import accepted_count, dump, worker_log_lines
from cpharness.sse import open_stream


def test_sigterm_leaves_the_job_running_and_restart_reattaches(worker_factory, cp_factory, inputs,
                                                               tmp_path):
    worker = worker_factory(env=local_worker_env(tmp_path / "out"), name="w")
    cp = cp_factory([worker])
    job_id = cp.api.submit(job_body(inputs.clip_url("small_long.mp4"), "term/out.mp4"))
    cp.api.wait_job(job_id, predicate=lambda d: d.get("phase") == "encoding", timeout=30,
                    what="encoding")
    stream = open_stream(cp, job_id)
    assert stream.wait_head() == 200
    stream.wait_for(lambda events: events, timeout=5, what="a first event")

    started = time.monotonic()
    code = cp.terminate(timeout=15)
    took = time.monotonic() - started
    assert code == 0, f"exit code {code} after SIGTERM\n{cp.output_tail()}"
    assert took < 10, f"SIGTERM took {took:.1f}s"
    assert stream.wait_closed(5), "the SSE stream stayed open after the control plane stopped"
    assert not any(e.json()["status"] in ("failed", "cancelled") for e in stream.events), stream.events

    # The worker did not notice: the job is still running there.
    status = worker.status()
    assert list(status.active_job_ids) == [job_id], status
    assert worker.ffmpeg_processes(), "ffmpeg stopped with the control plane"

    cp.start()
    # A client reconnecting to the restarted control plane learns where the
    # job is, then follows it to the end.
    resumed = open_stream(cp, job_id)
    assert resumed.wait_head() == 200
    first = resumed.wait_for(lambda events: events, timeout=10, what="a first event")[0].json()
    assert first["status"] in ("processing", "uploading", "completed"), first
    assert resumed.wait_closed(90)
    assert resumed.json_events()[-1]["status"] == "completed", resumed.events[-3:]
    doc = cp.api.wait_job(job_id, timeout=90)
    assert doc["status"] == "completed" and doc["attempts"] == 1, dump(doc)
    assert accepted_count([worker], job_id) == 1
    assert worker_log_lines(worker, "progress stream attached", job_id), "not re-attached with WatchJob"
    assert (tmp_path / "out" / "term" / "out.mp4").stat().st_size > 0


def test_worker_unreachable_past_reattach_timeout_still_completes(worker_factory, cp_factory,
                                                                  inputs, tmp_path):
    """The restarted control plane cannot reach the job's worker (frozen, not
    dead) for longer than its re-attach timeout, so it requeues the job; the
    worker then answers again. Whatever the control plane does with the copy
    it gave up on, the job must end completed: nobody cancelled it."""
    worker = worker_factory(env=local_worker_env(tmp_path / "out", MAX_CONCURRENT_JOBS=1),
                            name="w")
    cp = cp_factory([worker])
    job_id = cp.api.submit(job_body(inputs.clip_url("small_long.mp4"), "frozen/out.mp4"))
    cp.api.wait_job(job_id, predicate=lambda d: d.get("phase") == "encoding", timeout=30,
                    what="encoding")
    cp.kill()
    # The worker's ffmpeg is frozen with it, so it is still encoding when the
    # worker answers again however long the re-attach timeout is, without
    # keeping a core busy meanwhile.
    with worker.ffmpeg_paused():
        worker.send_signal(signal.SIGSTOP)
        try:
            cp.start()
            cp.api.wait_job(job_id, statuses=("queued",), timeout=60)  # given up on the worker
        finally:
            worker.send_signal(signal.SIGCONT)
    doc = cp.api.wait_job(job_id, timeout=120)
    assert doc["status"] == "completed", (
        f"a job nobody cancelled ended {doc['status']}:\n{dump(doc)}")
    assert (tmp_path / "out" / "frozen" / "out.mp4").stat().st_size > 0
