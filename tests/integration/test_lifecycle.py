"""Job life cycle over gRPC: cancel, capacity, duplicates, request validation,
detached jobs and WatchJob, per-job timeouts, GetStatus."""

import time

import grpc
import pytest

from harness.checks import assert_nothing_uploaded, assert_worker_clean
from harness.jobs import (BUILTIN_PRESETS, describe, job_request, new_job_id, run_job, status_name,
                          submit, submit_detached, watch)
from harness.s3server import worker_env


def _env(s3, bucket, **extra):
    env = worker_env(s3, bucket)
    env["ALLOW_PRIVATE_INPUTS"] = "true"
    env.update(extra)
    return env


def _wait_status(worker, predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        status = worker.status()
        if predicate(status):
            return status
        if time.monotonic() >= deadline:
            raise AssertionError(f"GetStatus never showed {what} within {timeout}s; last: {status}")
        time.sleep(0.1)


def test_cancel_mid_encode(worker_factory, s3, bucket, inputs):
    worker = worker_factory(env=_env(s3, bucket), name="cancel")
    job_id = new_job_id("cancel")
    stream = submit(worker, job_request(job_id, inputs.clip_url("long.mp4"), "1080p_h264",
                                        "cancel/out.mp4"))
    stream.wait_phase("ENCODING", timeout=60)
    running = worker.wait_ffmpeg(timeout=10)
    assert running, "no ffmpeg found in WORK_DIR while ENCODING (the /proc check would be blind)"

    response = worker.cancel(job_id)
    assert response.success, f"CancelJob({job_id}) refused: {response.message!r}"
    started = time.monotonic()
    final = stream.expect_terminal("CANCELLED", "cancelled", timeout=30)
    assert time.monotonic() - started < 12, "CANCELLED took more than SIGTERM + 5 s + slack"
    assert final.output_url == "", f"cancelled job has output_url {final.output_url!r}"
    assert_worker_clean(worker, "after cancel")
    assert_nothing_uploaded(s3, bucket, prefix="cancel/", events=stream.events)
    status = worker.status()
    assert status.current_jobs == 0 and list(status.active_job_ids) == [], f"status after cancel: {status}"

    unknown = worker.cancel("no-such-job")
    assert not unknown.success, "CancelJob of an unknown job reported success"


def test_capacity_is_enforced(worker_factory, s3, bucket, inputs):
    worker = worker_factory(env=_env(s3, bucket, MAX_CONCURRENT_JOBS="1"), name="capacity")
    first = new_job_id("first")
    stream = submit(worker, job_request(first, inputs.clip_url("long.mp4"), "1080p_h264",
                                        "capacity/first.mp4"))
    stream.wait_for(lambda e: True, timeout=30, what="a first event")
    status = worker.status()
    assert status.max_concurrent_jobs == 1, f"max_concurrent_jobs {status.max_concurrent_jobs}"
    assert status.current_jobs == 1 and list(status.active_job_ids) == [first], f"status: {status}"

    second = submit(worker, job_request(new_job_id("second"), inputs.clip_url("main.mp4"),
                                        "480p_h264", "capacity/second.mp4"))
    second.expect_rpc_error("RESOURCE_EXHAUSTED")

    assert worker.cancel(first).success
    stream.expect_terminal("CANCELLED", "cancelled", timeout=30)
    third = run_job(worker, job_request(new_job_id("third"), inputs.clip_url("main.mp4"),
                                        "480p_h264", "capacity/third.mp4"))
    third.expect_terminal("COMPLETED")
    assert_worker_clean(worker)


def test_duplicate_job_id_is_refused(worker_factory, s3, bucket, inputs):
    worker = worker_factory(env=_env(s3, bucket), name="duplicate")
    job_id = new_job_id("dup")
    stream = submit(worker, job_request(job_id, inputs.clip_url("long.mp4"), "1080p_h264",
                                        "dup/a.mp4"))
    stream.wait_for(lambda e: True, timeout=30, what="a first event")
    again = submit(worker, job_request(job_id, inputs.clip_url("main.mp4"), "480p_h264",
                                       "dup/b.mp4"))
    again.expect_rpc_error("ALREADY_EXISTS")
    assert not stream.ended, f"the original job's stream ended:\n{describe(stream.events)}"
    assert worker.cancel(job_id).success
    stream.expect_terminal("CANCELLED", "cancelled", timeout=30)
    assert_worker_clean(worker)


@pytest.fixture(scope="module")
def validation_worker(module_worker_factory, s3, tmp_path_factory):
    bucket = s3.create_bucket("validation")
    local = tmp_path_factory.mktemp("validation-local")
    env = _env(s3, bucket, LOCAL_STORAGE_DIR=str(local))
    worker = module_worker_factory(env=env, name="validation")
    worker.bucket, worker.local = bucket, local
    return worker


def _request(clip_url, **changes):
    fields = dict(job_id=new_job_id("bad"), input_url=clip_url, preset="480p_h264",
                  path="valid/out.mp4", storage="s3", output_type=None)
    fields.update(changes)
    return job_request(fields["job_id"], fields["input_url"], fields["preset"], fields["path"],
                       storage=fields["storage"], output_type=fields["output_type"])


@pytest.mark.parametrize("changes", [
    dict(job_id=""),
    dict(input_url=""),
    dict(preset=""),
    dict(preset="4k_av1_turbo"),
    dict(path="../escape.mp4"),
    dict(path="/abs/out.mp4"),
    dict(path="a/../../escape.mp4"),
    dict(path="../escape.mp4", storage="local"),
    dict(path="/etc/cron.d/evil", storage="local"),
    dict(storage="ftp"),
    dict(output_type="hls"),
    dict(preset="hls_720p", path="valid/hls", output_type="dash"),
    dict(preset="dash_1080p", path="valid/dash", output_type="single"),
], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_invalid_requests_are_refused(changes, validation_worker, s3, inputs):
    request = _request(inputs.clip_url("main.mp4"), **changes)
    stream = submit(validation_worker, request, timeout=30)
    stream.expect_rpc_error("INVALID_ARGUMENT")
    assert stream.error.details(), "INVALID_ARGUMENT without a message"
    assert_nothing_uploaded(s3, validation_worker.bucket, validation_worker.local)
    assert_worker_clean(validation_worker)
    status = validation_worker.status()
    assert status.current_jobs == 0, f"a refused request left a job: {status}"


def test_detached_job_keeps_running_and_watch_reattaches(worker_factory, s3, bucket, inputs):
    worker = worker_factory(env=_env(s3, bucket), name="detach")
    job_id = new_job_id("detach")
    key = "detach/out.mp4"
    stream = submit(worker, job_request(job_id, inputs.clip_url("medium.mp4"), "720p_h264", key))
    last = stream.wait_phase("ENCODING", timeout=60)
    stream.cancel_call()
    time.sleep(0.5)
    status = worker.status()
    assert job_id in status.active_job_ids, f"the job stopped when its client went away: {status}"

    watcher = watch(worker, job_id)
    watcher.wait_end(180)
    assert watcher.error is None, f"WatchJob failed: {watcher.error_text()}"
    events = watcher.events
    assert events, "WatchJob returned no events"
    first = events[0]
    assert status_name(first.status) in ("JOB_STATUS_PROCESSING", "JOB_STATUS_UPLOADING"), (
        f"WatchJob's first event is not the current state:\n{describe(events)}")
    assert first.sequence >= last.sequence, (
        f"WatchJob started at sequence {first.sequence}, before the {last.sequence} already seen")
    assert len(events) >= 2, f"WatchJob sent no live events after the current state:\n{describe(events)}"
    watcher.expect_terminal("COMPLETED")
    assert key in s3.list_objects(bucket, key), "the detached job's output is not in the bucket"
    assert_worker_clean(worker)


def test_finished_detached_job_is_held_for_watch(worker_factory, s3, bucket, inputs):
    worker = worker_factory(env=_env(s3, bucket), name="held")
    job_id = new_job_id("held")
    submit_detached(worker, job_request(job_id, inputs.clip_url("main.mp4"), "480p_h264",
                                        "held/out.mp4"))
    _wait_status(worker, lambda s: job_id in s.held_job_ids and job_id not in s.active_job_ids,
                 120, f"{job_id} held")

    again = submit(worker, job_request(job_id, inputs.clip_url("main.mp4"), "480p_h264",
                                       "held/again.mp4"))
    again.expect_rpc_error("ALREADY_EXISTS")

    watcher = watch(worker, job_id).wait_end(30)
    assert watcher.error is None, f"WatchJob of a held job failed: {watcher.error_text()}"
    assert len(watcher.events) == 1, f"a held job should replay one terminal event:\n{describe(watcher.events)}"
    final = watcher.expect_terminal("COMPLETED")
    assert final.output_url.endswith("/held/out.mp4"), f"output_url {final.output_url!r}"
    assert final.result.size_bytes > 0, "held result lost its JobResult"

    unknown = watch(worker, "never-submitted").wait_end(30)
    assert unknown.error is not None and unknown.error.code() == grpc.StatusCode.NOT_FOUND, (
        f"WatchJob of an unknown job: {unknown.error_text()}, events:\n{describe(unknown.events)}")


def test_held_result_expires(worker_factory, s3, bucket, inputs):
    worker = worker_factory(env=_env(s3, bucket, RESULT_HOLD="2"), name="hold-expiry")
    job_id = new_job_id("expiry")
    submit_detached(worker, job_request(job_id, inputs.clip_url("main.mp4"), "480p_h264",
                                        "expiry/out.mp4"))
    _wait_status(worker, lambda s: job_id not in s.active_job_ids, 120, f"{job_id} finished")
    _wait_status(worker, lambda s: job_id not in s.held_job_ids, 6, f"{job_id} released after RESULT_HOLD=2")
    gone = watch(worker, job_id).wait_end(30)
    assert gone.error is not None and gone.error.code() == grpc.StatusCode.NOT_FOUND, (
        f"WatchJob after RESULT_HOLD: {gone.error_text()}\n{describe(gone.events)}")


def test_job_timeout(worker_factory, s3, bucket, inputs):
    worker = worker_factory(env=_env(s3, bucket), name="timeout")
    request = job_request(new_job_id("timeout"), inputs.clip_url("long.mp4"), "1080p_h264",
                          "timeout/out.mp4", timeout_seconds=3)
    started = time.monotonic()
    stream = run_job(worker, request, timeout=60)
    stream.expect_terminal("FAILED", "timeout")
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"a 3 s job timeout took {elapsed:.1f}s to fire"
    assert_worker_clean(worker, "after a timeout")
    assert_nothing_uploaded(s3, bucket, prefix="timeout/", events=stream.events)


def test_status_describes_the_worker(worker_factory, s3, bucket, tmp_path, pb):
    local = tmp_path / "local"
    local.mkdir()
    worker = worker_factory(env=_env(s3, bucket, WORKER_ID="it-status-7", MAX_CONCURRENT_JOBS="3",
                                     LOCAL_STORAGE_DIR=str(local)), name="status")
    status = worker.status()
    assert status.worker_id == "it-status-7", f"worker_id {status.worker_id!r}"
    assert status.max_concurrent_jobs == 3, f"max_concurrent_jobs {status.max_concurrent_jobs}"
    assert status.current_jobs == 0 and not status.active_job_ids, f"idle worker: {status}"
    assert status.state == pb.WORKER_STATE_READY, f"state {pb.WorkerState.Name(status.state)}"
    assert sorted(status.storage_types) == ["local", "s3"], f"storage_types {list(status.storage_types)}"
    assert status.version, "empty version"
    assert set(BUILTIN_PRESETS) <= set(status.presets), f"presets {list(status.presets)}"
