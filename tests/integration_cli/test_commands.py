"""fluxctl's commands end to end: the real binary against a real control plane
and worker, checking what a user sees (output, exit code) and what really
happened (the output file, the job document)."""

import json
import pathlib
import re
import socket

from conftest import Fluxctl, fluxctl_binary
from harness import media
from harness.paths import project_version
from harness.ports import free_port

PRESET = "480p_h264"


def submit_args(input_url: str, output: str, *extra) -> list:
    return ["submit", "--input", input_url, "--preset", PRESET, "--output", output, *extra]


def test_submit_wait_completes_with_a_playable_output(stack, inputs):
    # No --storage: fluxctl picks what the workers serve (local here).
    r = stack.fluxctl(*submit_args(inputs.clip_url("small.mp4"), "cli/first.mp4"), "--wait")
    assert r.code == 0, r
    lines = r.out.splitlines()
    job_id = re.match(r"^(job_\w+) accepted$", lines[0]).group(1)
    assert "\r" not in r.out and "\x1b" not in r.out, r  # no terminal: plain lines
    assert any(re.match(r"^\[\s*\d+%\] ", line) for line in lines[1:-1]), r
    output = stack.output_root / "cli" / "first.mp4"
    assert lines[-1].startswith(f"{job_id} completed: file://{output}"), r
    assert "h264" in lines[-1] and "640x480" in lines[-1], r
    info = media.ffprobe(output)
    media.assert_playable_video(info, "cli/first.mp4", height=480, audio=True)

    doc = stack.cp.api.job(job_id)
    assert doc["status"] == "completed" and doc["output"]["storage"] == "local", doc


def test_json_output_of_every_command_parses(stack, inputs):
    submitted = stack.fluxctl("--json", *submit_args(inputs.clip_url("small.mp4"), "cli/json.mp4"),
                              "--storage", "local", "--metadata", "title=Sample", "lang=en",
                              "--priority", "3")
    assert submitted.code == 0, submitted
    accepted = json.loads(submitted.out)
    job_id = accepted["job_id"]
    assert accepted["status"] == "accepted", accepted

    watched = stack.fluxctl("watch", job_id, "--json")
    assert watched.code == 0, watched
    final = json.loads(watched.out)  # exactly one document: no progress lines mixed in
    assert final["job_id"] == job_id and final["status"] == "completed", final
    assert final["output_url"] == f"file://{stack.output_root / 'cli' / 'json.mp4'}", final

    got = json.loads(stack.fluxctl("--json", "get", job_id).out)
    assert got["output"]["metadata"] == {"title": "Sample", "lang": "en"}, got
    assert got["priority"] == 3, got

    listed = json.loads(stack.fluxctl("list", "--json", "--status", "completed", "--limit", "200").out)
    assert job_id in [j["job_id"] for j in listed["jobs"]], listed
    assert all(j["status"] == "completed" for j in listed["jobs"]), listed

    workers = json.loads(stack.fluxctl("workers", "--json").out)["workers"]
    assert [w["address"] for w in workers] == [f"127.0.0.1:{stack.worker.grpc_port}"], workers
    assert workers[0]["state"] == "up" and "local" in workers[0]["storage_types"], workers

    presets = json.loads(stack.fluxctl("presets", "--json").out)["presets"]
    assert {"720p_h264", "480p_h264", "hls_720p_abr"} <= {p["name"] for p in presets}, presets


def test_human_get_list_workers_presets(stack, inputs):
    r = stack.fluxctl(*submit_args(inputs.clip_url("small.mp4"), "cli/human.mp4"), "--storage", "local",
                      "--wait")
    assert r.code == 0, r
    job_id = r.out.split()[0]

    got = stack.fluxctl("get", job_id)
    assert got.code == 0, got
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in got.out.splitlines())
    assert fields["Job"] == job_id, got
    assert fields["Status"] == "completed (100%)", got
    assert fields["Preset"] == PRESET, got
    assert fields["Output"] == "local cli/human.mp4", got
    assert fields["Output URL"] == f"file://{stack.output_root / 'cli' / 'human.mp4'}", got
    assert fields["Result"].startswith("h264 640x480"), got
    assert fields["Worker"] == "it-w (attempt 1)", got
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", fields["Finished"]), got

    listed = stack.fluxctl("list", "--limit", "200")
    assert listed.code == 0, listed
    header, *rows = listed.out.splitlines()
    assert header.split() == ["JOB", "ID", "STATUS", "PROGRESS", "PRESET", "CREATED", "(UTC)", "DETAIL"], listed
    row = next(line for line in rows if line.startswith(job_id))
    assert row.split()[1:4] == ["completed", "100%", PRESET], listed
    assert row.endswith(f"file://{stack.output_root / 'cli' / 'human.mp4'}"), listed

    # Pages: the first page tells how to get the next one, which continues it.
    first = stack.fluxctl("list", "--limit", "1")
    assert first.code == 0 and len(first.out.splitlines()) == 3, first
    cursor = re.match(r"^more: repeat with --cursor (\S+)$", first.out.splitlines()[-1]).group(1)
    second = stack.fluxctl("list", "--limit", "1", "--cursor", cursor)
    assert second.code == 0, second
    assert second.out.splitlines()[1].split()[0] != first.out.splitlines()[1].split()[0], (first, second)

    workers = stack.fluxctl("workers")
    assert workers.code == 0, workers
    header, *rows = workers.out.splitlines()
    assert header.startswith("ADDRESS") and "STATE" in header, workers
    assert len(rows) == 1 and rows[0].split()[:3] == [f"127.0.0.1:{stack.worker.grpc_port}", "it-w", "up"], workers

    presets = stack.fluxctl("presets")
    assert presets.code == 0, presets
    names = {line.split()[0]: line.split()[1] for line in presets.out.splitlines()[1:]}
    assert names["720p_h264"] == "single" and names["hls_720p_abr"] == "hls", presets


def test_failed_job_exits_one_with_its_code(stack, inputs):
    missing = inputs.server.url("clips/does-not-exist.mp4")
    r = stack.fluxctl(*submit_args(missing, "cli/failed.mp4"), "--storage", "local", "--wait")
    assert r.code == 1, r
    last = r.out.splitlines()[-1]
    assert re.match(r"^job_\w+ failed: .+ \(input_not_found\)$", last), r
    job_id = last.split()[0]
    assert stack.cp.api.job(job_id)["error_code"] == "input_not_found"
    # watch of the finished job: its final state at once, same exit code.
    again = stack.fluxctl("watch", job_id)
    assert again.code == 1 and again.out.splitlines()[-1] == last, again
    assert not (stack.output_root / "cli" / "failed.mp4").exists()


def test_cancel_a_running_job(stack, inputs):
    submitted = stack.fluxctl("--json", *submit_args(inputs.clip_url("small_long.mp4"), "cli/cancel.mp4"),
                              "--storage", "local")
    job_id = json.loads(submitted.out)["job_id"]
    stack.cp.api.wait_job(job_id, statuses=("processing",), timeout=30)
    cancelled = stack.fluxctl("cancel", job_id)
    assert cancelled.code == 0, cancelled
    assert cancelled.out.startswith(f"{job_id} "), cancelled
    watched = stack.fluxctl("watch", job_id, timeout=60)
    assert watched.code == 1, watched
    assert re.match(rf"^{job_id} cancelled\b.*\(\w+\)$", watched.out.splitlines()[-1]), watched
    assert stack.cp.api.job(job_id)["status"] == "cancelled"


def test_cancel_of_a_finished_job_is_a_server_error(stack, inputs):
    r = stack.fluxctl(*submit_args(inputs.clip_url("small.mp4"), "cli/done.mp4"), "--storage", "local",
                      "--wait")
    assert r.code == 0, r
    job_id = r.out.split()[0]
    again = stack.fluxctl("cancel", job_id)
    assert again.code == 3, again
    assert re.match(r"^error: .+ \(job_finished\)$", again.err.strip()), again
    assert again.out == "", again


def test_unknown_job_is_a_server_error(stack):
    for command in ("get", "watch", "cancel"):
        r = stack.fluxctl(command, "job_doesnotexist")
        assert r.code == 3, r
        assert r.err.strip().endswith("(job_not_found)") and r.err.startswith("error: "), r
    r = stack.fluxctl("--json", "get", "job_doesnotexist")
    assert r.code == 3 and json.loads(r.out)["code"] == "job_not_found", r


def test_server_validation_error_shows_its_code(stack, inputs):
    r = stack.fluxctl("submit", "--input", inputs.clip_url("small.mp4"), "--preset", "no_such_preset",
                      "--output", "cli/x.mp4", "--storage", "local")
    assert r.code == 3, r
    assert re.match(r"^error: .+ \(\w*preset\w*\)$", r.err.strip()), r


def test_idempotency_key_returns_the_first_job(stack, inputs):
    args = submit_args(inputs.clip_url("small.mp4"), "cli/idem.mp4") + [
        "--storage", "local", "--idempotency-key", "cli-idem-1", "--json"]
    first = json.loads(stack.fluxctl(*args).out)["job_id"]
    second = json.loads(stack.fluxctl(*args).out)["job_id"]
    assert first == second
    stack.cp.api.wait_job(first, timeout=60)


def test_unauthorized_key_exits_three_and_is_never_printed(stack):
    secret = "wrong-key-0123456789abcdef"
    for args in (["workers"], ["list"], ["watch", "job_x"], ["--json", "presets"]):
        r = stack.fluxctl(*args, env=Fluxctl(stack.cp.base_url, secret).env())
        assert r.code == 3, r
        assert "unauthorized" in r.err, r
        assert secret not in r.out and secret not in r.err, r
    # The flag works as well as the environment, and beats it.
    env = Fluxctl(stack.cp.base_url, secret).env()
    ok = stack.fluxctl("--api-key", stack.cp.api_key, "presets", env=env)
    assert ok.code == 0, ok
    assert stack.cp.api_key not in ok.out + ok.err


def test_server_down_exits_three(tmp_path):
    port = free_port()  # nothing listens there
    down = Fluxctl(f"http://127.0.0.1:{port}")
    for args in (["workers"], ["get", "job_x"], ["watch", "job_x"],
                 ["submit", "--input", "http://127.0.0.1:1/a.mp4", "--preset", PRESET, "--output", "a.mp4"]):
        r = down(*args, timeout=30)
        assert r.code == 3, r
        assert r.err.startswith("error: ") and "(connection_failed)" in r.err, r
        assert str(port) in r.err, r


def test_a_server_that_closes_without_answering_is_a_network_error(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        import threading

        def serve():
            for _ in range(2):
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                conn.recv(65536)
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        r = Fluxctl(f"http://127.0.0.1:{port}")("presets", timeout=30)
        thread.join(timeout=1)
    assert r.code == 3, r
    assert r.err.startswith("error: ") and "(network_error)" in r.err, r


def test_usage_errors_exit_two():
    cli = Fluxctl("http://127.0.0.1:9")
    for args in ([], ["bogus"], ["get"], ["submit", "--preset", PRESET, "--output", "o"],
                 ["submit", "--input", "http://h/a", "--preset", PRESET, "--output", "o", "--storage", "ftp"],
                 ["submit", "--input", "http://h/a", "--preset", PRESET, "--output", "o", "--metadata", "oops"],
                 ["submit", "--input", "http://h/a", "--preset", PRESET, "--output", "o", "--priority", "99"],
                 ["list", "--limit", "1000"], ["--url", "ftp://x", "workers"]):
        r = cli(*args)
        assert r.code == 2, r
        assert r.err.strip() and r.out == "", r


def test_help_and_version():
    cli = Fluxctl(None)
    version = cli("--version")
    assert version.code == 0 and version.out == f"fluxctl {project_version()}\n", version
    help_text = cli("--help")
    assert help_text.code == 0, help_text
    for word in ("submit", "watch", "get", "list", "cancel", "workers", "presets", "--url", "--api-key",
                 "--json", "FLUX_URL", "FLUX_API_KEY"):
        assert word in help_text.out, (word, help_text)
    submit_help = cli("submit", "--help")
    for word in ("--input", "--preset", "--output", "--storage", "--type", "--priority", "--callback",
                 "--metadata", "--idempotency-key", "--wait"):
        assert word in submit_help.out, (word, submit_help)
    assert pathlib.Path(fluxctl_binary()).exists()
