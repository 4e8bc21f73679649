"""Assertions shared by several control plane test files."""

import datetime
import json
import re
import time

RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def parse_time(text: str) -> datetime.datetime:
    assert isinstance(text, str) and RFC3339_MS.match(text), (
        f"{text!r} is not RFC 3339 UTC with milliseconds")
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def epoch(text: str) -> float:
    """An RFC 3339 UTC timestamp as seconds since the epoch."""
    return parse_time(text).replace(tzinfo=datetime.timezone.utc).timestamp()


def assert_error(response, status: int, code: str, field=None) -> dict:
    """The SPEC §3 error body: {"error", "code", "field"?} with the exact status."""
    assert response.status_code == status, (
        f"want HTTP {status} {code}, got {response.status_code}: {response.text[:1000]!r}")
    assert response.headers.get("Content-Type", "").startswith("application/json"), (
        f"error Content-Type {response.headers.get('Content-Type')!r}")
    body = response.json()
    assert body.get("code") == code, f"want code {code!r}, got {body}"
    assert isinstance(body.get("error"), str) and body["error"], f"no human message: {body}"
    if field is not None:
        assert body.get("field") == field, f"want field {field!r}, got {body}"
    assert set(body) <= {"error", "code", "field"}, f"unexpected keys in error body {body}"
    return body


def worker_log_lines(worker, msg: str, job_id: str = None) -> list:
    """A worker's JSON log records with this msg (and job_id)."""
    return [r for r in worker.log_records()
            if isinstance(r, dict) and r.get("msg") == msg
            and (job_id is None or r.get("job_id") == job_id)]


def accepted_count(workers, job_id: str) -> int:
    """How many times any worker accepted (started) the job."""
    return sum(len(worker_log_lines(w, "job accepted", job_id)) for w in workers)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(interval)


def dump(doc) -> str:
    return json.dumps(doc, indent=1, sort_keys=True)
