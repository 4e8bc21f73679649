"""A Server-Sent Events reader on a raw socket.

It speaks HTTP/1.1 itself and parses the event stream line by line as the
WHATWG EventSource algorithm does (fields id/data/event/retry, comments
starting with ':', an empty line dispatches), and it also keeps every raw
block so that a test can check the exact wire format the server wrote.
"""

import json
import socket
import threading
import time


class SseEvent:
    def __init__(self, block: list, received_at: float):
        self.block = block  # the raw lines of the event, without the blank line
        self.received_at = received_at  # time.monotonic()
        self.received_wall = time.time()
        self.id = None
        self.event = "message"
        data = []
        for line in block:
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "id":
                self.id = value
            elif name == "data":
                data.append(value)
            elif name == "event":
                self.event = value
        self.data = "\n".join(data)

    def json(self) -> dict:
        return json.loads(self.data)

    def __repr__(self) -> str:
        return f"SseEvent(id={self.id!r}, data={self.data[:300]!r})"


class SseClient:
    """One GET of an SSE URL. Reads in a background thread unless read=False
    (a client that connects and then never reads a byte)."""

    def __init__(self, port: int, path: str, api_key: str = None, last_event_id=None,
                 host: str = "127.0.0.1", read: bool = True, extra_headers=None,
                 receive_buffer: int = None):
        self.path = path
        self.events = []
        self.comments = []  # (text, time)
        self.status = None
        self.headers = {}  # lower-case name -> value
        self.body = b""  # the body of a non-200 answer
        self.closed = False  # the server closed the stream (EOF)
        self.error = None
        self.opened_at = time.monotonic()
        self.closed_at = None
        self._cond = threading.Condition()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self._sock.settimeout(10)
        self._sock.connect((host, port))
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream",
                 "Cache-Control: no-cache"]
        if api_key:
            lines.append(f"Authorization: Bearer {api_key}")
        if last_event_id is not None:
            lines.append(f"Last-Event-ID: {last_event_id}")
        for name, value in (extra_headers or {}).items():
            lines.append(f"{name}: {value}")
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._thread = None
        if read:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    # ---- reading ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._sock.settimeout(None)
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed before the response head: {buffer!r}")
                buffer += chunk
            head, _, rest = buffer.partition(b"\r\n\r\n")
            head_lines = head.decode("latin-1").split("\r\n")
            status = int(head_lines[0].split(" ")[1])
            headers = {}
            for line in head_lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            with self._cond:
                self.status = status
                self.headers = headers
                self._cond.notify_all()
            if status != 200:
                self._read_plain_body(rest, headers)
                return
            self._read_events(rest)
        except Exception as error:  # noqa: BLE001 - reported through self.error
            with self._cond:
                self.error = error
        finally:
            with self._cond:
                self.closed = True
                self.closed_at = time.monotonic()
                self._cond.notify_all()
            try:
                self._sock.close()
            except OSError:
                pass

    def _read_plain_body(self, rest: bytes, headers: dict) -> None:
        length = int(headers.get("content-length", "0"))
        body = rest
        while len(body) < length:
            chunk = self._sock.recv(65536)
            if not chunk:
                break
            body += chunk
        with self._cond:
            self.body = body

    def _read_events(self, pending: bytes) -> None:
        block = []
        text = b""
        data = pending
        while True:
            text += data
            # Lines end in \n, \r\n or \r; a trailing \r may be half of a \r\n.
            while True:
                cut = -1
                for index, byte in enumerate(text):
                    if byte in (10, 13):
                        cut = index
                        break
                if cut < 0 or (text[cut] == 13 and cut + 1 == len(text)):
                    break
                line = text[:cut].decode("utf-8")
                skip = 2 if text[cut] == 13 and text[cut + 1:cut + 2] == b"\n" else 1
                text = text[cut + skip:]
                now = time.monotonic()
                if line == "":
                    if block:
                        event = SseEvent(block, now)
                        block = []
                        if any(l.startswith("data") for l in event.block):
                            with self._cond:
                                self.events.append(event)
                                self._cond.notify_all()
                elif line.startswith(":"):
                    with self._cond:
                        self.comments.append((line[1:].lstrip(" "), now))
                        self._cond.notify_all()
                else:
                    block.append(line)
            data = self._sock.recv(65536)
            if not data:
                return

    # ---- waiting ------------------------------------------------------------------

    def wait_head(self, timeout: float = 10.0) -> int:
        with self._cond:
            if not self._cond.wait_for(lambda: self.status is not None or self.closed, timeout):
                raise AssertionError(f"SSE {self.path}: no response head within {timeout}s")
        if self.status is None:
            raise AssertionError(f"SSE {self.path}: closed without a response ({self.error!r})")
        return self.status

    def wait_for(self, predicate, timeout: float, what: str = "the expected event"):
        """Waits until predicate(events) is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(list(self.events))
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0 or (self.closed and not predicate(list(self.events))):
                    raise AssertionError(
                        f"SSE {self.path}: {what} not seen within {timeout}s "
                        f"(closed={self.closed}, error={self.error!r}); events:\n"
                        + "\n".join(f"  {e!r}" for e in self.events))
                self._cond.wait(min(left, 0.5))

    def wait_event(self, predicate, timeout: float, what: str = "the expected event") -> SseEvent:
        """The first event whose JSON satisfies predicate."""
        return self.wait_for(lambda events: next((e for e in events if predicate(e.json())), None),
                             timeout, what)

    def wait_closed(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.closed, timeout)

    def wait_comment(self, timeout: float):
        with self._cond:
            if not self._cond.wait_for(lambda: self.comments or self.closed, timeout):
                return None
            return self.comments[0] if self.comments else None

    def json_events(self) -> list:
        with self._cond:
            return [e.json() for e in self.events]

    def ids(self) -> list:
        with self._cond:
            return [e.id for e in self.events]

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)


def open_stream(cp, job_id: str, **kwargs) -> SseClient:
    """An SSE client on cp's stream of job_id, authenticated with cp's key."""
    kwargs.setdefault("api_key", cp.api_key)
    return SseClient(cp.port, f"/api/v1/jobs/{job_id}/stream", **kwargs)
