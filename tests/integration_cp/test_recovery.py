"""The control plane killed (SPEC §4): SIGKILL with jobs queued and running,
and SIGKILL right after a burst of acknowledged submissions. Restarted on the
same DATABASE_PATH, it loses nothing and runs nothing twice: running jobs are
re-attached on their workers (one "job accepted" per job in the worker logs).
(A graceful stop, and a worker unreachable after the restart:
test_reattach.py.)"""

import threading
import time

from conftest import local_worker_env
from cpharness.api import job_body
from cpharness.checks import accepted_count, dump, worker_log_lines
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
