"""Auth and limits (SPEC §3.4): bearer keys, open routes, production refusing
to start without keys, the per-key rate limit, METRICS_TOKEN."""

import time

import pytest

from conftest import local_worker_env
from cpharness.api import job_body
from cpharness.checks import assert_error
from cpharness.controlplane import new_api_key, run_to_exit
from harness.ports import free_port

PROTECTED = [("GET", "/api/v1/jobs"), ("GET", "/api/v1/jobs/job_x"),
             ("POST", "/api/v1/jobs/job_x/cancel"), ("GET", "/api/v1/jobs/job_x/stream"),
             ("GET", "/api/v1/workers/status"), ("GET", "/api/v1/presets"),
             ("POST", "/api/v1/jobs")]


def assert_unauthorized(response, what: str):
    assert_error(response, 401, "unauthorized")
    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), (
        f"{what}: WWW-Authenticate {response.headers.get('WWW-Authenticate')!r}")


@pytest.fixture
def worker(worker_factory, tmp_path):
    return worker_factory(env=local_worker_env(tmp_path / "out"), name="w")


def test_keys_wrong_keys_and_open_routes(worker, cp_factory, inputs):
    first, second = new_api_key(), new_api_key()
    cp = cp_factory([worker], env={"API_KEYS": f"{first},{second}"})
    body = job_body(inputs.clip_url("small.mp4"), "auth/out.mp4")
    for method, path in PROTECTED:
        kwargs = {"json": body} if path == "/api/v1/jobs" and method == "POST" else {}
        assert_unauthorized(cp.api.request(method, path, auth=False, **kwargs), f"{method} {path}")
        assert_unauthorized(cp.api.request(method, path, auth="wrong-" + first[6:], **kwargs),
                            f"{method} {path} wrong key")
        # A prefix of a valid key, and a valid key in the wrong scheme, are wrong keys.
        assert_unauthorized(cp.api.request(method, path, auth=first[:-1], **kwargs), f"{method} {path}")
        assert_unauthorized(cp.api.request(method, path, auth=False,
                                           headers={"Authorization": f"Basic {first}"}, **kwargs),
                            f"{method} {path} Basic")
    assert cp.api.list_jobs() == {"jobs": [], "next_cursor": None}, "a refused POST stored a job"

    for key in (first, second):
        response = cp.api.get("/api/v1/jobs", auth=key)
        assert response.status_code == 200, f"valid key refused: {response.text}"
    job_id = cp.api.submit(body)
    assert cp.api.get(f"/api/v1/jobs/{job_id}", auth=second).status_code == 200

    for path in ("/health", "/ready", "/openapi.json", "/docs", "/metrics"):
        response = cp.api.get(path, auth=False)
        assert response.status_code == 200, f"{path} without a key: {response.status_code}"
    assert cp.api.wait_job(job_id, timeout=60)["status"] == "completed"

    # Keys are secrets: never in the logs.
    logs = cp.stdout_text() + cp.stderr_text()
    assert first not in logs and second not in logs, "an API key appears in the logs"


def test_single_api_key_variable(worker, cp_factory):
    key = new_api_key()
    cp = cp_factory([worker], env={"API_KEYS": None, "API_KEY": key})
    assert cp.api.get("/api/v1/jobs", auth=key).status_code == 200
    assert_unauthorized(cp.api.get("/api/v1/jobs", auth=False), "API_KEY set, no key sent")


def test_development_without_keys_is_open(worker, cp_factory):
    cp = cp_factory([worker], env={"ENV": "development", "API_KEYS": None})
    assert cp.api.get("/api/v1/jobs", auth=False).status_code == 200
    assert cp.api.get("/api/v1/workers/status", auth=False).status_code == 200


@pytest.mark.parametrize("env", [
    {"ENV": "production"},
    {"ENV": None},  # production is the default
    {"ENV": "production", "API_KEYS": "short-key"},
    {"ENV": "production", "API_KEYS": "", "API_KEY": ""},
], ids=["production", "default_env", "short_key", "empty_keys"])
def test_production_without_keys_refuses_to_start(env, tmp_path):
    full = {"PORT": str(free_port()), "BIND_ADDRESS": "127.0.0.1",
            "DATABASE_PATH": str(tmp_path / "flux.db"), "WORKER_NODES": "127.0.0.1:9"}
    full.update(env)
    started = time.monotonic()
    result = run_to_exit(full)
    assert result.returncode == 2, (f"exit {result.returncode}, want 2\nstdout: {result.stdout}\n"
                                    f"stderr: {result.stderr}")
    assert time.monotonic() - started < 15
    assert "API_KEYS" in result.stderr, f"the error does not name API_KEYS: {result.stderr!r}"
    if "API_KEYS" in env and env["API_KEYS"]:
        assert env["API_KEYS"] not in result.stdout + result.stderr, "the key was printed"


def test_malformed_setting_is_a_named_startup_error(tmp_path):
    base = {"PORT": str(free_port()), "BIND_ADDRESS": "127.0.0.1", "ENV": "development",
            "DATABASE_PATH": str(tmp_path / "flux.db")}
    for name, value in (("QUEUE_LIMIT", "lots"), ("WORKER_NODES", "no-port"),
                        ("RATE_LIMIT_RPS", "-1"), ("JOB_TIMEOUT", "soon")):
        result = run_to_exit({**base, name: value})
        assert result.returncode == 2, f"{name}={value}: exit {result.returncode}\n{result.stderr}"
        assert name in result.stderr, f"{name}={value}: error does not name it: {result.stderr!r}"


def test_rate_limit_per_key(worker, cp_factory):
    first, second = new_api_key(), new_api_key()
    cp = cp_factory([worker], env={"API_KEYS": f"{first},{second}", "RATE_LIMIT_RPS": "1",
                                   "RATE_LIMIT_BURST": "2"})
    codes = [cp.api.get("/api/v1/jobs", auth=first) for _ in range(3)]
    assert [r.status_code for r in codes[:2]] == [200, 200], [r.text for r in codes]
    limited = codes[2]
    assert_error(limited, 429, "rate_limited")
    # A refused request takes no token: still refused while the bucket is empty.
    assert_error(cp.api.get("/api/v1/jobs", auth=first), 429, "rate_limited")
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 2, limited.headers
    # Another key has its own bucket; open routes are not limited.
    assert cp.api.get("/api/v1/jobs", auth=second).status_code == 200
    assert all(cp.api.get("/health", auth=False).status_code == 200 for _ in range(5))
    # Served again once Retry-After has passed.
    time.sleep(retry_after + 0.2)
    assert cp.api.get("/api/v1/jobs", auth=first).status_code == 200


def test_metrics_token(worker, cp_factory):
    token = "metrics-" + new_api_key()
    cp = cp_factory([worker], env={"METRICS_TOKEN": token})
    assert_unauthorized(cp.api.get("/metrics", auth=False), "/metrics without the token")
    assert_unauthorized(cp.api.get("/metrics", auth=cp.api_key), "/metrics with an API key")
    response = cp.api.get("/metrics", auth=token)
    assert response.status_code == 200, response.text
    assert "flux_http_requests_total" in response.text
    assert cp.api.get("/health", auth=False).status_code == 200
    assert token not in cp.stdout_text() + cp.stderr_text(), "METRICS_TOKEN appears in the logs"
