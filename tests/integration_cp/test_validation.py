"""Every validation rule of SPEC §3.1: its status, machine code and field, and
nothing stored for a refused request. The 64 KiB body cap, Idempotency-Key,
unknown fields ignored, and the accepted boundaries of each rule.

Two control planes share one module:
- `strict` has a real (local storage) worker, so it knows which storage is
  served; ALLOW_PRIVATE_INPUTS is off. It is only ever sent requests that must
  be refused, so its job list must stay empty.
- `parking` has ALLOW_PRIVATE_INPUTS off too, but its only worker address has
  nobody listening: what it accepts stays queued, and the boundary cases can
  be checked by what it stores.
"""

import json
import threading

import pytest

from conftest import local_worker_env
from cpharness.api import describe
from cpharness.checks import assert_error, dump
from harness.ports import free_port

PUBLIC_INPUT = "https://93.184.216.34/source.mp4"  # a literal public address: no DNS needed
PUBLIC_HOOK = "https://93.184.216.34/hook"


def valid(**changes) -> dict:
    body = {"input_url": PUBLIC_INPUT, "preset": "480p_h264",
            "output": {"storage": "local", "path": "outputs/video_123.mp4"}}
    for key, value in changes.items():
        if key.startswith("output_"):
            name = key[len("output_"):]
            if value is _ABSENT:
                body["output"].pop(name, None)
            else:
                body["output"][name] = value
        elif value is _ABSENT:
            body.pop(key, None)
        else:
            body[key] = value
    return body


_ABSENT = object()


@pytest.fixture(scope="module")
def strict(module_worker_factory, module_cp_factory, tmp_path_factory):
    worker = module_worker_factory(env=local_worker_env(tmp_path_factory.mktemp("out")),
                                   name="localw")
    cp = module_cp_factory([worker], env={"ALLOW_PRIVATE_INPUTS": "false"}, name="strict")
    # The control plane learns which storage its workers serve from their
    # status; ask once so that output_storage_unavailable can be decided.
    assert [w["storage_types"] for w in cp.api.workers()] == [["local"]]
    return cp


@pytest.fixture(scope="module")
def parking(module_cp_factory):
    return module_cp_factory([f"127.0.0.1:{free_port()}"],
                             env={"ALLOW_PRIVATE_INPUTS": "false", "WORKER_STARTUP_TIMEOUT": "1"},
                             name="parking")


@pytest.fixture
def nothing_stored(strict):
    yield
    listed = strict.api.list_jobs(limit=200)
    assert listed["jobs"] == [], f"a refused request was stored:\n{dump(listed)}"


def post_raw(cp, data: bytes, headers=None):
    headers = dict(headers or {})
    headers.setdefault("Content-Type", "application/json")
    return cp.api.post("/api/v1/jobs", data=data, headers=headers)


REFUSED = [
    # (case id, body, code, field)
    ("input_missing", valid(input_url=_ABSENT), "input_url_required", "input_url"),
    ("input_null", valid(input_url=None), "input_url_required", "input_url"),
    ("input_empty", valid(input_url=""), "input_url_required", "input_url"),
    ("input_number", valid(input_url=42), "input_url_invalid", "input_url"),
    ("input_ftp", valid(input_url="ftp://93.184.216.34/a.mp4"), "input_url_scheme_forbidden",
     "input_url"),
    ("input_gopher", valid(input_url="gopher://93.184.216.34/a"), "input_url_scheme_forbidden",
     "input_url"),
    ("input_concat", valid(input_url="concat:a.mp4|b.mp4"), "input_url_scheme_forbidden",
     "input_url"),
    ("input_data", valid(input_url="data:video/mp4;base64,AAAA"), "input_url_scheme_forbidden",
     "input_url"),
    ("input_pipe", valid(input_url="pipe:0"), "input_url_scheme_forbidden", "input_url"),
    ("input_subfile", valid(input_url="subfile:,,start,0,end,0,,:in.mp4"),
     "input_url_scheme_forbidden", "input_url"),
    ("input_file_without_dir", valid(input_url="file:///etc/passwd"), "input_url_scheme_forbidden",
     "input_url"),
    ("input_bare_path", valid(input_url="/etc/passwd"), "input_url_scheme_forbidden", "input_url"),
    ("input_loopback", valid(input_url="http://127.0.0.1/a.mp4"), "input_url_address_forbidden",
     "input_url"),
    ("input_localhost", valid(input_url="http://localhost:8080/a.mp4"),
     "input_url_address_forbidden", "input_url"),
    ("input_loopback_short", valid(input_url="http://127.1/a.mp4"), "input_url_address_forbidden",
     "input_url"),
    ("input_loopback_decimal", valid(input_url="http://2130706433/a.mp4"),
     "input_url_address_forbidden", "input_url"),
    ("input_loopback_hex", valid(input_url="http://0x7f000001/a.mp4"),
     "input_url_address_forbidden", "input_url"),
    ("input_loopback_octal", valid(input_url="http://0177.0.0.1/a.mp4"),
     "input_url_address_forbidden", "input_url"),
    ("input_ipv6_loopback", valid(input_url="http://[::1]/a.mp4"), "input_url_address_forbidden",
     "input_url"),
    ("input_ipv4_mapped", valid(input_url="http://[::ffff:127.0.0.1]/a.mp4"),
     "input_url_address_forbidden", "input_url"),
    ("input_unspecified", valid(input_url="http://0.0.0.0/a.mp4"), "input_url_address_forbidden",
     "input_url"),
    ("input_private_10", valid(input_url="https://10.1.2.3/a.mp4"), "input_url_address_forbidden",
     "input_url"),
    ("input_private_192", valid(input_url="https://192.168.0.10/a.mp4"),
     "input_url_address_forbidden", "input_url"),
    ("input_private_172", valid(input_url="https://172.16.5.4/a.mp4"),
     "input_url_address_forbidden", "input_url"),
    ("input_link_local_metadata", valid(input_url="http://169.254.169.254/latest/meta-data/"),
     "input_url_address_forbidden", "input_url"),
    ("input_ipv6_unique_local", valid(input_url="http://[fd00::1]/a.mp4"),
     "input_url_address_forbidden", "input_url"),
    ("preset_missing", valid(preset=_ABSENT), "preset_required", "preset"),
    ("preset_empty", valid(preset=""), "preset_required", "preset"),
    ("preset_unknown", valid(preset="4k_prores"), "preset_unknown", "preset"),
    ("preset_number", valid(preset=720), "preset_unknown", "preset"),
    ("output_missing", valid(output=_ABSENT), "output_required", "output"),
    ("output_string", valid(output="s3://bucket/key"), "output_invalid", "output"),
    ("storage_missing", valid(output_storage=_ABSENT), "output_storage_invalid", "output.storage"),
    ("storage_gcs", valid(output_storage="gcs"), "output_storage_invalid", "output.storage"),
    ("storage_not_served", valid(output_storage="s3"), "output_storage_unavailable",
     "output.storage"),
    ("path_missing", valid(output_path=_ABSENT), "output_path_invalid", "output.path"),
    ("path_empty", valid(output_path=""), "output_path_invalid", "output.path"),
    ("path_absolute", valid(output_path="/etc/out.mp4"), "output_path_invalid", "output.path"),
    ("path_dotdot", valid(output_path="a/../../b.mp4"), "output_path_invalid", "output.path"),
    ("path_only_dotdot", valid(output_path=".."), "output_path_invalid", "output.path"),
    ("path_trailing_dotdot", valid(output_path="a/.."), "output_path_invalid", "output.path"),
    ("path_control_char", valid(output_path="a\x01b.mp4"), "output_path_invalid", "output.path"),
    ("path_newline", valid(output_path="a\nb.mp4"), "output_path_invalid", "output.path"),
    ("path_too_long", valid(output_path="a" * 1021 + ".mp4"), "output_path_invalid",
     "output.path"),
    ("path_number", valid(output_path=7), "output_path_invalid", "output.path"),
    ("type_unknown", valid(output_type="mp4"), "output_type_invalid", "output.type"),
    ("type_number", valid(output_type=1), "output_type_invalid", "output.type"),
    ("type_mismatch_hls", valid(output_type="hls"), "output_type_mismatch", "output.type"),
    ("type_mismatch_single", valid(preset="hls_720p", output_type="single"),
     "output_type_mismatch", "output.type"),
    ("metadata_not_object", valid(output_metadata=["a"]), "metadata_invalid", "output.metadata"),
    ("metadata_33_entries", valid(output_metadata={f"k{i}": "v" for i in range(33)}),
     "metadata_invalid", "output.metadata"),
    ("metadata_bad_key", valid(output_metadata={"bad key": "v"}), "metadata_invalid",
     "output.metadata.bad key"),
    ("metadata_key_65", valid(output_metadata={"k" * 65: "v"}), "metadata_invalid", None),
    ("metadata_empty_key", valid(output_metadata={"": "v"}), "metadata_invalid", None),
    ("metadata_value_1025", valid(output_metadata={"title": "v" * 1025}), "metadata_invalid",
     "output.metadata.title"),
    ("metadata_value_number", valid(output_metadata={"n": 1}), "metadata_invalid",
     "output.metadata.n"),
    ("callback_number", valid(callback_url=5), "callback_url_invalid", "callback_url"),
    ("callback_ftp", valid(callback_url="ftp://93.184.216.34/hook"),
     "callback_url_scheme_forbidden", "callback_url"),
    ("callback_file", valid(callback_url="file:///tmp/hook"), "callback_url_scheme_forbidden",
     "callback_url"),
    ("callback_loopback", valid(callback_url="http://127.0.0.1:9/hook"),
     "callback_url_address_forbidden", "callback_url"),
    ("callback_metadata", valid(callback_url="http://169.254.169.254/hook"),
     "callback_url_address_forbidden", "callback_url"),
    ("callback_private", valid(callback_url="https://10.0.0.8/hook"),
     "callback_url_address_forbidden", "callback_url"),
    ("priority_11", valid(priority=11), "priority_invalid", "priority"),
    ("priority_minus_11", valid(priority=-11), "priority_invalid", "priority"),
    ("priority_float", valid(priority=1.5), "priority_invalid", "priority"),
    ("priority_string", valid(priority="1"), "priority_invalid", "priority"),
    ("priority_bool", valid(priority=True), "priority_invalid", "priority"),
    ("priority_huge", valid(priority=2 ** 70), "priority_invalid", "priority"),
]


@pytest.mark.parametrize("body,code,field", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_each_rule_refuses_with_its_code(strict, nothing_stored, body, code, field):
    response = strict.api.post("/api/v1/jobs", json=body)
    error = assert_error(response, 400, code, field)
    if field is None:
        assert error.get("field", "").startswith("output.metadata"), error


@pytest.mark.parametrize("data", [b"{not json", b"", b"[]", b"\"a string\"", b"null",
                                  b'{"input_url": "' + PUBLIC_INPUT.encode() + b'", "preset": "480p_h264", "preset": "720p_h264", '
                                  b'"output": {"storage": "local", "path": "a.mp4"}}',
                                  b'{"input_url": "\xff\xfe"}',
                                  b"[" * 10000 + b"]" * 10000],
                         ids=["truncated", "empty", "array", "string", "null", "duplicate_key",
                              "invalid_utf8", "deep_nesting"])
def test_not_json_is_invalid_json(strict, nothing_stored, data):
    assert_error(post_raw(strict, data), 400, "invalid_json")


def test_body_over_64_kib_is_413(strict, parking, nothing_stored):
    base = json.dumps(valid(padding="")).encode()
    exact = json.dumps(valid(padding="x" * (65536 - len(base)))).encode()
    assert len(exact) == 65536
    over = json.dumps(valid(padding="x" * (65537 - len(base)))).encode()
    assert len(over) == 65537
    assert_error(post_raw(strict, over), 413, "body_too_large")
    # Announced by Content-Length or not: a chunked body is capped too.
    chunked = strict.api.post("/api/v1/jobs", data=iter([over[:40000], over[40000:]]),
                              headers={"Content-Type": "application/json"})
    assert_error(chunked, 413, "body_too_large")
    # Exactly 64 KiB is within the limit (and the unknown "padding" is ignored).
    response = post_raw(parking, exact)
    assert response.status_code == 202, describe(response)
    doc = parking.api.job(response.json()["job_id"])
    assert doc["status"] == "queued" and "padding" not in doc, dump(doc)


def test_boundaries_are_accepted(parking):
    before = set(parking.api.all_job_ids())
    metadata = {f"{'k' * 60}{i:02d}"[:64]: "v" * 1024 for i in range(32)}
    accepted = {
        "path_1024_bytes": valid(output_path="/".join(["d" * 200] * 5) + "/" + "e" * 19),
        "metadata_32_full": valid(output_metadata=metadata),
        "priority_10": valid(priority=10),
        "priority_minus_10": valid(priority=-10),
        "type_matching": valid(output_type="single"),
        "type_hls_for_hls": valid(preset="hls_720p", output_path="hls/dir", output_type="hls"),
        "nulls_are_absent": valid(callback_url=None, priority=None, output_type=None,
                                  output_metadata=None),
        "unknown_fields": valid(future_field={"x": 1}, output_future=True),
        "callback_public": valid(callback_url=PUBLIC_HOOK),
        "s3_input": valid(input_url="s3://bucket/key.mp4"),
    }
    assert len(accepted["path_1024_bytes"]["output"]["path"].encode()) == 1024
    ids = {}
    for name, body in accepted.items():
        response = parking.api.post("/api/v1/jobs", json=body)
        assert response.status_code == 202, f"{name}: {describe(response)}"
        ids[name] = response.json()["job_id"]
    docs = {name: parking.api.job(job_id) for name, job_id in ids.items()}
    assert all(d["status"] == "queued" for d in docs.values()), dump(docs)
    assert docs["metadata_32_full"]["output"]["metadata"] == metadata
    assert docs["priority_10"]["priority"] == 10 and docs["priority_minus_10"]["priority"] == -10
    assert docs["nulls_are_absent"]["priority"] == 0
    assert docs["nulls_are_absent"]["callback_url"] is None
    assert docs["callback_public"]["callback_url"] == PUBLIC_HOOK
    assert "future_field" not in docs["unknown_fields"], dump(docs["unknown_fields"])
    assert set(parking.api.all_job_ids()) - before == set(ids.values())


def test_idempotency_key_returns_the_first_job(parking):
    before = set(parking.api.all_job_ids())
    body = valid(output_path="idem/a.mp4")
    first = parking.api.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == 202, describe(first)
    again = parking.api.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
    assert again.status_code == 202, describe(again)
    assert again.json() == first.json(), f"{first.json()} vs {again.json()}"
    other = parking.api.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "order-43"})
    assert other.status_code == 202 and other.json()["job_id"] != first.json()["job_id"]
    plain = parking.api.post("/api/v1/jobs", json=body)
    assert plain.status_code == 202 and plain.json()["job_id"] not in (
        first.json()["job_id"], other.json()["job_id"])
    added = set(parking.api.all_job_ids()) - before
    assert added == {first.json()["job_id"], other.json()["job_id"], plain.json()["job_id"]}, added
    assert_error(parking.api.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "k" * 201}),
                 400, "idempotency_key_invalid")
    assert set(parking.api.all_job_ids()) - before == added


def test_idempotency_key_under_concurrent_retries(parking):
    """A client's retries racing each other still make one job."""
    before = set(parking.api.all_job_ids())
    body = valid(output_path="idem/race.mp4")
    answers = []
    lock = threading.Lock()

    def post():
        response = parking.api.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "race-1"})
        with lock:
            answers.append((response.status_code, response.text))

    threads = [threading.Thread(target=post) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {code for code, _ in answers} == {202}, answers
    job_ids = {json.loads(text)["job_id"] for _, text in answers}
    assert len(job_ids) == 1, f"one key, {len(job_ids)} jobs: {job_ids}"
    assert set(parking.api.all_job_ids()) - before == job_ids


def test_pagination_is_stable_under_concurrent_inserts(parking):
    """A burst (many jobs in the same millisecond) paged with a small limit
    while new jobs keep arriving: every job exactly once, newest first."""
    burst = []
    lock = threading.Lock()

    def post(n):
        for i in range(5):
            response = parking.api.post("/api/v1/jobs", json=valid(output_path=f"page/{n}-{i}.mp4"))
            assert response.status_code == 202, response.text
            with lock:
                burst.append(response.json()["job_id"])

    threads = [threading.Thread(target=post, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    existing = parking.api.all_job_ids()
    assert set(burst) <= set(existing)

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = parking.api.list_jobs(**params)
        seen += [j["job_id"] for j in page["jobs"]]
        pages += 1
        # Newer jobs arriving between pages must not shift the pages.
        response = parking.api.post("/api/v1/jobs", json=valid(output_path=f"page/late{pages}.mp4"))
        assert response.status_code == 202
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)), "a job was listed twice across pages"
    assert seen == existing, "paging while jobs arrive skipped or reordered jobs"
    created = [parking.api.job(j)["created_at"] for j in seen]
    assert created == sorted(created, reverse=True), "not newest first"
