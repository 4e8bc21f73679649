"""Starting and stopping: auto-stop when idle, IDLE_TIMEOUT, SIGTERM drain,
the start-up sweep of WORK_DIR, refused configuration, --help/--version."""

import signal
import subprocess
import time

import pytest

from harness import paths
from harness.checks import assert_nothing_uploaded, assert_worker_clean
from harness.jobs import describe, job_request, new_job_id, status_name, submit, submit_detached, watch
from harness.s3server import worker_env
from harness.process import sanitizer_env
from harness.worker import WorkerProcess

GRACE = 1.0
# Exit within grace + 1 s of the last job; the extra slack is for polling and
# the sanitizer's exit-time leak check.
EXIT_BUDGET = GRACE + 1.0 + 0.75


def _env(s3, bucket, **extra):
    env = worker_env(s3, bucket)
    env.update(ALLOW_PRIVATE_INPUTS="true", DISABLE_AUTO_SHUTDOWN=None,
               AUTO_SHUTDOWN_GRACE=str(int(GRACE)))
    env.update(extra)
    return env


def _run_watching_liveness(worker, stream, timeout=180):
    """Waits for the stream's end, failing if the worker exits meanwhile."""
    deadline = time.monotonic() + timeout
    while not stream.ended:
        assert worker.alive(), (f"the worker exited (code {worker.proc.returncode}) during a job\n"
                                f"{describe(stream.events)}\n{worker.output_tail()}")
        assert time.monotonic() < deadline, "job did not end"
        time.sleep(0.05)


def _assert_exits_zero_within(worker, since: float, budget: float, what: str):
    code = worker.wait_exit(timeout=max(0.0, since + budget - time.monotonic()) + 0.01)
    elapsed = time.monotonic() - since
    assert code is not None, f"worker still running {elapsed:.1f}s {what} (budget {budget:.1f}s)"
    assert code == 0, f"worker exited with {code} {what}\n{worker.output_tail()}"
    assert elapsed <= budget, f"worker took {elapsed:.2f}s to exit {what} (budget {budget:.2f}s)"
    return elapsed


def test_auto_stop_after_the_last_job(worker_factory, s3, bucket, inputs):
    # A longer grace here: the second job must reliably arrive within it even
    # on a loaded CI machine.
    grace = 3.0
    worker = worker_factory(env=_env(s3, bucket, AUTO_SHUTDOWN_GRACE=str(int(grace))), name="autostop")
    time.sleep(grace + 1.5)
    assert worker.alive(), ("a worker that never received a job stopped without IDLE_TIMEOUT "
                            f"(code {worker.proc.returncode})")

    first = submit(worker, job_request(new_job_id("auto1"), inputs.clip_url("medium.mp4"),
                                       "720p_h264", "auto/first.mp4"))
    _run_watching_liveness(worker, first)
    first.expect_terminal("COMPLETED")
    # A job arriving within the grace period is taken, not refused.
    second = submit(worker, job_request(new_job_id("auto2"), inputs.clip_url("main.mp4"),
                                        "480p_h264", "auto/second.mp4"))
    _run_watching_liveness(worker, second)
    second.expect_terminal("COMPLETED")
    ended = second.ended_at
    elapsed = _assert_exits_zero_within(worker, ended, grace + 1.75, "after the last job")
    assert elapsed >= grace * 0.8, f"worker exited {elapsed:.2f}s after the last job, before its grace"
    assert set(s3.list_objects(bucket, "auto/")) == {"auto/first.mp4", "auto/second.mp4"}


def test_auto_stop_waits_for_a_held_result(worker_factory, s3, bucket, inputs):
    worker = worker_factory(env=_env(s3, bucket), name="autostop-held")
    job_id = new_job_id("autoheld")
    submit_detached(worker, job_request(job_id, inputs.clip_url("main.mp4"), "480p_h264",
                                        "autoheld/out.mp4"))
    deadline = time.monotonic() + 120
    while job_id not in worker.status().held_job_ids:
        assert worker.alive(), f"worker exited with an uncollected result\n{worker.output_tail()}"
        assert time.monotonic() < deadline, "job never finished"
        time.sleep(0.1)
    time.sleep(GRACE + 1.5)
    assert worker.alive(), "worker stopped while a final state was waiting to be collected"
    watcher = watch(worker, job_id).wait_end(30)
    watcher.expect_terminal("COMPLETED")
    _assert_exits_zero_within(worker, watcher.ended_at, EXIT_BUDGET, "after the held result was collected")


def test_idle_timeout(worker_factory, tmp_path):
    worker = worker_factory(env={"DISABLE_AUTO_SHUTDOWN": None, "IDLE_TIMEOUT": "2",
                                 "STORAGE_TYPE": "local", "LOCAL_STORAGE_DIR": str(tmp_path)},
                            name="idle")
    code = worker.wait_exit(timeout=8)
    elapsed = time.monotonic() - worker.started_at
    assert code is not None, "IDLE_TIMEOUT=2: worker still running after 8 s"
    assert code == 0, f"IDLE_TIMEOUT exit code {code}\n{worker.output_tail()}"
    assert 1.5 <= elapsed <= 5.0, f"IDLE_TIMEOUT=2 but the worker exited after {elapsed:.1f}s"


def test_sigterm_drains_running_jobs(worker_factory, s3, bucket, inputs, pb):
    env = worker_env(s3, bucket)
    env.update(ALLOW_PRIVATE_INPUTS="true", DRAIN_TIMEOUT="120")
    worker = worker_factory(env=env, name="drain")
    stream = submit(worker, job_request(new_job_id("drain"), inputs.clip_url("medium.mp4"),
                                        "720p_h264", "drain/out.mp4"))
    stream.wait_phase("ENCODING", timeout=60)
    worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 3
    while worker.status().state != pb.WORKER_STATE_DRAINING:
        assert time.monotonic() < deadline, f"state not DRAINING after SIGTERM: {worker.status()}"
        time.sleep(0.05)
    refused = submit(worker, job_request(new_job_id("late"), inputs.clip_url("main.mp4"),
                                         "480p_h264", "drain/late.mp4"))
    refused.expect_rpc_error("UNAVAILABLE")
    stream.expect_terminal("COMPLETED", timeout=180)
    _assert_exits_zero_within(worker, stream.ended_at, 10, "after draining")
    assert list(s3.list_objects(bucket, "drain/")) == ["drain/out.mp4"]
    assert_worker_clean(worker, "after the drain")


def test_sigterm_drain_deadline_cancels_jobs(worker_factory, s3, bucket, inputs):
    env = worker_env(s3, bucket)
    env.update(ALLOW_PRIVATE_INPUTS="true", DRAIN_TIMEOUT="1")
    worker = worker_factory(env=env, name="drain-deadline")
    stream = submit(worker, job_request(new_job_id("deadline"), inputs.clip_url("long.mp4"),
                                        "1080p_h264", "deadline/out.mp4"))
    stream.wait_phase("ENCODING", timeout=60)
    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    # The worker stops the job ("cancel them", SPEC §5) but reports it as
    # FAILED worker_shutdown, not CANCELLED: CANCELLED means a client asked for
    # it and is final, while a job stopped by a drain must be retried elsewhere.
    stream.wait_end(30)
    final = stream.final
    ended = (status_name(final.status), final.error_code) if final else None
    assert ended == ("JOB_STATUS_FAILED", "worker_shutdown"), (
        f"job stopped by the drain deadline ended as {ended}\n{describe(stream.events)}")
    _assert_exits_zero_within(worker, signalled, 1 + 5 + 5, "after SIGTERM with DRAIN_TIMEOUT=1")
    assert_worker_clean(worker, "after the drain deadline")
    assert_nothing_uploaded(s3, bucket, prefix="deadline/", events=stream.events)


def test_leftovers_are_swept_at_start(worker_factory, tmp_path):
    work = tmp_path / "work"
    (work / "job-crashed" / "segments").mkdir(parents=True)
    (work / "job-crashed" / "input.mp4").write_bytes(b"x" * 1000)
    (work / "job-crashed" / "segments" / "seg_001.ts").write_bytes(b"y" * 100)
    (work / "another").mkdir()
    worker = worker_factory(env={"WORK_DIR": str(work), "STORAGE_TYPE": "local",
                                 "LOCAL_STORAGE_DIR": str(tmp_path / "out")}, name="sweep")
    left = worker.wait_work_dir_empty(timeout=5)
    assert not left, f"leftovers not swept from WORK_DIR at start: {left}"
    assert work.is_dir(), "the sweep removed WORK_DIR itself"


# ---- configuration -------------------------------------------------------------------

BAD_YAML = "presets:\n  - name: broken\n    args: [unclosed\n"
BAD_PRESET_JSON = '{"presets": [{"name": "no_args_no_output", "output_type": "carrier-pigeon"}]}'


@pytest.mark.parametrize("variable,value", [
    ("MAX_CONCURRENT_JOBS", "abc"),
    ("VALIDATION_LEVEL", "paranoid"),
    ("GRPC_PORT", "99999"),
    ("METRICS_PORT", "http"),
    ("STORAGE_TYPE", "ftp"),
    ("PRESETS_FILE", "bad.yaml"),
    ("PRESETS_FILE", "bad.json"),
    ("PRESETS_FILE", "missing.yaml"),
])
def test_malformed_configuration_is_refused(variable, value, tmp_path):
    (tmp_path / "bad.yaml").write_text(BAD_YAML)
    (tmp_path / "bad.json").write_text(BAD_PRESET_JSON)
    if variable == "PRESETS_FILE":
        value = str(tmp_path / value)
    worker = WorkerProcess(tmp_path / "w", env={"STORAGE_TYPE": "local",
                                                "LOCAL_STORAGE_DIR": str(tmp_path / "out"),
                                                variable: value}, name="badconfig")
    try:
        worker.start()
        code = worker.wait_exit(timeout=15)
        assert code is not None, f"{variable}={value!r}: worker started anyway"
        output = worker.stdout_text() + worker.stderr_text()
        assert code == 2, f"{variable}={value!r}: exit code {code}, want 2\n{output[-2000:]}"
        assert variable in output, f"{variable}={value!r}: the message does not name {variable}:\n{output[-2000:]}"
        assert not worker.sanitizer_report(), worker.sanitizer_report()
    finally:
        problems = worker.stop()
        assert not problems, "\n".join(problems)


def test_help_and_version():
    binary = str(paths.worker_binary())
    env = {"PATH": "/usr/bin:/bin", **sanitizer_env()}
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, env=env)
    assert version.returncode == 0, f"--version exit {version.returncode}: {version.stderr}"
    expected = paths.project_version()
    assert expected and expected in version.stdout, (
        f"--version says {version.stdout.strip()!r}, project version is {expected!r}")
    helped = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30, env=env)
    assert helped.returncode == 0, f"--help exit {helped.returncode}: {helped.stderr}"
    for variable in ("GRPC_PORT", "WORK_DIR", "MAX_CONCURRENT_JOBS"):
        assert variable in helped.stdout, f"--help does not mention {variable}:\n{helped.stdout}"
    for result in (version, helped):
        assert "Sanitizer" not in result.stderr and "runtime error:" not in result.stderr, result.stderr


def test_status_version_matches_binary(worker_factory, tmp_path):
    worker = worker_factory(env={"STORAGE_TYPE": "local", "LOCAL_STORAGE_DIR": str(tmp_path)},
                            name="version")
    assert paths.project_version() in worker.status().version, (
        f"GetStatus.version {worker.status().version!r}, project {paths.project_version()!r}")
