"""Helpers shared by the control-plane benchmarks: ports, processes, HTTP calls, media.

Every process a benchmark starts is a `Service`; `Services` stops them all
(SIGTERM, then SIGKILL after a grace period) however the benchmark ends.
Traffic goes to 127.0.0.1 only.
"""
import http.server
import json
import os
import resource
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# FLUX_BIN_DIR points the benchmarks at another build (a Release build dir's bin/, say).
BIN = Path(os.environ.get("FLUX_BIN_DIR", ROOT / "build" / "bin"))
DOCS = ROOT / "docs" / "BENCHMARKS.md"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(want):
    """Raises this process's open-file limit towards `want` (up to the hard limit); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def require_binaries(*names):
    missing = [n for n in names if not (BIN / n).exists()]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)} in {BIN}: run `make build` first")


def lower_priority(level):
    """For a preexec_fn: `level` is a nice increment, or "idle" for SCHED_IDLE (runs only on a CPU nothing
    else wants). For the parts of a benchmark that would run on other machines in production."""
    if level == "idle":
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    elif level:
        os.nice(level)


class Service:
    """One child process with its output in a log file. `nice`: see lower_priority().

    The child gets a process group of its own (killpg reaches it and its children) but stays in this
    session: with the kernel's autogroup scheduling (kernel.sched_autogroup_enabled=1) a new session is a
    new scheduling group, every group gets an equal share of the CPU, and a nice value only ranks a process
    within its group, so a "nice" worker in a session of its own would take as much CPU as the control
    plane it is meant to yield to."""

    def __init__(self, name, argv, env, log_path, nofile=None, nice=0):
        self.name = name
        self.log_path = Path(log_path)
        self._argv, self._env, self._nofile, self._nice = list(argv), dict(env), nofile, nice
        self._spawn("w")

    def _spawn(self, log_mode):
        self._log = open(self.log_path, log_mode)
        nofile, nice = self._nofile, self._nice

        def limits():
            if nofile:
                _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                target = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            lower_priority(nice)

        self.proc = subprocess.Popen(self._argv, env=self._env, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=limits, process_group=0)

    def kill(self):
        """SIGKILL to the process alone (a crash: no cleanup, its own children are left as they are)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

    def respawn(self):
        """Starts the same program again after it ended: same argv and environment (so the same port,
        database, work and data directories), its output appended to the same log."""
        if self.proc.poll() is None:
            raise RuntimeError(f"{self.name} is still running")
        if not self._log.closed:
            self._log.close()
        self._spawn("a")

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, lines=20):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_records(self):
        """The JSON log lines written so far."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def rss_mib(self):
        for line in open(f"/proc/{self.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self):
        """User + system CPU time of the process so far (all threads)."""
        fields = open(f"/proc/{self.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def context_switches(self):
        """Voluntary + involuntary context switches of all its threads so far."""
        total = 0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                for line in open(task / "status"):
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
            except OSError:
                pass  # thread ended meanwhile
        return total

    def stop(self, grace=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode


class Services:
    """Context manager that stops every started service, newest first."""

    def __init__(self):
        self.started = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for svc in reversed(self.started):
            try:
                svc.stop()
            except Exception as e:  # keep stopping the others
                print(f"stopping {svc.name}: {e}", file=sys.stderr)
        return False

    def add(self, svc):
        self.started.append(svc)
        return svc


def controlplane_env(port, database_path, workers, **extra):
    env = dict(os.environ, PORT=str(port), BIND_ADDRESS="127.0.0.1", ENV="development", LOG_LEVEL="info",
               DATABASE_PATH=str(database_path), WORKER_NODES=",".join(workers))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_controlplane(services, tmp, workers, nofile=None, name="controlplane", **extra):
    port = free_port()
    env = controlplane_env(port, Path(tmp) / f"{name}.db", workers, **extra)
    svc = services.add(Service(name, [str(BIN / "flux-controlplane")], env, Path(tmp) / f"{name}.log", nofile))
    svc.port = port
    svc.url = f"http://127.0.0.1:{port}"
    svc.database_path = Path(tmp) / f"{name}.db"
    wait_http(svc, "/health", timeout=30)
    return svc


def start_worker(services, tmp, name, nice=0, **extra):
    port = free_port()
    base = Path(tmp) / name
    env = dict(os.environ, GRPC_PORT=str(port), GRPC_BIND_ADDRESS="127.0.0.1", METRICS_PORT="0",
               WORK_DIR=str(base / "work"), STORAGE_TYPE="local", LOCAL_STORAGE_DIR=str(base / "out"),
               DISABLE_AUTO_SHUTDOWN="true", WORKER_ID=name, LOG_LEVEL="info")
    env.update({k: str(v) for k, v in extra.items()})
    svc = services.add(Service(name, [str(BIN / "flux-worker")], env, base.with_suffix(".log"), nice=nice))
    svc.port = port
    svc.address = f"127.0.0.1:{port}"
    wait_tcp(svc, port, timeout=30)
    return svc


def wait_tcp(svc, port, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if not svc.alive():
            raise SystemExit(f"{svc.name} exited:\n{svc.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{svc.name} did not listen on {port} within {timeout} s:\n{svc.log_tail()}")
            time.sleep(0.05)


def wait_http(svc, path, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if not svc.alive():
            raise SystemExit(f"{svc.name} exited:\n{svc.log_tail()}")
        try:
            status, _ = http_call("GET", svc.url + path, timeout=1)
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{svc.name} did not answer {path} within {timeout} s:\n{svc.log_tail()}")
        time.sleep(0.05)


def http_call(method, url, body=None, timeout=10, headers=None):
    """(status, parsed JSON or raw text). Never raises on an HTTP error status."""
    data = None if body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json"} if data else {}
    all_headers.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_job(cp, job_id, statuses, timeout):
    """Polls the job document until its status is in `statuses`; returns the document."""
    deadline = time.monotonic() + timeout
    while True:
        status, doc = http_call("GET", f"{cp.url}/api/v1/jobs/{job_id}")
        if status == 200 and doc.get("status") in statuses:
            return doc
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} not in {statuses} after {timeout} s: {doc}")
        time.sleep(0.05)


def make_clip(path, seconds, size="640x360", rate=25):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
                    "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-shortest", str(path)], check=True)
    return path


def parse_rfc3339(text):
    """'2026-11-30T08:43:25.123Z' -> seconds since the epoch (float)."""
    import datetime
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def load_average():
    return os.getloadavg()[0]


def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def build_native(name, sources, flags=(), libs=()):
    """Compiles a benchmark helper under bench/native/ into build/bench/<name> (again only when a source,
    or a library it links, is newer than the binary). Returns the binary's path."""
    out = ROOT / "build" / "bench" / name
    inputs = [ROOT / "bench" / "native" / s for s in sources]
    deps = inputs + [Path(l) for l in libs if str(l).endswith(".a")]
    if out.exists() and all(d.stat().st_mtime <= out.stat().st_mtime for d in deps):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["g++", "-std=c++20", "-O2", "-g", "-Wall", "-Wextra", "-o", str(out), *map(str, inputs), *flags,
           *map(str, libs)]
    print(f"building {out.relative_to(ROOT)}", file=sys.stderr)
    subprocess.run(cmd, check=True)
    return out


class Gate:
    """Serves files from a directory over loopback HTTP; GET /<name> waits until open(name)."""

    def __init__(self, directory, max_wait=300):
        self.directory = Path(directory)
        self.events = {}
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                path = gate.directory / name
                if "/" in name or not path.is_file():
                    self.send_error(404)
                    return
                gate.events.setdefault(name, threading.Event()).wait(max_wait)
                data = path.read_bytes()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (a cancelled job, a stopped worker)

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def open(self, name):
        self.events.setdefault(name, threading.Event()).set()

    def close(self):
        for e in self.events.values():
            e.set()
        self.server.shutdown()
        self.server.server_close()
