"""A proxy in front of s3rver that answers 503 SlowDown to chosen requests.

Lets a test see the worker's S3 retries: how many attempts a request got,
and that the upload still arrives intact after transient errors.
"""

import http.client
import http.server
import threading

_SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
              b"<Message>Please reduce your request rate.</Message></Error>")


class FlakyS3Proxy:
    """Fails the first `fail_first` requests (or all when fail_first is None)."""

    def __init__(self, upstream_port: int, fail_first=None):
        self.upstream_port = upstream_port
        self.fail_first = fail_first
        self.requests = []  # (method, path, answered status)
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def _handle(self):
                body = self._read_body()
                with proxy._lock:
                    index = len(proxy.requests)
                    fail = proxy.fail_first is None or index < proxy.fail_first
                    proxy.requests.append([self.command, self.path, None])
                if fail:
                    self._answer(index, 503, {"Content-Type": "application/xml"}, _SLOW_DOWN)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", "transfer-encoding", "expect",
                                                "content-length")}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                relayed = {k: v for k, v in response.getheaders()
                           if k.lower() not in ("connection", "transfer-encoding", "content-length")}
                upstream.close()
                self._answer(index, response.status, relayed, payload)

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, index, status, headers, payload):
                with proxy._lock:
                    proxy.requests[index][2] = status
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def seen(self) -> list:
        with self._lock:
            return [tuple(r) for r in self.requests]
