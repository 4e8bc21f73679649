"""Submitting jobs and collecting their progress streams."""

import threading
import time
import uuid

import grpc

from . import stubs

BUILTIN_PRESETS = {
    # name: (output type, has audio, heights)
    "720p_h264": ("single", True, [720]),
    "1080p_h264": ("single", True, [1080]),
    "480p_h264": ("single", True, [480]),
    "hls_720p": ("hls", True, [720]),
    "hls_720p_video_only": ("hls", False, [720]),
    "hls_720p_abr": ("hls", True, [720, 480, 360]),
    "hls_720p_abr_video_only": ("hls", False, [720, 480, 360]),
    "dash_1080p": ("dash", True, [1080, 720]),
}


def new_job_id(prefix: str = "job") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def status_name(value) -> str:
    pb, _ = stubs.load()
    return pb.JobStatus.Name(value)


def phase_name(value) -> str:
    pb, _ = stubs.load()
    return pb.JobPhase.Name(value)


def describe(events) -> str:
    """One line per event, for assertion messages."""
    lines = []
    for e in events:
        line = (f"  #{e.sequence} {status_name(e.status)}/{phase_name(e.phase)} "
                f"{e.progress:.1f}%")
        if e.error_code or e.error:
            line += f" error_code={e.error_code!r} error={e.error!r}"
        if e.output_url:
            line += f" output_url={e.output_url}"
        if e.message:
            line += f" message={e.message!r}"
        lines.append(line)
    return "\n".join(lines) if lines else "  (no events)"


def job_request(job_id, input_url, preset, path, storage="s3", output_type=None,
                metadata=None, timeout_seconds=0):
    pb, _ = stubs.load()
    if output_type is None:
        output_type = BUILTIN_PRESETS.get(preset, ("single",))[0]
    output = pb.OutputConfig(storage=storage, path=path, type=output_type)
    for key, value in (metadata or {}).items():
        output.metadata[key] = value
    return pb.JobRequest(job_id=job_id, input_url=input_url, preset=preset, output=output,
                         timeout_seconds=timeout_seconds)


TERMINAL = ("JOB_STATUS_COMPLETED", "JOB_STATUS_FAILED", "JOB_STATUS_CANCELLED")


class JobStream:
    """Consumes a JobProgress stream (SubmitJob or WatchJob) on a background thread."""

    def __init__(self, call, label: str):
        self.call = call
        self.label = label
        self.events = []
        self.error = None  # grpc.RpcError that ended the stream, if any
        self.ended = False
        self.ended_at = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._consume, daemon=True)
        self._thread.start()

    def _consume(self):
        try:
            for event in self.call:
                with self._cond:
                    self.events.append(event)
                    self._cond.notify_all()
        except grpc.RpcError as error:
            with self._cond:
                self.error = error
        finally:
            with self._cond:
                self.ended = True
                self.ended_at = time.monotonic()
                self._cond.notify_all()

    # ---- waiting ------------------------------------------------------------------

    def wait_for(self, predicate, timeout: float, what: str):
        """The first event matching predicate; AssertionError if the stream ends or times out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                if self.ended:
                    raise AssertionError(f"{self.label}: stream ended without {what} "
                                         f"(rpc error: {self.error_text()})\n{describe(self.events)}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.label}: no {what} within {timeout}s\n"
                                         f"{describe(self.events)}")
                self._cond.wait(remaining)

    def wait_phase(self, phase: str, timeout: float = 60.0):
        return self.wait_for(lambda e: phase_name(e.phase) == f"JOB_PHASE_{phase}", timeout,
                             f"phase {phase}")

    def wait_end(self, timeout: float = 120.0) -> "JobStream":
        """Waits for the stream to end (terminal event or RPC error)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.ended:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.label}: stream still open after {timeout}s\n"
                                         f"{describe(self.events)}")
                self._cond.wait(remaining)
        return self

    def cancel_call(self) -> None:
        """Drops the client side of the stream (the job itself must keep running)."""
        self.call.cancel()
        self._thread.join(timeout=10)

    # ---- results ------------------------------------------------------------------

    @property
    def final(self):
        with self._cond:
            return self.events[-1] if self.events else None

    def statuses(self) -> list:
        with self._cond:
            return [status_name(e.status) for e in self.events]

    def error_text(self) -> str:
        if self.error is None:
            return "none"
        return f"{self.error.code().name}: {self.error.details()}"

    def expect_terminal(self, status: str, error_code=None, timeout: float = 120.0):
        """Waits for the end and checks it ended with exactly one terminal event, `status`.

        error_code: the expected code, or a tuple of acceptable ones.
        """
        self.wait_end(timeout)
        assert self.error is None, (f"{self.label}: stream ended with an RPC error "
                                    f"{self.error_text()} instead of a {status} event\n"
                                    f"{describe(self.events)}")
        final = self.final
        assert final is not None, f"{self.label}: stream ended without any event"
        want = f"JOB_STATUS_{status}"
        assert status_name(final.status) == want, (
            f"{self.label}: last event is {status_name(final.status)}, want {want}\n"
            f"{describe(self.events)}")
        terminal = [e for e in self.events if status_name(e.status) in TERMINAL]
        assert len(terminal) == 1, f"{self.label}: {len(terminal)} terminal events\n{describe(self.events)}"
        if isinstance(error_code, str):
            error_code = (error_code,)
        if error_code is not None:
            assert final.error_code in error_code, (
                f"{self.label}: error_code {final.error_code!r}, want {' or '.join(error_code)} "
                f"(error: {final.error!r})\n{describe(self.events)}")
        if status in ("FAILED", "CANCELLED"):
            assert final.error.strip(), f"{self.label}: {status} without a human error text"
        return final

    def expect_rpc_error(self, code: str, timeout: float = 30.0):
        """Waits for the end and checks it was refused with grpc code `code`."""
        self.wait_end(timeout)
        assert self.error is not None, (f"{self.label}: expected RPC error {code}, got a stream\n"
                                        f"{describe(self.events)}")
        assert self.error.code().name == code, (
            f"{self.label}: RPC error {self.error_text()}, want {code}\n{describe(self.events)}")
        return self.error


def submit(worker, request, timeout: float = 180.0) -> JobStream:
    """Starts SubmitJob; the stream is consumed in the background."""
    call = worker.stub.SubmitJob(request, timeout=timeout)
    return JobStream(call, f"job {request.job_id}")


def submit_detached(worker, request) -> None:
    """Submits, waits for the first event (the job is taken), then drops the
    client side: the job runs on with nobody watching it."""
    stream = submit(worker, request)
    stream.wait_for(lambda e: True, timeout=30, what="a first event")
    stream.cancel_call()


def watch(worker, job_id: str, timeout: float = 180.0) -> JobStream:
    pb, _ = stubs.load()
    call = worker.stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=timeout)
    return JobStream(call, f"watch {job_id}")


def run_job(worker, request, timeout: float = 180.0) -> JobStream:
    """Submits and waits for the stream to end."""
    return submit(worker, request, timeout).wait_end(timeout)
