"""The control plane going away (SPEC §4): SIGKILL with jobs queued and
running, and a graceful SIGTERM during a running job. Restarted on the same
DATABASE_PATH, it loses nothing and runs nothing twice: running jobs are
re-attached on their workers (one "job accepted" per job in the worker logs)."""

import signal
import threading
import time

from conftest import local_worker_env
from cpharness.api import job_body
from cpharness.checks import accepted_count, dump, worker_log_lines
from cpharness.sse import open_stream
from harness.ports import free_port


def test_sigkill_with_jobs_queued_and_running(worker_factory, cp_factory, inputs, tmp_path):
    workers = [worker_factory(env=local_worker_env(tmp_path / name, MAX_CONCURRENT_JOBS=1),
                              name=name) for name in ("wa", "wb")]
    cp = cp_factory(workers)
    running = [cp.api.submit(job_body(inputs.clip_url("small_long.mp4"), f"r/run{n}.mp4"))
               for n in range(2)]
    for job_id in running:
        cp.api.wait_job(job_id, predicate=lambda d: d.get("phase") == "encoding", timeout=30,
                        what="encoding")
    queued = [cp.api.submit(job_body(inputs.clip_url("small.mp4"), f"r/queued{n}.mp4"))
              for n in range(3)]
    assert all(cp.api.job(j)["status"] == "queued" for j in queued)
    before = {j: cp.api.job(j) for j in running}

    cp.kill()
    time.sleep(0.5)
    # The workers carry on without it.
    busy = {w.name: list(w.status().active_job_ids) for w in workers}
    assert sorted(sum(busy.values(), [])) == sorted(running), busy
    cp.start()

    docs = {j: cp.api.wait_job(j, timeout=120) for j in running + queued}
    for job_id, doc in docs.items():
        assert doc["status"] == "completed", dump(doc)
        assert doc["attempts"] == 1, f"re-run instead of re-attached or resumed:\n{dump(doc)}"
        assert accepted_count(workers, job_id) == 1, (
            f"{job_id} accepted {accepted_count(workers, job_id)} times by the workers")
    for job_id in running:
        assert docs[job_id]["worker_id"] == before[job_id]["worker_id"], dump(docs[job_id])
        watched = sum(len(worker_log_lines(w, "progress stream attached", job_id)) for w in workers)
        assert watched >= 1, f"{job_id} was not re-attached with WatchJob"
    assert sorted(cp.api.all_job_ids()) == sorted(running + queued)
    reattached = [r for r in cp.log_records() if isinstance(r, dict)
                  and r.get("msg") == "dispatcher started"]
    assert reattached and reattached[0].get("reattaching") == 2, reattached
    # Each output exists exactly once, where its job said.
    for n in range(2):
        owner = docs[running[n]]["worker_id"].removeprefix("it-")
        assert (tmp_path / owner / "r" / f"run{n}.mp4").stat().st_size > 0


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


def test_every_acknowledged_submission_survives_sigkill(cp_factory):
    """202 means durable: submissions from several clients at once (grouped
    into shared commits), then SIGKILL right after the last 202."""
    # Nobody listens at the worker address: every job stays queued.
    cp = cp_factory([f"127.0.0.1:{free_port()}"], env={"WORKER_STARTUP_TIMEOUT": "1"})
    body = job_body("http://127.0.0.1:9/in.mp4", "burst/out.mp4")
    accepted, problems = [], []
    lock = threading.Lock()

    def client(n):
        for i in range(10):
            headers = {"Idempotency-Key": f"burst-{n}-{i}"}
            response = cp.api.post("/api/v1/jobs", json=body, headers=headers)
            with lock:
                if response.status_code == 202:
                    accepted.append((headers["Idempotency-Key"], response.json()["job_id"]))
                else:
                    problems.append(response.text)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cp.kill()
    assert not problems, problems[:3]
    assert len(accepted) == 80

    cp.start()
    ids = cp.api.all_job_ids()
    assert sorted(ids) == sorted(job_id for _, job_id in accepted), (
        f"{len(set(j for _, j in accepted) - set(ids))} acknowledged jobs lost after SIGKILL")
    assert all(j["status"] == "queued" for j in cp.api.list_jobs(limit=200)["jobs"])
    # Idempotency keys are durable too: a client retrying after the crash
    # gets its job, not a duplicate.
    for key, job_id in accepted[:5]:
        again = cp.api.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": key})
        assert again.status_code == 202 and again.json()["job_id"] == job_id, again.text
    assert len(cp.api.all_job_ids()) == 80


def test_worker_unreachable_past_reattach_timeout_still_completes(worker_factory, cp_factory,
                                                                  inputs, tmp_path):
    """The restarted control plane cannot reach the job's worker (frozen, not
    dead) for longer than its re-attach timeout, so it requeues the job; the
    worker then answers again. Whatever the control plane does with the copy
    it gave up on, the job must end completed: nobody cancelled it."""
    worker = worker_factory(env=local_worker_env(tmp_path / "out", MAX_CONCURRENT_JOBS=1),
                            name="w")
    cp = cp_factory([worker])
    # 1080p: ffmpeg (not frozen with its worker) is still encoding when the
    # worker answers again.
    job_id = cp.api.submit(job_body(inputs.clip_url("small_long.mp4"), "frozen/out.mp4",
                                    preset="1080p_h264"))
    cp.api.wait_job(job_id, predicate=lambda d: d.get("phase") == "encoding", timeout=30,
                    what="encoding")
    cp.kill()
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
