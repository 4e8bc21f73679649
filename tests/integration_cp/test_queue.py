"""The queue (SPEC §4): more jobs than capacity all complete without a worker
ever going over MAX_CONCURRENT_JOBS, priority order, QUEUE_LIMIT and
QUEUE_LIMIT=0."""

import contextlib
import threading
import time

from conftest import local_worker_env
from cpharness.api import job_body
from cpharness.checks import accepted_count, assert_error, dump, epoch


class StatusSampler:
    """Polls the workers' GetStatus in the background and keeps the highest
    current_jobs / active_job_ids each one ever reported."""

    def __init__(self, workers, api=None, interval: float = 0.05):
        self.workers = workers
        self.api = api
        self.peak = {w.name: 0 for w in workers}
        self.seen_jobs = {w.name: set() for w in workers}
        self.samples = 0
        # The control plane's view (GET /api/v1/workers/status), by address.
        self.api_peak = {f"127.0.0.1:{w.grpc_port}": 0 for w in workers}
        self.api_jobs = {f"127.0.0.1:{w.grpc_port}": set() for w in workers}
        self.api_problems = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval):
        while not self._stop.is_set():
            for worker in self.workers:
                try:
                    status = worker.status(timeout=2)
                except Exception:  # noqa: BLE001 - a missed sample is not a finding
                    continue
                active = list(status.active_job_ids)
                self.peak[worker.name] = max(self.peak[worker.name], status.current_jobs, len(active))
                self.seen_jobs[worker.name].update(active)
                self.samples += 1
            if self.api is not None:
                try:
                    listed = self.api.workers()
                except Exception as error:  # noqa: BLE001
                    self.api_problems.append(repr(error))
                    listed = []
                for w in listed:
                    if w["current_jobs"] != len(w["active_job_ids"]) or w["max_jobs"] != 1:
                        self.api_problems.append(w)
                    self.api_peak[w["address"]] = max(self.api_peak[w["address"]], w["current_jobs"])
                    self.api_jobs[w["address"]].update(w["active_job_ids"])
            time.sleep(interval)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def busy_job(cp, worker, inputs, name: str):
    """A job that holds its worker's slot for the block: its ffmpeg is paused
    meanwhile (it has only to be running, not to get anywhere), and goes on
    when the block ends, for the test to cancel it. Yields the job id."""
    job_id = cp.api.submit(job_body(inputs.clip_url("small_long.mp4"), f"q/{name}.mp4"))
    cp.api.wait_job(job_id, predicate=lambda d: d.get("phase") == "encoding", timeout=30,
                    what="encoding")
    with worker.ffmpeg_paused():
        yield job_id


def test_more_jobs_than_capacity_all_complete(worker_factory, cp_factory, inputs, tmp_path):
    workers = [worker_factory(env=local_worker_env(tmp_path / f"out{n}", MAX_CONCURRENT_JOBS=1),
                              name=f"w{n}") for n in (1, 2)]
    cp = cp_factory(workers)
    sampler = StatusSampler(workers, api=cp.api)
    try:
        ids = [cp.api.submit(job_body(inputs.clip_url("small.mp4"), f"cap/{n}.mp4"))
               for n in range(5)]
        docs = [cp.api.wait_job(job_id, timeout=120) for job_id in ids]
    finally:
        sampler.stop()
    assert all(d["status"] == "completed" for d in docs), dump(docs)
    assert all(d["attempts"] == 1 for d in docs), dump(docs)
    assert sampler.samples > 10, "the GetStatus sampler barely ran"
    assert sampler.peak == {"w1": 1, "w2": 1}, (
        f"a worker reported more than MAX_CONCURRENT_JOBS=1 at once: {sampler.peak}")
    assert not sampler.api_problems, sampler.api_problems[:5]
    assert set(sampler.api_peak.values()) == {1}, (
        f"/api/v1/workers/status never showed each worker busy, or more than 1 job: {sampler.api_peak}")
    assert set().union(*sampler.api_jobs.values()) <= set(ids), sampler.api_jobs
    used = {d["worker_id"] for d in docs}
    assert used == {"it-w1", "it-w2"}, f"both workers should have been used: {used}"
    for job_id in ids:
        assert accepted_count(workers, job_id) == 1, f"{job_id} was started {accepted_count(workers, job_id)} times"
    # Each job's output is where its worker wrote it.
    for doc in docs:
        assert doc["output_url"].startswith("file://"), dump(doc)


def test_priority_order(worker_factory, cp_factory, inputs, tmp_path):
    worker = worker_factory(env=local_worker_env(tmp_path / "out", MAX_CONCURRENT_JOBS=1), name="w")
    cp = cp_factory([worker])
    with busy_job(cp, worker, inputs, "blocker") as blocker:
        submitted = []
        for name, priority in (("low", -5), ("normal_a", 0), ("high", 5), ("normal_b", 0),
                               ("top", 10)):
            body = job_body(inputs.clip_url("small.mp4"), f"prio/{name}.mp4", priority=priority)
            submitted.append((name, cp.api.submit(body)))
        for _, job_id in submitted:
            assert cp.api.job(job_id)["status"] == "queued"
        queued = cp.api.list_jobs(status="queued")["jobs"]
        assert {j["job_id"] for j in queued} == {job_id for _, job_id in submitted}, dump(queued)

    response = cp.api.cancel(blocker)
    assert response.status_code == 200, response.text
    docs = {name: cp.api.wait_job(job_id, timeout=120) for name, job_id in submitted}
    assert all(d["status"] == "completed" for d in docs.values()), dump(docs)
    order = sorted(docs, key=lambda name: epoch(docs[name]["started_at"]))
    assert order == ["top", "high", "normal_a", "normal_b", "low"], (
        f"start order {order}; want higher priority first, FIFO within one:\n"
        + "\n".join(f"{n}: {docs[n]['started_at']}" for n in order))


def test_queue_limit(worker_factory, cp_factory, inputs, tmp_path):
    worker = worker_factory(env=local_worker_env(tmp_path / "out", MAX_CONCURRENT_JOBS=1), name="w")
    cp = cp_factory([worker], env={"QUEUE_LIMIT": "1"})
    with busy_job(cp, worker, inputs, "blocker") as blocker:
        waiting = cp.api.submit(job_body(inputs.clip_url("small.mp4"), "ql/waiting.mp4"))
        assert cp.api.job(waiting)["status"] == "queued"
        refused = cp.api.post("/api/v1/jobs",
                              json=job_body(inputs.clip_url("small.mp4"), "ql/extra.mp4"))
        assert_error(refused, 503, "queue_full")
        assert int(refused.headers["Retry-After"]) >= 1, refused.headers
        assert set(cp.api.all_job_ids()) == {blocker, waiting}, "the refused job was stored"

    assert cp.api.cancel(blocker).status_code == 200
    assert cp.api.wait_job(waiting, timeout=60)["status"] == "completed"
    # Room again: accepted.
    again = cp.api.submit(job_body(inputs.clip_url("small.mp4"), "ql/again.mp4"))
    assert cp.api.wait_job(again, timeout=60)["status"] == "completed"


def test_queue_limit_zero_refuses_when_no_worker_is_free(worker_factory, cp_factory, inputs,
                                                         tmp_path):
    worker = worker_factory(env=local_worker_env(tmp_path / "out", MAX_CONCURRENT_JOBS=1), name="w")
    cp = cp_factory([worker], env={"QUEUE_LIMIT": "0"})
    # A free worker: accepted at once and run.
    first = cp.api.submit(job_body(inputs.clip_url("small.mp4"), "q0/first.mp4"))
    assert cp.api.wait_job(first, timeout=60)["status"] == "completed"

    with busy_job(cp, worker, inputs, "blocker") as blocker:
        refused = cp.api.post("/api/v1/jobs",
                              json=job_body(inputs.clip_url("small.mp4"), "q0/extra.mp4"))
        assert_error(refused, 503, "no_worker_available")
        assert int(refused.headers["Retry-After"]) >= 1, refused.headers
        assert set(cp.api.all_job_ids()) == {first, blocker}, "the refused job was stored"
    assert cp.api.cancel(blocker).status_code == 200
    assert cp.api.wait_job(blocker, timeout=30)["status"] == "cancelled"
