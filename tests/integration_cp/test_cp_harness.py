"""The control plane harness on its own, without the control plane: if these
fail, the other failures of this suite say nothing about flux-controlplane."""

import hashlib
import hmac
import socket
import threading

import requests

from cpharness.sse import SseClient
from cpharness.webhooks import WebhookReceiver, signature


def serve_once(payload: bytes) -> int:
    """A one-shot server on 127.0.0.1 that answers any request with payload, then closes."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run():
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            serve_once.request = request
            for i in range(0, len(payload), 7):  # dribbled, to split lines across reads
                conn.sendall(payload[i:i + 7])
        listener.close()

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1]


def test_sse_reader_parses_the_wire_format():
    body = (b": keep-alive\n\n"
            b"id: 1\ndata: {\"a\": 1}\n\n"
            b"id: 2\r\ndata: {\"a\": 2}\r\n\r\n"
            b"id: 3\rdata: line one\rdata: line two\r\r"
            b"event: named\nid: 4\ndata:no-space\n\n"
            b"id: 5\n\n"  # no data: not an event
            b"data: unterminated")  # never dispatched: no blank line
    port = serve_once(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      b"Cache-Control: no-cache\r\n\r\n" + body)
    client = SseClient(port, "/stream", api_key="k" * 16, last_event_id=7)
    assert client.wait_head() == 200
    assert client.wait_closed(5)
    assert client.error is None, client.error
    assert client.headers["content-type"] == "text/event-stream"
    assert [e.id for e in client.events] == ["1", "2", "3", "4"]
    assert client.events[0].json() == {"a": 1} and client.events[1].json() == {"a": 2}
    assert client.events[2].data == "line one\nline two"
    assert client.events[3].event == "named" and client.events[3].data == "no-space"
    assert client.events[0].block == ["id: 1", 'data: {"a": 1}']
    assert [c for c, _ in client.comments] == ["keep-alive"]
    request = serve_once.request.decode()
    assert "Last-Event-ID: 7\r\n" in request and f"Authorization: Bearer {'k' * 16}" in request


def test_sse_reader_reports_an_error_answer():
    body = b'{"code":"job_not_found","error":"no"}'
    port = serve_once(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
    client = SseClient(port, "/stream")
    assert client.wait_head() == 404
    assert client.wait_closed(5)
    assert client.body == body and client.events == []


def test_webhook_receiver_scripts_answers_and_signature_matches_hmac():
    receiver = WebhookReceiver(statuses=(500, 200))
    try:
        codes = [requests.post(receiver.url("/h"), data=b'{"x":1}', timeout=5).status_code
                 for _ in range(3)]
        assert codes == [500, 200, 200]
        deliveries = receiver.wait_deliveries(3, timeout=2)
        assert [d.answered for d in deliveries] == codes and deliveries[0].body == b'{"x":1}'
    finally:
        receiver.close()
    expected = "sha256=" + hmac.new(b"secret", b"body", hashlib.sha256).hexdigest()
    assert signature("secret", b"body") == expected
