"""An HTTP server on 127.0.0.1 that serves test inputs and records every request."""

import http.server
import pathlib
import shutil
import threading
import time


class InputServer:
    """Serves files under `root`, plus routes with canned misbehaviour.

    Every request is recorded (method, path) so a test can prove that the
    worker never reached the server, or that it retried.
    """

    def __init__(self, root: pathlib.Path):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.requests = []
        self._lock = threading.Lock()
        self._routes = {}
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(server.root), **kwargs)

            def log_message(self, fmt, *args):  # keep test output clean
                pass

            def _dispatch(self, send_body: bool):
                with server._lock:
                    server.requests.append((self.command, self.path))
                route = server._routes.get(self.path.split("?", 1)[0])
                if route is not None:
                    route(self, send_body)
                    return False
                return True

            def do_GET(self):
                if self._dispatch(True):
                    super().do_GET()

            def do_HEAD(self):
                if self._dispatch(False):
                    super().do_HEAD()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def add_file(self, relative: str, content: bytes) -> str:
        """Writes content at root/relative; returns its URL."""
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        return self.url(relative)

    def add_copy(self, relative: str, source: pathlib.Path) -> str:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return self.url(relative)

    def requests_for(self, path: str) -> list:
        path = "/" + path.lstrip("/")
        with self._lock:
            return [r for r in self.requests if r[1].split("?", 1)[0] == path]

    def all_requests(self) -> list:
        with self._lock:
            return list(self.requests)

    # ---- canned routes ------------------------------------------------------

    def add_status(self, path: str, code: int) -> str:
        """A route that always answers `code` with a short body."""

        def route(handler, send_body):
            body = f"status {code}\n".encode()
            handler.send_response(code)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if send_body:
                handler.wfile.write(body)

        return self._add_route(path, route)

    def add_truncated(self, path: str, content: bytes, announced: int) -> str:
        """Announces `announced` bytes, sends `content` (fewer), then closes."""

        def route(handler, send_body):
            handler.send_response(200)
            handler.send_header("Content-Type", "video/mp4")
            handler.send_header("Content-Length", str(announced))
            handler.end_headers()
            if send_body:
                handler.wfile.write(content)
                handler.wfile.flush()
            handler.close_connection = True

        return self._add_route(path, route)

    def add_chunked(self, path: str, content: bytes, chunk: int = 65536) -> str:
        """Serves content with chunked transfer encoding (no Content-Length)."""

        def route(handler, send_body):
            handler.protocol_version = "HTTP/1.1"
            handler.send_response(200)
            handler.send_header("Content-Type", "video/mp4")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.send_header("Connection", "close")
            handler.end_headers()
            if not send_body:
                return
            try:
                for start in range(0, len(content), chunk):
                    piece = content[start:start + chunk]
                    handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                handler.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client gave up, as it should past the cap
                pass
            handler.close_connection = True

        return self._add_route(path, route)

    def add_redirect(self, path: str, location: str, code: int = 302) -> str:
        def route(handler, send_body):
            handler.send_response(code)
            handler.send_header("Location", location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        return self._add_route(path, route)

    def _add_route(self, path: str, route) -> str:
        path = "/" + path.lstrip("/")
        self._routes[path] = route
        return self.url(path)

    def wait_for_request(self, path: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.requests_for(path):
                return True
            time.sleep(0.05)
        return False
