"""The REST API end to end: a job from POST to a playable object in the bucket,
its document, listing with pagination, workers, presets, health, readiness,
metrics (promtool), the OpenAPI document (Redocly lint) and /docs."""

import re
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import local_worker_env
from cpharness import paths
from cpharness.api import job_body
from cpharness.checks import assert_error, dump, parse_time
from cpharness.sse import open_stream
from harness import media
from harness.jobs import BUILTIN_PRESETS
from harness.ports import free_port
from harness.s3server import worker_env

EXTENSIONS = {"single": "mp4", "hls": "m3u8", "dash": "mpd"}


@pytest.fixture(scope="module")
def shared_cp(module_worker_factory, module_cp_factory, tmp_path_factory):
    """One local-storage worker behind one control plane, for the tests that
    run no job and do not depend on what others stored."""
    worker = module_worker_factory(env=local_worker_env(tmp_path_factory.mktemp("out")), name="w")
    return module_cp_factory([worker], name="shared")


@pytest.fixture
def s3_stack(worker_factory, cp_factory, s3, bucket):
    env = worker_env(s3, bucket)
    env["ALLOW_PRIVATE_INPUTS"] = "true"
    worker = worker_factory(env=env, name="s3w")
    cp = cp_factory([worker], name="cp")
    return cp, worker


def test_job_from_post_to_object_in_bucket(s3_stack, s3, bucket, inputs, clips, tmp_path):
    cp, worker = s3_stack
    key = "e2e/video_123.mp4"
    job_id = cp.api.submit(job_body(inputs.clip_url("small.mp4"), key, preset="480p_h264",
                                    storage="s3", output={"storage": "s3", "path": key,
                                                          "type": "single",
                                                          "metadata": {"title": "Sample"}},
                                    priority=3))
    stream = open_stream(cp, job_id)
    assert stream.wait_head() == 200
    final = stream.wait_event(lambda e: e["status"] == "completed", timeout=90, what="completed")
    assert stream.wait_closed(5), "the stream stayed open after the terminal event"

    doc = cp.api.job(job_id)
    assert doc["job_id"] == job_id and doc["status"] == "completed", dump(doc)
    assert doc["phase"] == "done" and doc["progress"] == 100, dump(doc)
    assert doc["preset"] == "480p_h264" and doc["priority"] == 3, dump(doc)
    assert doc["input_url"] == inputs.clip_url("small.mp4"), dump(doc)
    assert doc["output"]["storage"] == "s3" and doc["output"]["path"] == key, dump(doc)
    assert doc["output"]["metadata"] == {"title": "Sample"}, dump(doc)
    assert doc["output_url"] == f"{s3.endpoint}/{bucket}/{key}", dump(doc)
    assert final.json()["output_url"] == doc["output_url"]
    assert doc["attempts"] == 1 and doc["worker_id"] == "it-s3w", dump(doc)
    assert "error" not in doc and "error_code" not in doc, dump(doc)
    created, started, finished = (parse_time(doc[k]) for k in ("created_at", "started_at",
                                                                "finished_at"))
    assert created <= started <= finished, dump(doc)
    durations = doc["phase_durations"]
    assert set(durations) >= {"download", "probe", "encode", "validate", "upload"}, dump(doc)
    assert all(isinstance(v, (int, float)) and v >= 0 for v in durations.values()), dump(doc)
    assert durations["encode"] > 0, dump(doc)
    assert doc["webhook"]["state"] == "none", dump(doc)

    # The object really is in the bucket, as the result says, and it plays.
    objects = s3.list_objects(bucket, "e2e/")
    assert objects == {key: objects.get(key)} and objects[key] > 0, objects
    result = doc["result"]
    assert result["file_count"] == 1 and result["size_bytes"] == objects[key], dump(doc)
    assert [f["key"] for f in result["files"]] == [key], dump(doc)
    assert result["video_codec"] == "h264" and result["height"] == 480, dump(doc)
    assert result["audio_codec"] == "aac", dump(doc)
    head = s3.client().head_object(Bucket=bucket, Key=key)
    assert head.get("Metadata") == {"title": "Sample"}, head.get("Metadata")
    local = s3.download(bucket, key, tmp_path / "out.mp4")
    info = media.ffprobe(local)
    media.assert_playable_video(info, key, height=480, audio=True)
    media.assert_duration_close(media.duration(info), media.input_duration(clips.path("small.mp4")),
                                key)

    # The worker's own view agrees: one job, run once, and it is idle again.
    status = worker.status()
    assert status.current_jobs == 0 and list(status.active_job_ids) == [], status


def test_list_with_pagination_and_status_filter(worker_factory, cp_factory, inputs, tmp_path):
    worker = worker_factory(env=local_worker_env(tmp_path / "out"), name="w")
    cp = cp_factory([worker])
    assert cp.api.list_jobs() == {"jobs": [], "next_cursor": None}

    ids = []
    for n in range(3):
        ids.append(cp.api.submit(job_body(inputs.clip_url("small.mp4"), f"list/{n}.mp4")))
        cp.api.wait_job(ids[-1], timeout=60)  # one after the other: a known order
    missing = inputs.server.add_status("missing.mp4", 404)
    failed = cp.api.submit(job_body(missing, "list/failed.mp4"))
    failed_doc = cp.api.wait_job(failed, timeout=60)
    assert failed_doc["status"] == "failed", dump(failed_doc)
    assert failed_doc["attempts"] == 1, f"a 404 input is deterministic, not retried:\n{dump(failed_doc)}"

    newest_first = [failed] + ids[::-1]
    first = cp.api.list_jobs(limit=2)
    assert [j["job_id"] for j in first["jobs"]] == newest_first[:2], first
    assert isinstance(first["next_cursor"], str) and first["next_cursor"], first
    second = cp.api.list_jobs(limit=2, cursor=first["next_cursor"])
    assert [j["job_id"] for j in second["jobs"]] == newest_first[2:4], second
    assert second["next_cursor"] is None or \
        cp.api.list_jobs(limit=2, cursor=second["next_cursor"])["jobs"] == [], second
    # Listed documents are full job documents.
    assert first["jobs"][1] == cp.api.job(first["jobs"][1]["job_id"])

    completed = cp.api.list_jobs(status="completed")
    assert [j["job_id"] for j in completed["jobs"]] == ids[::-1], completed
    assert all(j["status"] == "completed" for j in completed["jobs"])
    only_failed = cp.api.list_jobs(status="failed")
    assert [j["job_id"] for j in only_failed["jobs"]] == [failed], only_failed
    paged = cp.api.list_jobs(status="completed", limit=1)
    assert [j["job_id"] for j in paged["jobs"]] == [ids[2]] and paged["next_cursor"], paged
    rest = cp.api.list_jobs(status="completed", limit=5, cursor=paged["next_cursor"])
    assert [j["job_id"] for j in rest["jobs"]] == [ids[1], ids[0]], rest
    assert cp.api.list_jobs(status="queued")["jobs"] == []

    assert_error(cp.api.get("/api/v1/jobs", params={"limit": 0}), 400, "limit_invalid", "limit")
    assert_error(cp.api.get("/api/v1/jobs", params={"limit": 201}), 400, "limit_invalid", "limit")
    assert_error(cp.api.get("/api/v1/jobs", params={"limit": "two"}), 400, "limit_invalid", "limit")
    assert cp.api.get("/api/v1/jobs", params={"limit": 200}).status_code == 200
    assert_error(cp.api.get("/api/v1/jobs", params={"status": "done"}), 400, "status_invalid",
                 "status")
    assert_error(cp.api.get("/api/v1/jobs", params={"cursor": "not-a-cursor"}), 400,
                 "cursor_invalid", "cursor")


def test_unknown_job_is_404_everywhere(shared_cp):
    cp = shared_cp
    unknown = "job_0000000000000000000000000000"
    assert_error(cp.api.get(f"/api/v1/jobs/{unknown}"), 404, "job_not_found")
    assert_error(cp.api.cancel(unknown), 404, "job_not_found")
    assert_error(cp.api.get(f"/api/v1/jobs/{unknown}/stream"), 404, "job_not_found")
    assert_error(cp.api.get("/api/v1/nothing-here"), 404, "not_found")


def test_workers_status_presets_health_ready(worker_factory, cp_factory, s3, bucket, tmp_path):
    env = worker_env(s3, bucket)
    env["ALLOW_PRIVATE_INPUTS"] = "true"
    s3_worker = worker_factory(env=env, name="s3w")
    local = worker_factory(env=local_worker_env(tmp_path / "out", MAX_CONCURRENT_JOBS=3),
                           name="localw")
    down = f"127.0.0.1:{free_port()}"
    cp = cp_factory([s3_worker, local, down])

    workers = cp.api.workers()
    by_address = {w["address"]: w for w in workers}
    assert [w["address"] for w in workers] == [f"127.0.0.1:{s3_worker.grpc_port}",
                                              f"127.0.0.1:{local.grpc_port}", down], workers
    version = paths.worker_paths.project_version()
    for worker, storage, max_jobs in ((s3_worker, "s3", 2), (local, "local", 3)):
        w = by_address[f"127.0.0.1:{worker.grpc_port}"]
        assert w["worker_id"] == f"it-{worker.name}" and w["state"] == "up", w
        assert w["current_jobs"] == 0 and w["max_jobs"] == max_jobs, w
        assert w["active_job_ids"] == [] and w["storage_types"] == [storage], w
        assert w["version"] == version, w
        parse_time(w["last_seen"])
    gone = by_address[down]
    assert gone["state"] == "down" and gone["worker_id"] is None, gone
    assert gone["last_seen"] is None, gone

    response = cp.api.get("/api/v1/presets")
    assert response.status_code == 200, response.text
    presets = {p["name"]: p for p in response.json()["presets"]}
    assert set(presets) >= set(BUILTIN_PRESETS), sorted(presets)
    for name, (output_type, _, _) in BUILTIN_PRESETS.items():
        assert presets[name]["output_type"] == output_type, presets[name]
        assert presets[name]["extension"] == EXTENSIONS[output_type], presets[name]
        assert presets[name]["description"], presets[name]

    health = cp.api.get("/health", auth=False)
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    ready = cp.api.get("/ready", auth=False)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready", ready.text

    # No worker configured: alive, not ready, and a submission is refused
    # with 503 and Retry-After (and nothing stored).
    lonely = cp_factory([], name="noworkers")
    assert lonely.api.get("/health", auth=False).status_code == 200
    not_ready = lonely.api.get("/ready", auth=False)
    assert not_ready.status_code == 503 and not_ready.json()["status"] == "not_ready", not_ready.text
    refused = lonely.api.post("/api/v1/jobs", json=job_body("http://127.0.0.1:9/in.mp4", "x.mp4"))
    assert_error(refused, 503, "no_worker_configured")
    assert int(refused.headers["Retry-After"]) >= 1, refused.headers
    assert lonely.api.list_jobs()["jobs"] == []


def test_metrics_pass_promtool(worker_factory, cp_factory, inputs, tmp_path):
    worker = worker_factory(env=local_worker_env(tmp_path / "out"), name="w")
    cp = cp_factory([worker])
    job_id = cp.api.submit(job_body(inputs.clip_url("small.mp4"), "m/out.mp4"))
    assert cp.api.wait_job(job_id, timeout=60)["status"] == "completed"
    cp.api.get(f"/api/v1/jobs/{job_id}")

    response = cp.api.get("/metrics", auth=False)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain"), response.headers
    text = response.text
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, f"promtool check metrics:\n{check.stdout}{check.stderr}\n{text}"
    assert not (check.stdout + check.stderr).strip(), f"promtool complained:\n{check.stdout}{check.stderr}"

    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)

    def value(name):
        assert name in samples, f"{name} missing from /metrics:\n{text}"
        return samples[name]

    assert value('flux_jobs_finished_total{status="completed"}') == 1
    assert value("flux_jobs_queued") == 0 and value("flux_jobs_running") == 0
    assert value("flux_sse_connections") == 0
    assert value(f'flux_worker_up{{worker="127.0.0.1:{worker.grpc_port}"}}') == 1
    assert value('flux_dispatches_total{result="dispatched"}') == 1
    assert value("flux_job_duration_seconds_count") == 1
    assert any(k.startswith("flux_http_requests_total{") and 'code="202"' in k
               and 'method="POST"' in k for k in samples), text
    assert any(k.startswith("flux_http_request_duration_seconds_bucket{") for k in samples), text
    # Route labels are templates, not raw paths (bounded cardinality).
    assert not any(job_id in k for k in samples), f"a job id leaked into a label:\n{text}"


def test_openapi_lints_and_docs_render(shared_cp, tmp_path):
    cp = shared_cp
    response = cp.api.get("/openapi.json", auth=False)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    document = response.json()
    assert str(document.get("openapi", "")).startswith("3."), document.get("openapi")
    expected = {
        "/api/v1/jobs": {"post", "get"},
        "/api/v1/jobs/{id}": {"get"},
        "/api/v1/jobs/{id}/cancel": {"post"},
        "/api/v1/jobs/{id}/stream": {"get"},
        "/api/v1/workers/status": {"get"},
        "/api/v1/presets": {"get"},
        "/health": {"get"},
        "/ready": {"get"},
        "/metrics": {"get"},
    }
    documented = {path: {m for m in item if m in ("get", "post", "put", "delete", "patch")}
                  for path, item in document["paths"].items()}
    for path, methods in expected.items():
        # The id parameter may be named differently; compare the shape.
        shape = re.sub(r"\{[^}]*\}", "{}", path)
        match = [p for p in documented if re.sub(r"\{[^}]*\}", "{}", p) == shape]
        assert match, f"{path} missing from /openapi.json paths {sorted(documented)}"
        assert methods <= documented[match[0]], f"{path}: {documented[match[0]]}, want {methods}"

    saved = tmp_path / "openapi.json"
    saved.write_bytes(response.content)
    lint = subprocess.run(["bash", str(paths.OPENAPI_LINT), str(paths.REDOCLY_BIN), str(saved)],
                          capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, f"redocly lint failed:\n{lint.stdout}\n{lint.stderr}"

    docs = cp.api.get("/docs", auth=False)
    assert docs.status_code == 200, docs.text[:500]
    assert docs.headers["Content-Type"].startswith("text/html"), docs.headers
    page = docs.text.lower()
    assert "<html" in page and "openapi.json" in page, docs.text[:2000]


def test_connections_keep_alive_limits_and_silent_clients(shared_cp):
    cp = shared_cp
    # Several requests on one kept-alive connection.
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {cp.api_key}"
        for path in ("/api/v1/jobs", "/api/v1/presets", "/health", "/api/v1/jobs"):
            assert session.get(cp.base_url + path, timeout=10).status_code == 200, path

    # Oversized headers are refused, not buffered without end.
    big = cp.api.get("/health", auth=False, headers={"X-Padding": "a" * 20000})
    assert_error(big, 431, "header_too_large")

    # Clients that connect and never finish their request do not hold the
    # server: others are served meanwhile, and the silent ones are cut off.
    silent = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", cp.port), timeout=30)
        sock.sendall(b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\n")
        silent.append(sock)
    started = time.monotonic()
    assert cp.api.get("/api/v1/jobs").status_code == 200
    assert time.monotonic() - started < 2, "a request waited behind silent clients"
    for sock in silent:
        try:
            while sock.recv(4096):
                pass  # an error response before the close is fine
        except (socket.timeout, TimeoutError):
            pytest.fail("a silent client was still connected 30 s later")
        except ConnectionResetError:
            pass
        finally:
            sock.close()
    took = time.monotonic() - started
    assert took < 20, f"silent clients were disconnected only after {took:.1f}s"


def test_concurrent_retries_with_one_idempotency_key_get_one_job(cp_factory):
    """Submissions are committed in shared transactions: retries of one
    request racing each other (and other jobs) land in the same batch, yet
    every retry is answered with the one job stored, and the other jobs are
    stored once each."""
    # Nobody listens at the worker address: every job stays queued.
    cp = cp_factory([f"127.0.0.1:{free_port()}"], env={"WORKER_STARTUP_TIMEOUT": "1"})
    body = job_body("http://127.0.0.1:9/in.mp4", "retries/out.mp4")
    answers, problems = [], []
    lock = threading.Lock()
    start = threading.Barrier(12)

    def client(n):
        start.wait()
        for i in range(5):
            # Even clients retry one order; odd ones send their own jobs.
            key = "order-7" if n % 2 == 0 else f"own-{n}-{i}"
            response = cp.api.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": key})
            with lock:
                if response.status_code == 202:
                    answers.append((key, response.json()["job_id"]))
                else:
                    problems.append(f"{response.status_code} {response.text}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not problems, problems[:3]
    retried = {job_id for key, job_id in answers if key == "order-7"}
    assert len(retried) == 1, f"one Idempotency-Key gave {len(retried)} jobs"
    own = [job_id for key, job_id in answers if key != "order-7"]
    assert len(own) == 30 and len(set(own)) == 30
    stored = cp.api.all_job_ids()
    assert sorted(stored) == sorted(retried | set(own)), "exactly the answered jobs are stored"
