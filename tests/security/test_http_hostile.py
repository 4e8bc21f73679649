"""HTTP-level hostile clients against the control plane, most of them on raw
sockets so that every byte is the test's: slowloris headers and bodies,
oversized and malformed requests, request smuggling, 10,000-deep JSON,
invalid UTF-8, duplicate keys, huge numbers, CRLF in metadata, path traversal
in every encoding on every route that takes a path and in output paths.

Expected outcomes: a 4xx with its code and field (or a closed connection
where HTTP leaves no room for an answer), the control plane still serving
everyone else, no sanitizer report at teardown, nothing written outside the
storage roots, and never a byte of /etc/passwd in an answer.

Duplicate keys: refused (400 invalid_json naming the key), never first- or
last-wins, documented in src/controlplane/api/validation.h.
"""

import json
import threading
import time
import uuid

import pytest

import hostile
from cpharness.api import job_body
from cpharness.checks import assert_error
from harness.jobs import job_request, new_job_id, submit
from harness.s3server import worker_env

PASSWD = hostile.PASSWD_MARKER
PUBLIC_INPUT = "https://93.184.216.34/source.mp4"


@pytest.fixture(scope="module")
def out_bucket(s3):
    return s3.create_bucket("hostile-http")


@pytest.fixture(scope="module")
def local_out(tmp_path_factory):
    return tmp_path_factory.mktemp("local-out")


@pytest.fixture(scope="module")
def worker(module_worker_factory, s3, out_bucket, local_out):
    env = worker_env(s3, out_bucket)
    env.update(LOCAL_STORAGE_DIR=str(local_out), ALLOW_PRIVATE_INPUTS="true")
    return module_worker_factory(env=env, name="http-hostile")


@pytest.fixture(scope="module")
def cp(module_cp_factory, worker):
    return module_cp_factory([worker], name="cp-http-hostile")


def auth(cp) -> str:
    return f"Authorization: Bearer {cp.api_key}\r\n"


def request(method: str, target: str, cp, headers: str = "", body: bytes = b"") -> bytes:
    head = (f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth(cp)}{headers}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + body


def post_json(cp, data: bytes):
    return cp.api.post("/api/v1/jobs", data=data, headers={"Content-Type": "application/json"})


def valid(**top) -> dict:
    body = job_body(PUBLIC_INPUT, "hostile/out.mp4")
    body.update(top)
    return body


# ---- slow clients (started first, checked last: they overlap the module) ---------------


class Trickler(threading.Thread):
    """Sends `prefix`, then one byte of `drip` every `pause` seconds until the
    server closes the connection; records when that happened."""

    def __init__(self, port: int, prefix: bytes, drip: bytes, pause: float = 0.5):
        super().__init__(daemon=True)
        self.client = hostile.RawHttp(port, timeout=5)
        self.prefix, self.drip, self.pause = prefix, drip, pause
        self.closed_after = None
        self.answer = b""
        self.started_at = time.monotonic()
        self.stop = threading.Event()

    def run(self):
        self.client.send(self.prefix)
        i = 0
        while not self.stop.is_set():
            if self.drip and not self.client.send(self.drip[i % len(self.drip):][:1]):
                break
            i += 1
            if self.client.closed_by_peer(self.pause):
                break
        else:
            return
        self.answer = self.client.buffer
        self.closed_after = time.monotonic() - self.started_at


@pytest.fixture(scope="module")
def slow_clients(cp):
    port = cp.port
    clients = []
    for _ in range(20):
        # Headers that never end.
        clients.append(Trickler(port, b"GET /health HTTP/1.1\r\nHost: x\r\n", b"X-Slow: aaaaaaaa\r\n"))
        # A body that never ends (announced 4000 bytes, sent one by one).
        clients.append(Trickler(port, request("POST", "/api/v1/jobs", cp,
                                              "Content-Type: application/json\r\n",
                                              b"").replace(b"Content-Length: 0",
                                                           b"Content-Length: 4000"), b"{"))
        # Connected, and silent.
        clients.append(Trickler(port, b"", b"", pause=0.5))
    for client in clients:
        client.start()
    yield clients
    for client in clients:
        client.stop.set()
        client.client.close()


def test_slow_clients_do_not_keep_others_waiting(slow_clients, cp):
    assert all(c.closed_after is None for c in slow_clients[:3]), "slow clients closed at once"
    for _ in range(10):
        response = cp.api.get("/health", auth=False, timeout=5)
        assert response.status_code == 200
        assert cp.api.get("/api/v1/jobs", timeout=5).status_code == 200


# ---- HEAD --------------------------------------------------------------------------------


def test_connection_flood_is_refused_with_503_beyond_the_cap(module_cp_factory, worker):
    """25 idle sockets against HTTP_MAX_CONNECTIONS=20: at most 20 are kept,
    every other one is answered 503 too_many_connections with Retry-After and
    closed, never left hanging; once the flood goes away the control plane
    serves again. (The harness's own readiness connections may hold a place
    for a moment, so the count refused is at least 5, not exactly 5.)"""
    capped = module_cp_factory([worker], env={"HTTP_MAX_CONNECTIONS": "20"}, name="cp-capped")
    flood = [hostile.RawHttp(capped.port) for _ in range(25)]
    try:
        time.sleep(0.5)  # the refusals are written at once; the kept ones stay silent
        refused = []
        for sock in flood:
            answer = sock.read_response(timeout=0.05)
            if answer is not None:
                refused.append(answer)
        assert len(refused) >= 5, f"{len(refused)} of 25 refused with a cap of 20"
        for status, headers, body in refused:
            assert status == 503
            assert headers.get("retry-after") == "1"
            assert json.loads(body)["code"] == "too_many_connections"
    finally:
        for sock in flood:
            sock.close()
    deadline = time.monotonic() + 5
    answer = None
    while time.monotonic() < deadline:
        answer = hostile.exchange(capped.port, request("GET", "/health", capped), timeout=5)
        if answer and answer[0] == 200:
            break
        time.sleep(0.1)
    assert answer is not None and answer[0] == 200, answer


def test_head_health_is_200_without_a_body(cp):
    """Load balancers probe with HEAD. The answer carries the GET's headers
    and no body, and a kept-alive connection stays in step."""
    get = cp.api.get("/health", auth=False)
    client = hostile.RawHttp(cp.port)
    try:
        client.send(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = client.read_response(head=True)
        assert (status, body) == (200, b"")
        assert headers["content-length"] == str(len(get.content)), headers
        status, _, body = client.read_response()
        assert status == 200 and json.loads(body) == get.json(), (status, body, client.buffer)
    finally:
        client.close()


@pytest.mark.parametrize("target,with_key,status", [
    ("/api/v1/jobs", False, 401), ("/api/v1/jobs", True, 200), ("/api/v1/presets", True, 200),
    ("/metrics", False, 200), ("/ready", False, 200), ("/nowhere", True, 404),
    ("/api/v1/jobs/job_x/stream", True, 405), ("/api/v1/jobs/%2e%2e", True, 400),
])
def test_head_elsewhere_answers_like_get_without_a_body(target, with_key, status, cp):
    headers = f"Host: x\r\n{auth(cp) if with_key else ''}Connection: close\r\n\r\n"
    client = hostile.RawHttp(cp.port)
    try:
        client.send(f"HEAD {target} HTTP/1.1\r\n{headers}".encode())
        answer = client.read_response(head=True)
        assert answer is not None and answer[0] == status, answer
        assert client.closed_by_peer(5), "the connection was not closed as asked"
        assert client.buffer == b"", f"a HEAD answer carried a body: {client.buffer[:200]!r}"
    finally:
        client.close()


# ---- oversized and malformed requests ------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Many: b\r\n" * 2000 + b"\r\n",
    b"GET /health?" + b"q" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /" + b"a/" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
], ids=["one_big_header", "many_headers", "long_query", "long_path"])
def test_oversized_headers_are_431(data, cp):
    answer = hostile.exchange(cp.port, data)
    assert answer is not None, "no answer, just a closed connection"
    status, _, body = answer
    assert status == 431 and json.loads(body)["code"] == "header_too_large", (status, body)


MALFORMED = [
    ("content_length_and_chunked", b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("two_content_lengths", b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
     b"Content-Length: 40\r\n\r\n{}"),
    ("negative_content_length", b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
    ("content_length_float", b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n"),
    # Smuggling: a Transfer-Encoding whose last coding is not chunked.
    ("transfer_encoding_gzip", b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: gzip\r\n\r\n"),
    ("transfer_encoding_xchunked", b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    ("transfer_encoding_chunked_then_gzip", b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n"),
    ("transfer_encoding_identity", b"GET /health HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: identity\r\n\r\n"),
    ("content_length_plus", b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}"),
    ("bare_cr", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"),
    ("nul_in_header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
    ("space_in_header_name", b"GET /health HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n"),
    ("space_before_colon", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n"),
    ("bad_version", b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n"),
    ("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ("nul_in_method", b"G\x00T /health HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("space_in_target", b"GET /he alth HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("bad_chunk_size", b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\n{}\r\n0\r\n\r\n"),
]


@pytest.mark.parametrize("data", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_requests_are_400_and_closed(data, cp):
    """(Two things RFC 9112 allows are accepted, as Beast does: a
    Content-Length list of identical values, and obs-fold unfolded to a space.)"""
    client = hostile.RawHttp(cp.port)
    try:
        client.send(data)
        answer = client.read_response()
        assert answer is not None, "closed without an answer"
        status, _, body = answer
        assert status == 400 and json.loads(body)["code"] == "bad_request", (status, body)
        assert client.closed_by_peer(5), "the connection stayed open after a malformed request"
    finally:
        client.close()


@pytest.mark.parametrize("data", [
    b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
], ids=["absolute_form", "asterisk", "connect"])
def test_proxy_style_targets_are_refused(data, cp):
    status, _, body = hostile.exchange(cp.port, data)
    assert status == 400 and json.loads(body)["code"] == "bad_request", (status, body)


@pytest.mark.parametrize("tail,piece,status,code", [
    (b"2\r\n{}\r\n0\r\n", b"X-Trailer: vvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\r\n", 400, "bad_request"),
    (b"2", b";ext=vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv", 400, "bad_request"),
    (b"", b"1;e=" + b"v" * 200 + b"\r\nx\r\n", 413, "body_too_large"),
], ids=["endless_trailers", "endless_chunk_extension", "long_extension_on_every_chunk"])
def test_what_chunks_carry_besides_data_is_bounded(tail, piece, status, code, cp):
    """Trailer fields and chunk extensions are not body data: they used to be
    read and kept for as long as the client sent them (megabytes per
    connection until the 30 s body timeout)."""
    client = hostile.RawHttp(cp.port)
    try:
        client.send(request("POST", "/api/v1/jobs", cp, "Transfer-Encoding: chunked\r\n")
                    .replace(b"Content-Length: 0\r\n", b"") + tail)
        sent = 0
        # Keep sending until the answer shows up (it comes while the client
        # is still sending: the server stops reading at its cap).
        while sent < 8_000_000 and b"\r\n\r\n" not in client.buffer:
            if not client.send(piece * 100):
                break
            sent += len(piece) * 100
            client._fill(time.monotonic() + 0.001)
        answer = client.read_response()
        assert answer is not None, f"no answer after {sent} bytes"
        assert (answer[0], json.loads(answer[2])["code"]) == (status, code), answer
    finally:
        client.close()


@pytest.mark.parametrize("size,status,code", [
    (b"ffffffff", 413, "body_too_large"),            # 4 GiB announced: over the cap
    (b"fffffffffffffffff", 400, "bad_request"),      # past 64 bits: not a size at all
])
def test_huge_chunk_sizes(size, status, code, cp):
    data = (b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + size + b"\r\n{}")
    answer = hostile.exchange(cp.port, data)
    assert answer is not None and (answer[0], json.loads(answer[2])["code"]) == (status, code), answer


# ---- JSON bodies ---------------------------------------------------------------------------


def nested_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("data,field", [
    (nested_objects(10000), "a" + ".a" * 63),
    (b'{"input_url": "' + PUBLIC_INPUT.encode() + b'", "output": {"metadata": '
     + nested_objects(10000) + b"}}", "output.metadata" + ".a" * 62),
    (b'{"x": ' + b"[" * 10000 + b"]" * 10000 + b"}", "x" + "[0]" * 63),
], ids=["objects", "inside_metadata", "arrays_in_a_field"])
def test_ten_thousand_deep_json_is_invalid_json(data, field, cp):
    assert_error(post_json(cp, data), 400, "invalid_json", field)


def body_with(raw_value: bytes, where: str) -> bytes:
    """A valid job request whose member `where` holds raw_value (raw JSON bytes)."""
    fields = {
        "input_url": b'"' + PUBLIC_INPUT.encode() + b'"',
        "preset": b'"480p_h264"',
        "output.path": b'"hostile/out.mp4"',
        "output.metadata.title": b'"t"',
        "callback_url": b'"https://93.184.216.34/hook"',
        "priority": b"0",
    }
    fields[where] = raw_value
    return (b'{"input_url": ' + fields["input_url"] + b', "preset": ' + fields["preset"]
            + b', "output": {"storage": "local", "path": ' + fields["output.path"]
            + b', "metadata": {"title": ' + fields["output.metadata.title"] + b"}}"
            + b', "callback_url": ' + fields["callback_url"] + b', "priority": ' + fields["priority"]
            + b"}")


INVALID_UTF8 = [
    ("lone_continuation", b'"\x80abc"'), ("overlong_dot", b'"\xc0\xae\xc0\xae/x"'),
    ("overlong_slash", b'"..\xc0\xafetc"'), ("overlong_3_bytes", b'"\xe0\x80\xae"'),
    ("utf8_surrogate", b'"\xed\xa0\x80"'), ("truncated_sequence", b'"\xe2\x82"'),
    ("invalid_byte_ff", b'"\xff\xfe"'), ("beyond_u10ffff", b'"\xf4\x90\x80\x80"'),
    ("lone_surrogate_escape", b'"\\udc00x"'), ("high_surrogate_then_text", b'"\\ud83dx"'),
]


@pytest.mark.parametrize("where", ["input_url", "preset", "output.path", "output.metadata.title",
                                   "callback_url"])
@pytest.mark.parametrize("value", [v[1] for v in INVALID_UTF8], ids=[v[0] for v in INVALID_UTF8])
def test_invalid_utf8_is_invalid_json_naming_the_field(value, where, cp):
    assert_error(post_json(cp, body_with(value, where)), 400, "invalid_json", where)


@pytest.mark.parametrize("data,field", [
    (b'{"preset": "480p_h264", "pre\\u0073et": "hls_720p"}', "preset"),
    (b'{"input_url": "' + PUBLIC_INPUT.encode() + b'", "preset": "480p_h264", "output": '
     b'{"storage": "local", "path": "a.mp4", "path": "../../etc/cron.d/x"}}', "output.path"),
    (b'{"input_url": "' + PUBLIC_INPUT.encode() + b'", "preset": "480p_h264", "output": '
     b'{"storage": "local", "path": "a.mp4", "metadata": {"k": "1", "k": "2"}}}',
     "output.metadata.k"),
    (b'{"input_url": "' + PUBLIC_INPUT.encode() + b'", "input_url": "http://127.0.0.1/"}',
     "input_url"),
    (b'{"priority": 1, "priority": 10}', "priority"),
], ids=["escaped_spelling", "output_path", "metadata_key", "input_url", "priority"])
def test_duplicate_keys_are_refused_naming_the_key(data, field, cp):
    assert_error(post_json(cp, data), 400, "invalid_json", field)


@pytest.mark.parametrize("raw,code", [
    (b"1e400", "invalid_json"), (b"-1e400", "invalid_json"), (b"1" * 400, "invalid_json"),
    (str(2 ** 64 + 1).encode(), "priority_invalid"), (str(-2 ** 63 - 1).encode(), "priority_invalid"),
    (str(2 ** 64 - 1).encode(), "priority_invalid"), (b"1e-400", "priority_invalid"),
    (b"10.000000000000001", "priority_invalid"), (b"1E1", "priority_invalid"),
])
def test_huge_numbers_name_the_field(raw, code, cp):
    assert_error(post_json(cp, body_with(raw, "priority")), 400, code, "priority")


def test_huge_numbers_elsewhere(cp):
    data = body_with(b'"t"', "output.metadata.title").replace(b'"title": "t"', b'"n": 1e400')
    assert_error(post_json(cp, data), 400, "invalid_json", "output.metadata.n")
    unknown = body_with(b"0", "priority")[:-1] + b', "future": 1e999}'
    assert_error(post_json(cp, unknown), 400, "invalid_json", "future")
    for limit in ("1e400", str(2 ** 64 + 1), "-1", "0x10", "1.0", "%00"):
        assert_error(cp.api.get(f"/api/v1/jobs?limit={limit}"), 400,
                     "bad_request" if limit == "%00" else "limit_invalid",
                     None if limit == "%00" else "limit")


@pytest.mark.parametrize("cursor", ["%ff%fe", "A" * 5000, "..%2f..%2fetc%2fpasswd", "%27%20OR%201=1--",
                                    "eyJ0IjoxZTQwMH0"])
def test_garbage_cursors_are_refused(cursor, cp):
    assert_error(cp.api.get(f"/api/v1/jobs?cursor={cursor}"), 400, "cursor_invalid", "cursor")


# ---- CRLF and other control characters in what ends up in headers -------------------------


@pytest.mark.parametrize("metadata,field", [
    ({"title": "a\r\nX-Injected: 1"}, "output.metadata.title"),
    ({"title": "a\nb"}, "output.metadata.title"),
    ({"title": "a\rb"}, "output.metadata.title"),
    ({"title": "a\u0000b"}, "output.metadata.title"),
    ({"title": "a\u007fb"}, "output.metadata.title"),
    ({"title": "a\tb"}, "output.metadata.title"),
    ({"x\r\nX-Injected": "1"}, None),
    ({"x:y": "1"}, None),
    ({"x y": "1"}, None),
])
def test_crlf_and_control_characters_in_metadata(metadata, field, cp):
    body = assert_error(cp.api.post("/api/v1/jobs", json=valid(output={
        "storage": "local", "path": "hostile/out.mp4", "metadata": metadata})), 400,
        "metadata_invalid", field)
    assert body["field"].startswith("output.metadata")


def test_crlf_in_other_header_bound_fields(cp):
    assert_error(cp.api.post("/api/v1/jobs", json=valid(callback_url="https://93.184.216.34/h\r\nX-A: 1")),
                 400, "callback_url_invalid", "callback_url")
    assert_error(cp.api.post("/api/v1/jobs", json=valid(input_url=PUBLIC_INPUT + "\r\nX-A: 1")), 400,
                 "input_url_invalid", "input_url")


def test_worker_refuses_control_characters_in_metadata_itself(worker):
    """Over gRPC, with no control plane in front: refused at submission."""
    for value in ("a\r\nX-Injected: 1", "a\nb", "a\x00b"):
        request = job_request(new_job_id("meta"), PUBLIC_INPUT, "480p_h264", "hostile/m.mp4",
                              metadata={"title": value})
        error = submit(worker, request).expect_rpc_error("INVALID_ARGUMENT")
        codes = dict(error.trailing_metadata() or ())
        assert codes.get("flux-error-code") == "metadata_invalid", (value, codes)


def test_worker_refuses_del_in_metadata(worker):
    request = job_request(new_job_id("meta"), PUBLIC_INPUT, "480p_h264", "hostile/m.mp4",
                          metadata={"title": "a\x7fb"})
    error = submit(worker, request).expect_rpc_error("INVALID_ARGUMENT")
    assert dict(error.trailing_metadata() or ()).get("flux-error-code") == "metadata_invalid"


# ---- path traversal ------------------------------------------------------------------------

TRAVERSALS = ["..", "%2e%2e", "%2E%2e", ".%2e", "..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2fetc",
              "..%5c..%5cetc", "..\\..\\etc", "%c0%ae%c0%ae", "%c0%ae%c0%ae%c0%afetc",
              "%e0%80%ae%e0%80%ae", "..%c0%af..%c0%afetc", "%u002e%u002e", ".", "%2e",
              "a%00b", "a%0d%0aSet-Cookie:x=1", "%ff"]


@pytest.mark.parametrize("method,template", [
    ("GET", "/api/v1/jobs/{x}"), ("POST", "/api/v1/jobs/{x}/cancel"),
    ("GET", "/api/v1/jobs/{x}/stream"),
])
def test_traversal_on_job_routes_is_400(method, template, cp):
    for x in TRAVERSALS:
        target = template.replace("{x}", x)
        answer = hostile.exchange(cp.port, request(method, target, cp))
        assert answer is not None, target
        status, _, body = answer
        # %u002e is not an escape at all: a broken path, refused the same way.
        assert (status, json.loads(body)["code"]) == (400, "bad_request"), (target, status, body)
        assert PASSWD not in body


@pytest.mark.parametrize("method,template", [
    ("GET", "/api/v1/jobs/{x}"), ("POST", "/api/v1/jobs/{x}/cancel"),
    ("GET", "/api/v1/jobs/{x}/stream"),
])
def test_double_encoding_is_decoded_once(method, template, cp):
    """%252e%252e is the job id "%2e%2e" (decoded exactly once): no such job."""
    for x in ("%252e%252e", "%252e%252e%252fetc%252fpasswd", "%25c0%25ae"):
        status, _, body = hostile.exchange(cp.port, request(method, template.replace("{x}", x), cp))
        assert (status, json.loads(body)["code"]) == (404, "job_not_found"), (x, status, body)


@pytest.mark.parametrize("target", [
    "/../../../../etc/passwd", "/docs/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
    "/docs/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/health/..%5c..%5cetc%5cpasswd",
    "/openapi.json/%c0%ae%c0%ae/etc/passwd", "/./health", "/health/.", "/api/v1/../v1/jobs",
    "/%252e%252e/etc/passwd",
])
def test_traversal_elsewhere_never_reads_a_file(target, cp):
    status, _, body = hostile.exchange(cp.port, request("GET", target, cp))
    expected = (404, "not_found") if "%252e" in target else (400, "bad_request")
    assert (status, json.loads(body)["code"]) == expected, (target, status, body)
    assert PASSWD not in body


@pytest.mark.parametrize("path", [
    "../x.mp4", "a/../../x.mp4", "..", "a/..", "./../x.mp4", "..\\x.mp4", "a\\..\\..\\x.mp4",
    "/etc/cron.d/x.mp4", "//etc/x.mp4", "\u002e\u002e/x.mp4", "a/\u0000/x.mp4", "a\r\n/x.mp4",
])
def test_output_path_traversal_is_refused(path, cp, worker):
    body = valid(output={"storage": "local", "path": path})
    assert_error(cp.api.post("/api/v1/jobs", json=body), 400, "output_path_invalid", "output.path")
    # The worker's own check, with no control plane in front.
    request_ = job_request(new_job_id("path"), PUBLIC_INPUT, "480p_h264", path, storage="local")
    error = submit(worker, request_).expect_rpc_error("INVALID_ARGUMENT")
    assert dict(error.trailing_metadata() or ()).get("flux-error-code") == "output_path_invalid"


def test_job_id_traversal_is_refused_by_the_worker(worker):
    for job_id in ("../../etc/x", "a/b", "..\\x"):
        request_ = job_request(job_id, PUBLIC_INPUT, "480p_h264", "hostile/j.mp4", storage="local")
        error = submit(worker, request_).expect_rpc_error("INVALID_ARGUMENT")
        assert dict(error.trailing_metadata() or ()).get("flux-error-code") == "job_id_invalid"


def test_encoded_output_paths_stay_literal_inside_the_roots(cp, inputs, s3, out_bucket, local_out,
                                                            worker):
    """Percent signs in an output path are text, not escapes: the object and
    the file land under exactly that name, inside the bucket and inside
    LOCAL_STORAGE_DIR. Metadata with non-ASCII text and U+2028/U+0085 line
    separators reaches x-amz-meta-* as one value each, no header added."""
    tag = uuid.uuid4().hex[:6]
    s3_path = f"enc-{tag}/%2e%2e/%2e%2e/%252e%252e/out.mp4"
    local_path = f"enc-{tag}/..%2f..%5c%c0%ae%c0%ae/out.mp4"
    metadata = {"title": "caf\u00e9 \u2028 line\u0085sep", "note": "a: b; X-Injected: 1"}
    url = inputs.clip_url("small.mp4")
    s3_body = job_body(url, s3_path, storage="s3")
    s3_body["output"]["metadata"] = metadata
    s3_job = cp.api.submit(s3_body)
    local_job = cp.api.submit(job_body(url, local_path, storage="local"))
    for job_id in (s3_job, local_job):
        doc = cp.api.wait_job(job_id, timeout=120)
        assert doc["status"] == "completed", doc
    assert list(s3.list_objects(out_bucket, f"enc-{tag}/")) == [s3_path]
    head = s3.client().head_object(Bucket=out_bucket, Key=s3_path)
    assert set(head["Metadata"]) == {"title", "note"}, head["Metadata"]
    sent = {k: v.encode("latin-1", "replace").decode("utf-8", "replace")
            for k, v in head["Metadata"].items()}
    raw_headers = head["ResponseMetadata"]["HTTPHeaders"]
    assert "x-injected" not in raw_headers, raw_headers
    assert sent["note"] == metadata["note"] and "caf" in sent["title"], sent
    written = sorted(str(p.relative_to(local_out)) for p in local_out.rglob("*") if p.is_file())
    assert written == [local_path], written


# ---- the slow clients, at the end ----------------------------------------------------------


def test_slow_clients_were_cut_off(slow_clients, cp):
    """Every silent, slow-header and slow-body client was disconnected by the
    server's own read timeouts (header 10 s, body 30 s), while everything
    above was served. The bound here only keeps a regression from hanging."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and any(c.closed_after is None for c in slow_clients):
        time.sleep(0.2)
    still_open = [c.prefix[:40] for c in slow_clients if c.closed_after is None]
    assert not still_open, f"{len(still_open)} slow clients still connected: {still_open[:3]}"
    for client in slow_clients:
        assert PASSWD not in client.answer
    assert cp.api.get("/health", auth=False).status_code == 200
