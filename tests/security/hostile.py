"""Pieces of the hostile-input corpus: a loopback trap that counts every TCP
connection, a raw HTTP client that controls every byte, HTTP routes that
never end, and hostile media crafted byte by byte (an AVI whose GAB2
subtitle chunk holds a playlist, a tiny file declaring an enormous picture, a
three-frame file claiming to last for days)."""

import ipaddress
import mmap
import pathlib
import socket
import struct
import subprocess
import threading
import time

from harness import paths

PASSWD_MARKER = b"root:x:0:0"


# ---- a listener that must never see a connection ---------------------------------------


class ConnectionTrap:
    """Listens on 127.0.0.1 and [::1] on one port and records every accepted
    connection (and the first bytes it sent). The target of every forbidden
    address case: the product must refuse without ever connecting."""

    def __init__(self):
        self.connections = []  # (peer address, first bytes)
        self._lock = threading.Lock()
        self._sockets = []
        for _ in range(20):
            v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            v4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            v4.bind(("127.0.0.1", 0))
            port = v4.getsockname()[1]
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            v6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                v6.bind(("::1", port))
            except OSError:
                v4.close()
                v6.close()
                continue
            self.port = port
            self._sockets = [v4, v6]
            break
        else:
            raise RuntimeError("no port free on both 127.0.0.1 and ::1")
        self._stopping = False
        for sock in self._sockets:
            sock.listen(64)
            sock.settimeout(0.2)
            threading.Thread(target=self._accept_loop, args=(sock,), daemon=True).start()

    def _accept_loop(self, sock):
        while not self._stopping:
            try:
                conn, peer = sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(0.5)
            try:
                first = conn.recv(512)
            except OSError:
                first = b""
            with self._lock:
                self.connections.append((peer[0], first))
            conn.close()

    def url(self, host: str = "127.0.0.1", path: str = "/secret") -> str:
        return f"http://{host}:{self.port}{path}"

    def seen(self) -> list:
        with self._lock:
            return list(self.connections)

    def close(self):
        self._stopping = True
        for sock in self._sockets:
            sock.close()


# ---- raw HTTP ------------------------------------------------------------------------


class RawHttp:
    """One TCP connection to 127.0.0.1:port; sends bytes as given."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def read_response(self, timeout: float = 15.0, head: bool = False):
        """(status, {lower-case header: value}, body) of one response, or None
        when the connection closed first. head: no body follows (a HEAD)."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill(deadline):
                return None
        head_bytes, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head else int(headers.get("content-length", "0"))
        self.buffer = rest
        while len(self.buffer) < length:
            if not self._fill(deadline):
                return None
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, OSError):
            return False
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def closed_by_peer(self, timeout: float) -> bool:
        """True when the server closes (or resets) the connection within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return True
            if not chunk:
                return True
            self.buffer += chunk
        return False

    def close(self):
        self.sock.close()


def exchange(port: int, data: bytes, timeout: float = 15.0, head: bool = False):
    """Sends one raw request on a fresh connection and reads one response."""
    client = RawHttp(port, timeout)
    try:
        client.send(data)
        return client.read_response(timeout, head=head)
    finally:
        client.close()


# ---- inputs that never end -----------------------------------------------------------


def add_endless_route(server, path: str, chunk: bytes, pause: float, stats: dict) -> str:
    """A route of an InputServer that streams `chunk` every `pause` seconds,
    chunked, forever; stats["closed"] is set when the client hangs up and
    stats["bytes"] counts what was sent."""
    stats.setdefault("bytes", 0)
    stats["closed"] = threading.Event()

    def route(handler, send_body):
        handler.protocol_version = "HTTP/1.1"
        handler.send_response(200)
        handler.send_header("Content-Type", "video/mp4")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        if not send_body:
            return
        try:
            while True:
                handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                handler.wfile.flush()
                stats["bytes"] += len(chunk)
                if pause:
                    time.sleep(pause)
        except OSError:
            stats["closed"].set()
        handler.close_connection = True

    return server._add_route(path, route)


# ---- crafted media -------------------------------------------------------------------


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _list(kind: bytes, *parts: bytes) -> bytes:
    body = kind + b"".join(parts)
    return b"LIST" + struct.pack("<I", len(body)) + body


def gab2_chunk(payload: bytes, title: str = "Subtitles") -> bytes:
    """A GAB2 subtitle chunk, the way avidec reads it: "GAB2\\0", version 2,
    a UTF-16 title, then the embedded file that avidec probes as a demuxer."""
    desc = title.encode("utf-16-le") + b"\0\0"
    return (b"GAB2\0" + struct.pack("<H", 2) + struct.pack("<I", len(desc)) + desc
            + struct.pack("<H", 4) + struct.pack("<I", len(payload)) + payload)


def mjpeg_avi(frames, width: int, height: int, gab2_payload: bytes = None, fps: int = 5) -> bytes:
    """An AVI with one MJPEG video stream of `frames` (JPEG bytes) and, when
    gab2_payload is given, a 'txts' subtitle stream whose chunk is GAB2."""
    streams = 2 if gab2_payload is not None else 1
    avih = struct.pack("<14I", 1000000 // fps, 0, 0, 0x10, len(frames), 0, streams, 0, width,
                       height, 0, 0, 0, 0)

    def strh(kind, handler, length):
        return struct.pack("<4s4sIHHIIIIIIIIhhhh", kind, handler, 0, 0, 0, 0, 1, fps, 0, length,
                           0, 0xFFFFFFFF, 0, 0, 0, min(width, 32767), min(height, 32767))

    bitmap = struct.pack("<IiiHH4sIiiII", 40, width, height, 1, 24, b"MJPG", 0, 0, 0, 0, 0)
    strls = [_list(b"strl", _chunk(b"strh", strh(b"vids", b"MJPG", len(frames))),
                   _chunk(b"strf", bitmap))]
    items = []
    if gab2_payload is not None:
        strls.append(_list(b"strl", _chunk(b"strh", strh(b"txts", b"\0\0\0\0", 1)),
                           _chunk(b"strf", b"")))
        items.append((b"01tx", gab2_chunk(gab2_payload)))
    items += [(b"00dc", frame) for frame in frames]
    hdrl = _list(b"hdrl", _chunk(b"avih", avih), *strls)
    movi_body, index = b"", b""
    for tag, data in items:
        index += struct.pack("<4sIII", tag, 0x10, 4 + len(movi_body), len(data))
        movi_body += _chunk(tag, data)
    movi = b"LIST" + struct.pack("<I", 4 + len(movi_body)) + b"movi" + movi_body
    body = b"AVI " + hdrl + movi + _chunk(b"idx1", index)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def jpeg_frames(directory: pathlib.Path, count: int = 3, size: str = "64x48") -> list:
    """`count` small JPEG frames made by ffmpeg."""
    directory.mkdir(parents=True, exist_ok=True)
    pattern = directory / "frame%d.jpg"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi",
                    "-i", f"testsrc2=size={size}:rate=5", "-frames:v", str(count),
                    "-c:v", "mjpeg", "-f", "image2", str(pattern)], check=True)
    return [(directory / f"frame{i}.jpg").read_bytes() for i in range(1, count + 1)]


def with_declared_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF) declaring width x height: the
    scan data stays a few hundred bytes, the picture a decoder must allocate
    becomes enormous."""
    i = 2
    while i + 4 <= len(jpeg):
        marker = jpeg[i + 1]
        length = struct.unpack(">H", jpeg[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            return jpeg[:i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9:]
        i += 2 + length
    raise ValueError("no SOF marker in the JPEG")


def days_long_mkv(target: pathlib.Path, days: float = 3.0) -> pathlib.Path:
    """Two H.264 frames, the second stamped `days` later: a 3 KiB file whose
    container (and ffprobe) says it lasts that long. Encoded at a constant
    frame rate it would be days of duplicated frames."""
    seconds = int(days * 86400)
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi",
                    "-i", "testsrc2=size=64x48:rate=1", "-frames:v", "2",
                    "-vf", f"setpts=N*{seconds}/TB", "-fps_mode", "passthrough",
                    "-c:v", "libx264", "-preset", "ultrafast", str(target)], check=True)
    return target


# ---- the environment -----------------------------------------------------------------


def worker_knows(variable: str) -> bool:
    """Whether the worker binary under test reads `variable` (its name is in
    the binary). For tests written against a contract that another change
    lands: they skip, saying so, until the worker has it."""
    binary = paths.worker_binary()
    with open(binary, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(variable.encode()) >= 0


def loopback_aliases() -> list:
    """Names in /etc/hosts that resolve to a loopback address and that no
    rule refuses by name (the machine's own host name, typically): only the
    check on the resolved address can catch them."""
    refused_by_name = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
    names = []
    try:
        lines = pathlib.Path("/etc/hosts").read_text().splitlines()
    except OSError:
        return names
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            if not ipaddress.ip_address(fields[0]).is_loopback:
                continue
        except ValueError:
            continue
        for name in fields[1:]:
            lowered = name.lower().rstrip(".")
            if (lowered in refused_by_name or lowered.endswith((".localhost", ".local", ".internal",
                                                               ".localdomain"))):
                continue
            try:
                resolved = {info[4][0] for info in socket.getaddrinfo(name, None)}
            except OSError:
                continue
            if resolved and all(ipaddress.ip_address(a).is_loopback for a in resolved):
                if name not in names:
                    names.append(name)
    return names


# ---- jobs through a real worker ------------------------------------------------------


def run_failing_job(worker, url: str, error_code, s3=None, bucket=None, local_out=None,
                    storage: str = "s3", preset: str = "480p_h264", timeout: float = 90,
                    timeout_seconds: int = 0, trap=None):
    """Submits one job over gRPC and checks the whole outcome of a refusal:
    exactly one FAILED event with `error_code` (a str or a tuple) and a human
    reason, nothing at its output path, WORK_DIR empty with no ffmpeg left,
    /etc/passwd in no error, log or output, and no connection to `trap`.
    Returns the JobStream."""
    import uuid

    from harness.checks import assert_worker_clean
    from harness.jobs import job_request, new_job_id, run_job

    path = f"hostile/{uuid.uuid4().hex[:10]}.mp4"
    request = job_request(new_job_id("hostile"), url, preset, path, storage=storage,
                          timeout_seconds=timeout_seconds)
    stream = run_job(worker, request, timeout)
    final = stream.expect_terminal("FAILED", error_code, timeout)
    assert PASSWD_MARKER.decode() not in final.error, f"the error leaks /etc/passwd: {final.error!r}"
    if s3 is not None and bucket is not None:
        assert s3.list_objects(bucket, path) == {}, f"an object was uploaded at {path}"
    if local_out is not None:
        assert not (pathlib.Path(local_out) / path).exists(), f"a file was written at {path}"
    assert_worker_clean(worker, f"after a job failed with {final.error_code}")
    for text in (worker.stdout_text(), worker.stderr_text()):
        assert PASSWD_MARKER.decode() not in text, "the worker's output contains /etc/passwd"
    if trap is not None:
        assert trap.seen() == [], f"{url}: the trap on loopback saw connections {trap.seen()}"
    return stream
