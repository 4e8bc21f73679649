"""The live progress of `submit --wait` and `watch`: a bar redrawn in place on
a terminal (run under a pseudo-terminal with util-linux `script`), plain lines
without one, and a watch that survives the control plane restarting."""

import json
import re
import signal
import time

from harness import media

PRESET = "480p_h264"
REDRAW = "\r\x1b[2K"


def submit_args(input_url: str, output: str, *extra) -> list:
    return ["submit", "--input", input_url, "--preset", PRESET, "--output", output, "--storage", "local", *extra]


def test_terminal_gets_a_bar_redrawn_in_place(stack, inputs):
    r = stack.fluxctl.in_terminal(*submit_args(inputs.clip_url("small_long.mp4"), "tty/long.mp4"), "--wait",
                                  columns=100)
    assert r.code == 0, r
    text = r.out
    frames = text.split(REDRAW)[1:]
    assert len(frames) >= 3, r  # the first state, progress, the end
    bars = [f for f in frames if re.match(r"^\s*\d{1,3}% \[[#.]+\] ", f)]
    assert len(bars) >= 3, r
    assert any("encoding" in f for f in bars), r
    assert any(re.search(r"\d+(\.\d)? fps\s+\d+(\.\d)?x\s+ETA (\d+:\d\d|--:--)", f) for f in bars), r
    for frame in frames:
        line = frame.split("\r\n")[0]
        assert len(line) <= 99, f"frame wider than the terminal: {line!r}"
    # The bar's line is ended, then the summary.
    assert re.search(r"100% \[#+\] completed\r\njob_\w+ completed: file://\S+tty/long\.mp4 \(", text), r
    media.ffprobe(stack.output_root / "tty" / "long.mp4")


def test_watch_in_a_narrow_terminal_fits(stack, inputs):
    submitted = stack.fluxctl("--json", *submit_args(inputs.clip_url("small.mp4"), "tty/narrow.mp4"))
    job_id = json.loads(submitted.out)["job_id"]
    r = stack.fluxctl.in_terminal("watch", job_id, columns=30)
    assert r.code == 0, r
    frames = r.out.split(REDRAW)[1:]
    assert frames, r
    for frame in frames:
        assert len(frame.split("\r\n")[0]) <= 29, (frame, r)


def test_failed_job_under_a_terminal(stack, inputs):
    r = stack.fluxctl.in_terminal(*submit_args(inputs.server.url("clips/missing.mp4"), "tty/x.mp4"), "--wait")
    assert r.code == 1, r
    assert REDRAW in r.out and "%" in r.out, r
    assert re.search(r"job_\w+ failed: .+ \(input_not_found\)\r\n", r.out), r


def test_without_a_terminal_plain_lines_not_a_flood(stack, inputs):
    r = stack.fluxctl(*submit_args(inputs.clip_url("small_long.mp4"), "plain/long.mp4"), "--wait")
    assert r.code == 0, r
    assert "\r" not in r.out and "\x1b" not in r.out and "\r" not in r.err, r
    lines = r.out.splitlines()
    progress = lines[1:-1]
    assert all(re.match(r"^\[\s*\d{1,3}%\] \w+", line) for line in progress), r
    # A line per phase change or 10 %: a handful, however many events came.
    assert 2 <= len(progress) <= 25, r
    percents = [int(re.match(r"^\[\s*(\d+)%", line).group(1)) for line in progress]
    assert percents == sorted(percents), r
    assert re.match(r"^job_\w+ completed: file://", lines[-1]), r


def test_watch_reconnects_across_a_control_plane_restart(stack, inputs):
    submitted = stack.fluxctl("--json", *submit_args(inputs.clip_url("small_long.mp4"), "plain/restart.mp4"))
    job_id = json.loads(submitted.out)["job_id"]
    watcher = stack.fluxctl.popen("watch", job_id)
    try:
        stack.cp.api.wait_job(job_id, statuses=("processing",), timeout=30)
        time.sleep(0.5)
        assert stack.cp.terminate() == 0, stack.cp.output_tail()
        time.sleep(0.5)
        stack.cp.start()
        out, err = watcher.communicate(timeout=120)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    out, err = out.decode(), err.decode()
    assert watcher.returncode == 0, (watcher.returncode, out, err)
    assert "reconnecting" in err, (out, err)
    assert out.splitlines()[-1].startswith(f"{job_id} completed: file://"), (out, err)
    media.ffprobe(stack.output_root / "plain" / "restart.mp4")


def test_ctrl_c_stops_watching_but_not_the_job(stack, inputs):
    submitted = stack.fluxctl("--json", *submit_args(inputs.clip_url("small_long.mp4"), "plain/interrupt.mp4"))
    job_id = json.loads(submitted.out)["job_id"]
    watcher = stack.fluxctl.popen("watch", job_id)
    try:
        first = watcher.stdout.readline().decode()
        assert first.startswith("["), first
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=10)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    err = err.decode()
    assert watcher.returncode == 130, (watcher.returncode, first, out, err)
    assert f"the job keeps running (fluxctl watch {job_id})" in err, err
    assert "(interrupted)" in err, err
    assert stack.cp.api.job(job_id)["status"] in ("queued", "processing", "uploading", "completed")
    assert stack.cp.api.cancel(job_id).status_code in (200, 409)
