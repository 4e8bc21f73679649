"""A webhook receiver on 127.0.0.1 that records every delivery and answers
with a scripted sequence of status codes."""

import hashlib
import hmac
import http.server
import threading
import time


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Delivery:
    def __init__(self, path: str, headers: dict, body: bytes, answered: int):
        self.path = path
        self.headers = headers  # lower-case name -> value
        self.body = body
        self.answered = answered
        self.received_at = time.monotonic()


class WebhookReceiver:
    """POSTs to any path are recorded; the n-th one is answered with
    statuses[n] (the last entry repeats)."""

    def __init__(self, statuses=(200,)):
        self.statuses = list(statuses)
        self.deliveries = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._cond:
                    n = len(receiver.deliveries)
                    code = receiver.statuses[min(n, len(receiver.statuses) - 1)]
                    receiver.deliveries.append(Delivery(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body, code))
                    receiver._cond.notify_all()
                answer = f"status {code}\n".encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(answer)
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_deliveries(self, count: int, timeout: float) -> list:
        with self._cond:
            self._cond.wait_for(lambda: len(self.deliveries) >= count, timeout)
            return list(self.deliveries)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
