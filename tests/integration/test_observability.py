"""Metrics (promtool-clean Prometheus text) and logs (JSON lines, job_id,
no secrets)."""

import datetime
import json
import re
import subprocess
import urllib.request

from harness.jobs import job_request, new_job_id, run_job
from harness.ports import free_port
from harness.s3server import worker_env

SECRET_CANARY = "canarySecretKey/7f3a9c+QWxhZGRpbjpvcGVuIHNlc2FtZQ"
TOKEN_CANARY = "canarySessionToken-1c9e4b2a8d"


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200, f"/metrics answered {response.status}"
        content_type = response.headers.get("Content-Type", "")
        assert content_type.startswith("text/plain"), f"/metrics Content-Type {content_type!r}"
        return response.read().decode()


def _promtool(text: str) -> None:
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, (f"promtool check metrics exit {result.returncode}:\n"
                                    f"{result.stdout}{result.stderr}\n--- metrics ---\n{text[:4000]}")


def _samples(text: str, name: str) -> list:
    """[(labels text, value)] of every sample of metric `name`."""
    pattern = re.compile(r"^%s(\{[^}]*\})?\s+(\S+)" % re.escape(name), re.M)
    return [(m.group(1) or "", float(m.group(2))) for m in pattern.finditer(text)]


def test_metrics_after_jobs(worker_factory, s3, bucket, inputs):
    metrics_port = free_port()
    env = worker_env(s3, bucket)
    env.update(ALLOW_PRIVATE_INPUTS="true", METRICS_PORT=str(metrics_port))
    worker = worker_factory(env=env, name="metrics")

    before = _scrape(metrics_port)
    _promtool(before)
    active = _samples(before, "flux_worker_active_jobs")
    assert active and active[0][1] == 0, f"flux_worker_active_jobs before any job: {active}"

    run_job(worker, job_request(new_job_id("metrics-ok"), inputs.clip_url("main.mp4"), "480p_h264",
                                "metrics/out.mp4")).expect_terminal("COMPLETED")
    run_job(worker, job_request(new_job_id("metrics-bad"), inputs.server.url("no/such.mp4"),
                                "480p_h264", "metrics/bad.mp4")).expect_terminal("FAILED", "input_not_found")

    text = _scrape(metrics_port)
    _promtool(text)
    assert re.search(r"^# TYPE flux_worker_jobs_total counter$", text, re.M), "flux_worker_jobs_total is not a counter"
    jobs = _samples(text, "flux_worker_jobs_total")
    completed = sum(v for labels, v in jobs if 'status="completed"' in labels)
    failed = sum(v for labels, v in jobs if 'status="failed"' in labels)
    assert completed == 1, f"flux_worker_jobs_total completed = {completed}: {jobs}"
    assert failed == 1, f"flux_worker_jobs_total failed = {failed}: {jobs}"
    active = _samples(text, "flux_worker_active_jobs")
    assert active and active[0][1] == 0, f"flux_worker_active_jobs after the jobs: {active}"
    # Encode, validate and upload durations by preset: one histogram per phase
    # or one with a phase label.
    buckets = re.findall(r"^(flux_worker_\w*_seconds)_bucket\{([^}]*)\}", text, re.M)
    for phase in ("encod", "validat", "upload"):
        found = [b for b in buckets if phase in (b[0] + b[1]) and 'preset="480p_h264"' in b[1]]
        assert found, f"no {phase}* duration histogram with preset=\"480p_h264\" in:\n{text[:3000]}"
    uploaded = [v for line in re.findall(r"^flux_worker_\w*upload\w*bytes\w*(?:\{[^}]*\})?\s+(\S+)", text, re.M)
                for v in [float(line)]]
    assert uploaded and sum(uploaded) > 0, "no uploaded-bytes counter with a value"


def _is_rfc3339(text: str) -> bool:
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return False
    return value.tzinfo is not None


def test_json_logs_carry_job_id_and_no_secrets(worker_factory, s3, bucket, inputs, tmp_path):
    env = worker_env(s3, bucket, secret=SECRET_CANARY)
    env.update(ALLOW_PRIVATE_INPUTS="true", LOG_LEVEL="debug", AWS_SESSION_TOKEN=TOKEN_CANARY)
    worker = worker_factory(env=env, name="logs")
    ok_id = new_job_id("logs-ok")
    run_job(worker, job_request(ok_id, inputs.clip_url("main.mp4"), "480p_h264", "logs/out.mp4")
            ).expect_terminal("COMPLETED")
    # An S3 error path: the bucket disappears, so the upload is refused.
    for key in s3.list_objects(bucket):
        s3.client().delete_object(Bucket=bucket, Key=key)
    s3.client().delete_bucket(Bucket=bucket)
    failed_id = new_job_id("logs-fail")
    run_job(worker, job_request(failed_id, inputs.clip_url("main.mp4"), "480p_h264", "logs/x.mp4"),
            timeout=240).expect_terminal("FAILED", "upload_failed", timeout=240)
    encode_fail_id = new_job_id("logs-bad-input")
    run_job(worker, job_request(encode_fail_id, inputs.server.url("no/such.mp4"), "480p_h264",
                                "logs/y.mp4")).expect_terminal("FAILED", "input_not_found")
    problems = worker.stop()
    assert not problems, "\n".join(problems)

    stdout, stderr = worker.stdout_text(), worker.stderr_text()
    for canary, name in ((SECRET_CANARY, "AWS_SECRET_ACCESS_KEY"), (TOKEN_CANARY, "AWS_SESSION_TOKEN")):
        assert canary not in stdout, f"{name} appears in the worker's stdout"
        assert canary not in stderr, f"{name} appears in the worker's stderr"

    records = worker.log_records()
    assert records, "the worker logged nothing on stdout"
    not_json = [r for r in records if not isinstance(r, dict)]
    assert not not_json, f"stdout lines that are not JSON objects: {not_json[:5]}"
    for record in records:
        for field in ("ts", "level", "msg", "component"):
            assert field in record, f"log line without {field!r}: {json.dumps(record)}"
        assert _is_rfc3339(record["ts"]), f"ts is not RFC 3339: {record['ts']!r}"
    for job_id in (ok_id, failed_id, encode_fail_id):
        tagged = [r for r in records if r.get("job_id") == job_id]
        assert len(tagged) >= 2, f"fewer than 2 log lines carry job_id={job_id}"
        mentioning = [r for r in records if job_id in json.dumps(r) and r.get("job_id") != job_id]
        assert not mentioning, (f"log lines about {job_id} without job_id={job_id}: "
                                f"{[json.dumps(r) for r in mentioning[:3]]}")
    failed_lines = [r for r in records if r.get("job_id") == failed_id
                    and str(r["level"]).lower() in ("warn", "warning", "error")]
    assert failed_lines, f"the failed upload of {failed_id} left no warning or error in the log"
