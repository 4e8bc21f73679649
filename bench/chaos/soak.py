#!/usr/bin/python3
"""Chaos soak: jobs keep their promise while processes die under them.

A control plane, 3 workers (S3 storage) and s3rver run short real jobs (a
1 s clip, a fast preset). While they run, a seeded schedule
  - SIGKILLs workers at random moments and restarts them after 0.5-3 s
    (same port, same WORK_DIR: what a supervisor does after a crash),
  - SIGKILLs the control plane twice and restarts it after 1-3 s (same port,
    same database), once in the middle of the submissions (4 client threads,
    each retrying with its Idempotency-Key, as a client that lost a
    response must) and once in the middle of the encoding,
  - stops s3rver for 10 s once: kills it and starts it again on the same
    port and data directory (connections refused: uploads fail after the
    worker's own retries and the jobs are retried), or with --s3-outage stop
    SIGSTOPs and SIGCONTs it (requests hang instead).
The chaos fires on progress (jobs submitted / jobs finished), not on the
clock, so the same seed gives the same schedule on a slow or a fast machine.

When every job is terminal (or --cap-seconds pass) it checks:
  - every submitted job exists exactly once at the control plane (no job
    created twice by a retried submission) and is completed;
  - the bucket holds exactly one object per job, at the job's key, and the
    job's output_url names it (no loss, nothing extra);
  - no job was completed by two workers unless the first one was SIGKILLed
    after its upload and before the control plane heard of it (the one window
    in which at-least-once must encode again); from the workers' logs;
  - no ffmpeg/ffprobe outlives its worker: the ones a killed worker leaves
    are followed until they end, and none may remain at the end;
  - no work directory is left under any WORK_DIR.
Then the same jobs' throughput against a run without chaos (--baseline-jobs,
measured first in the same invocation) and every figure go into the
"## Chaos soak" section of docs/RELIABILITY.md. Exit status 1 when an
invariant broke.

Usage: bench/chaos/soak.py [--jobs 300] [--seed N] [--baseline-jobs 60] [--bin-dir build/r-x/bin]
"""
import argparse
import collections
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chaos_common as cc  # noqa: E402
from chaos_common import bc  # noqa: E402

TITLE = "Chaos soak"
TERMINAL = ("completed", "failed", "cancelled")
MEDIA_PROCESSES = ("ffmpeg", "ffprobe")
# An ffmpeg or ffprobe whose worker was SIGKILLed must be gone within this (the kernel's parent-death signal
# takes milliseconds); one that runs on is an orphan: it burns CPU nobody accounts for and writes into a work
# directory the restarted worker swept and may be reusing for the same job.
# How long the kernel gets to deliver PR_SET_PDEATHSIG's SIGKILL to a killed worker's children.
KILL_SETTLE_SECONDS = 0.5


def log(message):
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- the control plane's view -----------------------------------------------------


def list_jobs(cp):
    """Every job document (all pages, newest first); None when the control plane does not answer."""
    jobs, cursor = [], None
    while True:
        url = f"{cp.url}/api/v1/jobs?limit=200" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        try:
            status, doc = bc.http_call("GET", url, timeout=10)
        except OSError:
            return None
        if status != 200 or not isinstance(doc, dict):
            return None
        jobs.extend(doc.get("jobs", []))
        cursor = doc.get("next_cursor")
        if not cursor:
            return jobs


def workers_status(cp):
    try:
        status, doc = bc.http_call("GET", f"{cp.url}/api/v1/workers/status", timeout=10)
    except OSError:
        return None
    if status != 200:
        return None
    return doc.get("workers", doc) if isinstance(doc, dict) else doc


class Submitter:
    """Submits jobs 0..n-1 from a few threads; each submission is retried with its Idempotency-Key
    until the control plane accepts it (a refused connection or a 503 while it restarts)."""

    def __init__(self, cp, bodies, key_prefix, threads=4, give_up_after=600):
        self.cp = cp
        self.bodies = bodies
        self.key_prefix = key_prefix
        self.job_ids = {}
        self.retries = 0
        self.errors = []  # (index, status, body) of refusals other than "try again"
        self.started = None
        self.finished = None
        self._lock = threading.Lock()
        self._give_up_after = give_up_after
        self._threads = [threading.Thread(target=self._run, args=(t, threads), daemon=True) for t in range(threads)]

    def start(self):
        self.started = time.monotonic()
        for t in self._threads:
            t.start()

    def done(self):
        return all(not t.is_alive() for t in self._threads)

    def submitted(self):
        with self._lock:
            return len(self.job_ids)

    def join(self):
        for t in self._threads:
            t.join()

    def _run(self, first, step):
        for i in range(first, len(self.bodies), step):
            deadline = time.monotonic() + self._give_up_after
            while True:
                try:
                    status, doc = bc.http_call("POST", f"{self.cp.url}/api/v1/jobs", self.bodies[i], timeout=10,
                                               headers={"Idempotency-Key": f"{self.key_prefix}-{i}"})
                except OSError as e:  # refused while it restarts; or the response was lost with it
                    status, doc = None, str(e)
                if status == 202:
                    with self._lock:
                        self.job_ids[i] = doc["job_id"]
                        if len(self.job_ids) == len(self.bodies):
                            self.finished = time.monotonic()
                    break
                if status not in (None, 503) or time.monotonic() > deadline:
                    with self._lock:
                        self.errors.append((i, status, doc))
                    break
                with self._lock:
                    self.retries += 1
                time.sleep(0.2)


# ---- the cluster ------------------------------------------------------------------


class Cluster:
    """s3rver (shared) + N workers with S3 storage + one control plane, in `root`."""

    def __init__(self, services, root, s3, bucket, media, workers, jobs_per_worker):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        env = cc.worker_env(s3, bucket)
        self.workers = [
            bc.start_worker(services, self.root, f"worker-{i + 1}", LOCAL_INPUT_DIR=str(media),
                            MAX_CONCURRENT_JOBS=jobs_per_worker, **env)
            for i in range(workers)
        ]
        for w in self.workers:
            w.work_dir = self.root / w.name / "work"
        self.cp = bc.start_controlplane(services, self.root, [w.address for w in self.workers],
                                        LOCAL_INPUT_DIR=str(media), LOG_LEVEL="info")

    def bodies(self, count, media_clip, preset, prefix):
        return [{"input_url": f"file://{media_clip}", "preset": preset,
                 "output": {"storage": "s3", "path": f"{prefix}/{i:04d}.mp4"}} for i in range(count)]


def wait_all_terminal(cp, submitter, count, cap_seconds, tick=None):
    """Polls the control plane until `count` jobs are terminal; calls tick(terminal, submitted) meanwhile.
    Returns (jobs, timed_out)."""
    deadline = time.monotonic() + cap_seconds
    jobs, last_poll = None, 0.0
    terminal = 0
    while True:
        now = time.monotonic()
        if now - last_poll >= 1.0:
            last_poll = now
            listed = list_jobs(cp)
            if listed is not None:
                jobs = listed
                terminal = sum(1 for j in jobs if j.get("status") in TERMINAL)
        busy = tick(terminal, submitter.submitted()) if tick else False
        if submitter.done() and jobs is not None and terminal >= count and len(jobs) >= count and not busy:
            return jobs, False
        if now > deadline:
            return jobs, True
        time.sleep(0.1)


# ---- chaos --------------------------------------------------------------------------


class Event:
    def __init__(self, kind, trigger, threshold, down, target=None):
        self.kind, self.trigger, self.threshold, self.down, self.target = kind, trigger, threshold, down, target
        self.fired_at = None  # seconds into the run
        self.progress = None  # (terminal, submitted) when it fired

    def describe(self):
        what = {"worker": f"SIGKILL worker-{(self.target or 0) + 1}", "controlplane": "SIGKILL control plane",
                "s3rver": "stop s3rver"}[self.kind]
        return f"{what} at {self.threshold} jobs {self.trigger}, back after {self.down:.1f} s"


def make_schedule(rng, jobs, workers, worker_kills, outage_seconds):
    events = [
        Event("controlplane", "submitted", int(jobs * rng.uniform(0.3, 0.7)), rng.uniform(1, 3)),
        Event("controlplane", "finished", int(jobs * rng.uniform(0.4, 0.6)), rng.uniform(1, 3)),
        Event("s3rver", "finished", int(jobs * rng.uniform(0.65, 0.8)), outage_seconds),
    ]
    for _ in range(worker_kills):
        events.append(Event("worker", "finished", int(jobs * rng.uniform(0.02, 0.95)), rng.uniform(0.5, 3),
                            target=rng.randrange(workers)))
    return events


class Chaos:
    """Fires the schedule's events as progress passes their thresholds and brings each victim back."""

    def __init__(self, cluster, s3, events, outage_mode):
        self.cluster = cluster
        self.s3 = s3
        self.events = events
        self.outage_mode = outage_mode
        self.t0 = time.monotonic()
        self.down = {}  # victim key -> (monotonic time to bring it back, event)
        self.orphans = {}  # pid -> dict(start, seen, worker, name)
        self.orphan_lifetimes = []  # seconds each followed orphan lived after its worker's death
        self.media_at_kill = 0  # ffmpeg/ffprobe of a worker running just before it was SIGKILLed
        self.log = []  # (seconds into the run, wall time, text)

    def note(self, text):
        self.log.append((time.monotonic() - self.t0, time.time(), text))
        log(text)

    def victim_key(self, ev):
        return f"worker-{ev.target}" if ev.kind == "worker" else ev.kind

    def tick(self, terminal, submitted):
        """One step; True while something is down or an event is still to fire."""
        now = time.monotonic()
        for key, (back_at, ev) in list(self.down.items()):
            if now >= back_at:
                self.bring_back(ev)
                del self.down[key]
        for ev in self.events:
            if ev.fired_at is not None:
                continue
            progress = terminal if ev.trigger == "finished" else submitted
            if progress < ev.threshold or self.victim_key(ev) in self.down:
                continue
            if ev.kind == "controlplane" and any(k == "controlplane" for k in self.down):
                continue
            self.fire(ev, terminal, submitted)
        self.follow_orphans()
        return bool(self.down) or any(ev.fired_at is None for ev in self.events)

    def fire(self, ev, terminal, submitted):
        ev.fired_at = time.monotonic() - self.t0
        ev.progress = (terminal, submitted)
        if ev.kind == "worker":
            worker = self.cluster.workers[ev.target]
            running = cc.find_processes(MEDIA_PROCESSES, [worker.work_dir])
            self.media_at_kill += len(running)
            worker.kill()
            # Its ffmpeg and ffprobe children are in their own process groups: without
            # PR_SET_PDEATHSIG they would outlive it. The kernel's kill is not instant:
            # what is still there KILL_SETTLE_SECONDS later is an orphan, followed until it ends.
            settle_until = time.monotonic() + KILL_SETTLE_SECONDS
            left = cc.find_processes(MEDIA_PROCESSES, [worker.work_dir])
            while left and time.monotonic() < settle_until:
                time.sleep(0.02)
                left = cc.find_processes(MEDIA_PROCESSES, [worker.work_dir])
            for pid, _, name, _ in left:
                self.orphans[pid] = {"start": cc.process_start_ticks(pid), "seen": time.monotonic(),
                                     "worker": worker.name, "name": name}
            self.note(f"SIGKILLed {worker.name} ({terminal} finished, {submitted} submitted) with {len(running)} "
                      f"ffmpeg/ffprobe running; "
                      f"{sum(1 for o in self.orphans.values() if o['worker'] == worker.name)} of them still running "
                      f"{KILL_SETTLE_SECONDS:g} s after the kill")
        elif ev.kind == "controlplane":
            self.cluster.cp.kill()
            self.note(f"SIGKILLed the control plane ({terminal} finished, {submitted} submitted)")
        else:
            if self.outage_mode == "stop":
                os.killpg(self.s3.proc.pid, signal.SIGSTOP)
                self.note(f"SIGSTOPped s3rver ({terminal} finished)")
            else:
                self.s3.stop()
                self.note(f"stopped s3rver ({terminal} finished)")
        self.down[self.victim_key(ev)] = (time.monotonic() + ev.down, ev)

    def bring_back(self, ev):
        if ev.kind == "worker":
            worker = self.cluster.workers[ev.target]
            worker.respawn()
            bc.wait_tcp(worker, worker.port, timeout=60)
            self.note(f"restarted {worker.name}")
        elif ev.kind == "controlplane":
            cp = self.cluster.cp
            cp.respawn()
            bc.wait_http(cp, "/health", timeout=60)
            self.note("restarted the control plane")
        else:
            if self.outage_mode == "stop":
                os.killpg(self.s3.proc.pid, signal.SIGCONT)
                self.note("SIGCONTed s3rver")
            else:
                self.s3.start()
                self.note("restarted s3rver")

    def follow_orphans(self):
        for pid, info in list(self.orphans.items()):
            if cc.process_start_ticks(pid) != info["start"]:
                self.orphan_lifetimes.append(time.monotonic() - info["seen"])
                del self.orphans[pid]

    def restore_all(self):
        """Brings back whatever is still down (when the run ends early)."""
        for key, (_, ev) in list(self.down.items()):
            try:
                self.bring_back(ev)
            except BaseException as e:  # noqa: BLE001 - keep restoring the others
                log(f"bringing back {key}: {e}")
            del self.down[key]


# ---- checks -------------------------------------------------------------------------


def worker_completions(cluster):
    """job_id -> [(wall time, worker name)] of every "job completed" line in the workers' logs."""
    out = collections.defaultdict(list)
    for w in cluster.workers:
        for rec in w.log_records():
            if rec.get("msg") == "job completed" and rec.get("job_id"):
                out[rec["job_id"]].append((bc.parse_rfc3339(rec["ts"]), w.name))
    for v in out.values():
        v.sort()
    return out


def s3_uploads(s3, bucket):
    """key -> times s3rver stored it (its log names every stored object)."""
    counts = collections.Counter()
    text = s3.log_path.read_text(errors="replace") if s3.log_path.exists() else ""
    for m in re.finditer(r'Stored object "([^"]+)" in bucket "%s"' % re.escape(bucket), text):
        counts[m.group(1)] += 1
    return counts


def settle(cluster, timeout=30):
    """Waits (up to `timeout`) until no job runs on any worker, no ffmpeg/ffprobe of the run is left and
    every WORK_DIR is empty; returns (media processes, leftover dirs, busy workers) as last seen."""
    deadline = time.monotonic() + timeout
    while True:
        procs = cc.find_processes(MEDIA_PROCESSES, [cluster.root])
        leftovers = {w.name: cc.dir_entries(w.work_dir) for w in cluster.workers}
        leftovers = {k: v for k, v in leftovers.items() if v}
        status = workers_status(cluster.cp) or []
        busy = [s for s in status if isinstance(s, dict) and s.get("current_jobs")]
        if (not procs and not leftovers and not busy) or time.monotonic() > deadline:
            return procs, leftovers, busy
        time.sleep(0.5)


def run_baseline(services, root, s3, media_clip, args):
    bucket = s3.create_bucket("baseline")
    cluster = Cluster(services, root, s3, bucket, media_clip.parent, args.workers, args.jobs_per_worker)
    bodies = cluster.bodies(args.baseline_jobs, media_clip, args.preset, "baseline")
    sub = Submitter(cluster.cp, bodies, "baseline")
    sub.start()
    jobs, timed_out = wait_all_terminal(cluster.cp, sub, args.baseline_jobs, args.cap_seconds)
    wall = time.monotonic() - sub.started
    completed = sum(1 for j in jobs or [] if j.get("status") == "completed")
    if timed_out or completed != args.baseline_jobs:
        raise SystemExit(f"the baseline run did not complete its {args.baseline_jobs} jobs: {completed} completed")
    for svc in [cluster.cp] + cluster.workers:
        svc.stop()
    return wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--baseline-jobs", type=int, default=60, help="jobs of the no-chaos run (0: skip it)")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--jobs-per-worker", type=int, default=2)
    ap.add_argument("--worker-kills", type=int, default=10)
    ap.add_argument("--s3-outage", choices=("stop", "restart"), default="restart",
                    help="kill s3rver and start it again on the same port and data (connections refused: "
                    "uploads fail and jobs are retried), or SIGSTOP/SIGCONT it (requests hang)")
    ap.add_argument("--s3-outage-seconds", type=float, default=10.0)
    ap.add_argument("--preset", default="480p_h264")
    ap.add_argument("--clip-seconds", type=float, default=1.0)
    ap.add_argument("--cap-seconds", type=int, default=3600, help="gives up waiting for the jobs after this")
    ap.add_argument("--bin-dir", default=os.environ.get("FLUX_BIN_DIR"), help="where flux-controlplane and "
                    "flux-worker are (default build/bin)")
    ap.add_argument("--out", default=str(cc.RELIABILITY))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    args = ap.parse_args()
    cc.use_bin_dir(args.bin_dir)
    bc.require_binaries("flux-controlplane", "flux-worker")

    rng = random.Random(args.seed)
    events = make_schedule(rng, args.jobs, args.workers, args.worker_kills, args.s3_outage_seconds)
    log("schedule (seed %d):\n  %s" % (args.seed, "\n  ".join(e.describe() for e in events)))

    tmp = Path(tempfile.mkdtemp(prefix="flux-chaos-"))
    failures = []
    s3 = None
    chaos = None
    try:
        clip = bc.make_clip(tmp / "media" / "clip.mp4", args.clip_seconds)
        s3 = cc.S3rver(tmp / "s3")
        s3.start()
        load_before = bc.load_average()

        baseline_wall = None
        if args.baseline_jobs > 0:
            with bc.Services() as services:
                log(f"baseline: {args.baseline_jobs} jobs without chaos")
                baseline_wall = run_baseline(services, tmp / "baseline", s3, clip, args)
                log(f"baseline: {baseline_wall:.1f} s")

        bucket = s3.create_bucket("chaos")
        with bc.Services() as services:
            cluster = Cluster(services, tmp / "chaos", s3, bucket, clip.parent, args.workers, args.jobs_per_worker)
            bodies = cluster.bodies(args.jobs, clip, args.preset, "chaos")
            sub = Submitter(cluster.cp, bodies, "chaos")
            chaos = Chaos(cluster, s3, events, args.s3_outage)
            log(f"chaos: {args.jobs} jobs")
            sub.start()
            jobs, timed_out = wait_all_terminal(cluster.cp, sub, args.jobs, args.cap_seconds, chaos.tick)
            wall = time.monotonic() - sub.started
            chaos.restore_all()
            log(f"chaos: every job terminal after {wall:.1f} s" if not timed_out else
                f"chaos: gave up after {wall:.1f} s")
            sub.join()
            jobs = list_jobs(cluster.cp) or jobs or []
            procs, leftovers, busy = settle(cluster)
            chaos.follow_orphans()
            orphans_left = list(chaos.orphans.items())
            load_after = bc.load_average()
        # Stopped: the logs are complete.
        completions = worker_completions(cluster)
        uploads = s3_uploads(s3, bucket)
        objects = s3.list_objects(bucket)

        # ---- invariants ----
        if timed_out:
            failures.append(f"not every job was terminal after {args.cap_seconds} s")
        if sub.errors:
            failures.append(f"{len(sub.errors)} submissions refused: {sub.errors[:3]}")
        by_id = {j["job_id"]: j for j in jobs}
        ours = set(sub.job_ids.values())
        extra_jobs = sorted(set(by_id) - ours)
        missing_jobs = sorted(ours - set(by_id))
        if len(ours) != len(sub.job_ids):
            failures.append("two submissions were answered with the same job id")
        if extra_jobs:
            failures.append(f"{len(extra_jobs)} jobs exist that no submission was answered with (a retried "
                            f"submission created a second job?): {extra_jobs[:5]}")
        if missing_jobs:
            failures.append(f"{len(missing_jobs)} accepted jobs are gone from the control plane: {missing_jobs[:5]}")
        counts = collections.Counter(j.get("status") for j in jobs)
        not_completed = [(j["job_id"], j.get("status"), j.get("error_code"), j.get("error")) for j in jobs
                         if j.get("status") != "completed"]
        if not_completed:
            failures.append(f"{len(not_completed)} jobs did not complete: {not_completed[:5]}")
        expected_keys = {f"chaos/{i:04d}.mp4": i for i in range(args.jobs)}
        missing_objects = sorted(set(expected_keys) - set(objects))
        extra_objects = sorted(set(objects) - set(expected_keys))
        empty_objects = sorted(k for k, size in objects.items() if size == 0)
        if missing_objects:
            failures.append(f"{len(missing_objects)} outputs missing from the bucket: {missing_objects[:5]}")
        if extra_objects:
            failures.append(f"{len(extra_objects)} unexpected objects in the bucket: {extra_objects[:5]}")
        if empty_objects:
            failures.append(f"{len(empty_objects)} empty objects: {empty_objects[:5]}")
        wrong_url = []
        for i, job_id in sub.job_ids.items():
            doc = by_id.get(job_id, {})
            if doc.get("status") == "completed" and not str(doc.get("output_url", "")).endswith(f"/chaos/{i:04d}.mp4"):
                wrong_url.append((job_id, doc.get("output_url")))
        if wrong_url:
            failures.append(f"{len(wrong_url)} completed jobs name another output: {wrong_url[:3]}")

        # Two workers completing one job is allowed only when the first died with the news.
        worker_kills = [(wall_t, text) for _, wall_t, text in chaos.log if text.startswith("SIGKILLed worker-")]
        explained, unexplained = [], []
        for job_id, done in completions.items():
            if len(done) < 2:
                continue
            for (t1, w1), (t2, _) in zip(done, done[1:]):
                killed = any(f"SIGKILLed {w1} " in text and t1 - 0.5 <= kt <= t2 for kt, text in worker_kills)
                (explained if killed else unexplained).append((job_id, w1))
        if unexplained:
            failures.append(f"{len(unexplained)} jobs completed again although the worker that completed them "
                            f"first was not killed: {unexplained[:5]}")
        reuploaded = {k: n for k, n in uploads.items() if n > 1}
        attempts = collections.Counter(int(j.get("attempts", 0)) for j in jobs)

        lifetimes = sorted(chaos.orphan_lifetimes)
        late = lifetimes  # with PR_SET_PDEATHSIG nothing may outlive its worker by KILL_SETTLE_SECONDS
        if late:
            failures.append(f"{len(late)} of the {len(lifetimes)} ffmpeg/ffprobe processes running when their worker "
                            f"was SIGKILLed outlived it by more than {KILL_SETTLE_SECONDS:g} s (up to "
                            f"{lifetimes[-1]:.1f} s): orphans, reparented to init")
        if orphans_left or procs:
            failures.append(f"ffmpeg/ffprobe processes left: {[p[:3] for p in procs][:5]}")
        if leftovers:
            failures.append(f"work directories left: {leftovers}")
        if busy:
            failures.append(f"workers still busy after every job ended: {busy}")

        # ---- report ----
        kills_worker = sum(1 for e in events if e.kind == "worker" and e.fired_at is not None)
        kills_cp = sum(1 for e in events if e.kind == "controlplane" and e.fired_at is not None)
        outages = sum(1 for e in events if e.kind == "s3rver" and e.fired_at is not None)
        throughput = args.jobs / wall
        base_tp = args.baseline_jobs / baseline_wall if baseline_wall else None
        ratio = f"**{throughput / base_tp:.2f}×** the no-chaos rate ({base_tp:.2f} jobs/s over " \
                f"{args.baseline_jobs} jobs, same run)" if base_tp else "no baseline run"
        verdict = "every invariant held" if not failures else f"{len(failures)} invariant(s) BROKEN"
        outage_kind = "SIGSTOPped: requests hang" if args.s3_outage == "stop" else "killed: connections refused"

        section = [
            f"**{args.jobs} jobs, {kills_worker} worker SIGKILLs, {kills_cp} control-plane SIGKILLs, {outages} s3rver "
            f"outage of {args.s3_outage_seconds:g} s ({outage_kind}): {verdict}.** Wall time {wall:.0f} s "
            f"({throughput:.2f} jobs/s): {ratio}.",
            "",
            "| check | result |",
            "|---|---|",
            "| jobs by status at the control plane | "
            + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())) + " |",
            f"| jobs at the control plane vs. accepted submissions | {len(jobs)} vs. {len(ours)} "
            f"({len(extra_jobs)} extra, {len(missing_jobs)} lost); {sub.retries} submission retries with the same "
            "Idempotency-Key |",
            f"| objects in the bucket vs. jobs | {len(objects)} vs. {args.jobs} ({len(missing_objects)} missing, "
            f"{len(extra_objects)} unexpected, {len(empty_objects)} empty); output_url of each completed job "
            f"names its own key: {'yes' if not wrong_url else 'NO'} |",
            f"| jobs completed by two workers | {len(explained) + len(unexplained)} ({len(explained)} after the first "
            f"worker was SIGKILLed before reporting it, {len(unexplained)} otherwise); keys uploaded more than once: "
            f"{len(reuploaded)} |",
            "| attempts per job | " + ", ".join(f"{a}: {n}" for a, n in sorted(attempts.items())) + " |",
            f"| ffmpeg/ffprobe running just before their worker was SIGKILLed | {chaos.media_at_kill} |",
            f"| ... of which still running {KILL_SETTLE_SECONDS:g} s after the kill (orphans, followed until they end) | "
            f"{len(lifetimes)}; "
            + (f"they outlived it by median {bc.percentile(lifetimes, 50):.1f} s, max {lifetimes[-1]:.1f} s "
               "(none is allowed)" if lifetimes else "none")
            + f"; left at the end: {len(procs)} |",
            f"| work directories left under the WORK_DIRs | {sum(len(v) for v in leftovers.values())} |",
            "",
            "Chaos as it happened (seconds into the run: event):",
            "",
            *[f"- {t:.1f} s: {text}" for t, _, text in chaos.log],
            "",
        ]
        if failures:
            section += ["Broken invariants:", "", *[f"- {f}" for f in failures], ""]
        section.append(
            f"Command: `bench/chaos/soak.py --jobs {args.jobs} --seed {args.seed} --baseline-jobs "
            f"{args.baseline_jobs} --worker-kills {args.worker_kills} --s3-outage {args.s3_outage} "
            f"--s3-outage-seconds {args.s3_outage_seconds:g}` (release builds). {args.workers} workers × {args.jobs_per_worker} jobs, S3 storage "
            f"on s3rver, input a {args.clip_seconds:g} s 640x360 H.264+AAC clip (`file://`), preset `{args.preset}`, "
            f"control plane defaults (MAX_ATTEMPTS 3, WORKER_STARTUP_TIMEOUT 60 s). Chaos fires on progress, not on "
            f"the clock, so a seed gives the same schedule on any machine. Load average 1 min {load_before:.1f} "
            f"before, {load_after:.1f} after (2 cores shared with other work).")
        cc.write_reliability_section(Path(args.out), TITLE, "\n".join(section))
        print("\n".join(section))
        if failures:
            print("\nBROKEN:\n" + "\n".join(failures), file=sys.stderr)
            return 1
        return 0
    finally:
        if chaos is not None:
            chaos.restore_all()
        if s3 is not None:
            try:
                if s3.proc is not None:
                    os.killpg(s3.proc.pid, signal.SIGCONT)
            except OSError:
                pass
            s3.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
