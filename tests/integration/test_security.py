"""Inputs that must be refused: forbidden schemes, paths and addresses, and
files that are really playlists or concat lists in disguise. Each fails with
its error_code, uploads nothing, leaves WORK_DIR empty and never leaks."""

import os
import random
import uuid

import pytest

from harness.checks import assert_nothing_uploaded, assert_worker_clean
from harness.jobs import job_request, new_job_id, run_job
from harness.ports import free_port
from harness.s3server import worker_env

PASSWD_MARKER = "root:x:0:0"


@pytest.fixture(scope="module")
def sec_bucket(s3):
    return s3.create_bucket("security")


@pytest.fixture(scope="module")
def local_out(tmp_path_factory):
    return tmp_path_factory.mktemp("local-out")


@pytest.fixture(scope="module")
def local_inputs(tmp_path_factory):
    return tmp_path_factory.mktemp("local-inputs")


def _env(s3, bucket, local_out, **extra):
    env = worker_env(s3, bucket)
    env["LOCAL_STORAGE_DIR"] = str(local_out)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def open_worker(module_worker_factory, s3, sec_bucket, local_out, local_inputs):
    """Loopback inputs allowed (the test server is on 127.0.0.1) and a LOCAL_INPUT_DIR."""
    return module_worker_factory(
        env=_env(s3, sec_bucket, local_out, ALLOW_PRIVATE_INPUTS="true",
                 LOCAL_INPUT_DIR=str(local_inputs)),
        name="open")


@pytest.fixture(scope="module")
def strict_worker(module_worker_factory, s3, sec_bucket, local_out):
    """The production defaults: no private addresses, no file:// at all."""
    return module_worker_factory(env=_env(s3, sec_bucket, local_out, ALLOW_PRIVATE_INPUTS=None),
                                 name="strict")


def expect_failure(worker, s3, bucket, local_out, url, error_code, storage="s3", timeout=90):
    path = f"security/{uuid.uuid4().hex[:8]}.mp4"
    request = job_request(new_job_id("sec"), url, "480p_h264", path, storage=storage)
    stream = run_job(worker, request, timeout)
    final = stream.expect_terminal("FAILED", error_code, timeout)
    assert PASSWD_MARKER not in final.error, f"the error text leaks /etc/passwd: {final.error!r}"
    assert_nothing_uploaded(s3, bucket, local_out, events=stream.events)
    assert_worker_clean(worker, f"after a job failed with {error_code}")
    for text in (worker.stdout_text(), worker.stderr_text()):
        assert PASSWD_MARKER not in text, "the worker's output contains /etc/passwd"
    return final


# ---- schemes, paths and addresses ------------------------------------------------------


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "concat:/etc/passwd|/etc/passwd",
    "concat:http://127.0.0.1:9/a.mp4|http://127.0.0.1:9/b.mp4",
    "data:video/mp4;base64,AAAAIGZ0eXBpc29t",
    "ftp://127.0.0.1:21/video.mp4",
    "gopher://127.0.0.1:70/1video",
    "pipe:0",
    "rtmp://127.0.0.1/live/stream",
])
def test_forbidden_scheme(url, strict_worker, s3, sec_bucket, local_out):
    expect_failure(strict_worker, s3, sec_bucket, local_out, url, "url_scheme_forbidden")


@pytest.mark.parametrize("url", ["subfile,,start,0,end,0,,:/etc/passwd", "/etc/passwd",
                                 "http//127.0.0.1/x.mp4"])
def test_not_a_url(url, strict_worker, s3, sec_bucket, local_out):
    expect_failure(strict_worker, s3, sec_bucket, local_out, url,
                   ("url_invalid", "url_scheme_forbidden"))


def test_file_url_outside_local_input_dir(open_worker, s3, sec_bucket, local_out):
    expect_failure(open_worker, s3, sec_bucket, local_out, "file:///etc/passwd",
                   "url_path_forbidden", storage="local")


@pytest.mark.parametrize("suffix", ["/../../../../../../etc/passwd",
                                    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"])
def test_file_url_escaping_local_input_dir(suffix, open_worker, s3, sec_bucket, local_out,
                                           local_inputs):
    expect_failure(open_worker, s3, sec_bucket, local_out, f"file://{local_inputs}{suffix}",
                   "url_path_forbidden")


def test_symlink_out_of_local_input_dir(open_worker, s3, sec_bucket, local_out, local_inputs):
    link = local_inputs / "innocent.mp4"
    if not link.exists():
        os.symlink("/etc/passwd", link)
    expect_failure(open_worker, s3, sec_bucket, local_out, f"file://{link}", "url_path_forbidden",
                   storage="local")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.1", "2130706433", "0.0.0.0",
                                  "[::ffff:127.0.0.1]"])
def test_loopback_refused_without_contacting_it(host, strict_worker, s3, sec_bucket, local_out,
                                                 recorder):
    recorder.add_file("clip.mp4", b"not reached")
    url = f"http://{host}:{recorder.port}/clip.mp4"
    # Odd spellings may be refused as unparsable; what matters is the refusal
    # and that nothing was contacted.
    codes = ("url_address_forbidden",) if host in ("127.0.0.1", "localhost") else (
        "url_address_forbidden", "url_invalid")
    expect_failure(strict_worker, s3, sec_bucket, local_out, url, codes)
    assert recorder.all_requests() == [], (
        f"the worker contacted the loopback server for {url}: {recorder.all_requests()}")


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://10.11.12.13/video.mp4",
    "http://192.168.1.1/video.mp4",
    "http://172.16.0.1/video.mp4",
    "http://[::1]/video.mp4",
])
def test_private_and_metadata_addresses_refused(url, strict_worker, s3, sec_bucket, local_out):
    expect_failure(strict_worker, s3, sec_bucket, local_out, url, "url_address_forbidden")


# ---- files that are not what they claim -------------------------------------------------

HLS_TO_PASSWD = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
HLS_TO_METADATA = (b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n"
                   b"http://169.254.169.254/latest/meta-data/\n#EXT-X-ENDLIST\n")
CONCAT_TO_PASSWD = b"ffconcat version 1.0\nfile '/etc/passwd'\n"


def test_hls_playlist_disguised_as_mp4_pointing_at_passwd(open_worker, s3, sec_bucket, local_out,
                                                          inputs):
    url = inputs.server.add_file(f"evil/{uuid.uuid4().hex[:6]}/video.mp4", HLS_TO_PASSWD)
    expect_failure(open_worker, s3, sec_bucket, local_out, url, "input_invalid")


def test_hls_playlist_disguised_as_mp4_pointing_at_metadata(open_worker, s3, sec_bucket,
                                                            local_out, inputs):
    url = inputs.server.add_file(f"evil/{uuid.uuid4().hex[:6]}/video.mp4", HLS_TO_METADATA)
    expect_failure(open_worker, s3, sec_bucket, local_out, url, "input_invalid", storage="local")


def test_hls_playlist_disguised_as_mp4_never_fetches_its_segments(open_worker, s3, sec_bucket,
                                                                  local_out, inputs, recorder):
    recorder.add_file("segment.ts", b"\x47" * 188)
    playlist = (b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n"
                + recorder.url("segment.ts").encode() + b"\n#EXT-X-ENDLIST\n")
    url = inputs.server.add_file(f"evil/{uuid.uuid4().hex[:6]}/video.mp4", playlist)
    expect_failure(open_worker, s3, sec_bucket, local_out, url, "input_invalid")
    assert recorder.all_requests() == [], (
        f"ffmpeg followed the disguised playlist to {recorder.all_requests()}")


def test_concat_list_disguised_as_mp4(open_worker, s3, sec_bucket, local_out, inputs):
    url = inputs.server.add_file(f"evil/{uuid.uuid4().hex[:6]}/video.mp4", CONCAT_TO_PASSWD)
    expect_failure(open_worker, s3, sec_bucket, local_out, url, "input_invalid")


def test_sdp_file_disguised_as_mp4(open_worker, s3, sec_bucket, local_out, inputs):
    port = free_port()
    sdp = (f"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n"
           f"m=video {port} RTP/AVP 96\na=rtpmap:96 H264/90000\n").encode()
    url = inputs.server.add_file(f"evil/{uuid.uuid4().hex[:6]}/video.mp4", sdp)
    expect_failure(open_worker, s3, sec_bucket, local_out, url, "input_invalid")


def test_playlist_disguised_as_local_file(open_worker, s3, sec_bucket, local_out, local_inputs):
    target = local_inputs / "playlist-in-disguise.mp4"
    target.write_bytes(HLS_TO_PASSWD)
    expect_failure(open_worker, s3, sec_bucket, local_out, f"file://{target}", "input_invalid")


def test_corrupt_file(open_worker, s3, sec_bucket, local_out, inputs):
    garbage = random.Random(20240601).randbytes(300_000)
    url = inputs.server.add_file(f"bad/{uuid.uuid4().hex[:6]}/corrupt.mp4", garbage)
    expect_failure(open_worker, s3, sec_bucket, local_out, url, "input_invalid")


def test_text_file(open_worker, s3, sec_bucket, local_out, inputs):
    url = inputs.server.add_file(f"bad/{uuid.uuid4().hex[:6]}/notes.mp4",
                                 b"<html><body>Not a video</body></html>\n" * 50)
    expect_failure(open_worker, s3, sec_bucket, local_out, url, "input_invalid", storage="local")


def test_empty_file(open_worker, s3, sec_bucket, local_out, inputs):
    url = inputs.server.add_file(f"bad/{uuid.uuid4().hex[:6]}/empty.mp4", b"")
    expect_failure(open_worker, s3, sec_bucket, local_out, url, "input_empty")


def test_missing_file(open_worker, s3, sec_bucket, local_out, inputs):
    url = inputs.server.url(f"bad/{uuid.uuid4().hex[:6]}/missing.mp4")
    expect_failure(open_worker, s3, sec_bucket, local_out, url, "input_not_found", storage="local")


def test_server_error_is_retried_then_fails(open_worker, s3, sec_bucket, local_out, recorder):
    url = recorder.add_status("flaky.mp4", 503)
    expect_failure(open_worker, s3, sec_bucket, local_out, url, "input_download_failed")
    gets = [r for r in recorder.requests_for("flaky.mp4") if r[0] == "GET"]
    assert len(gets) >= 2, f"a 503 was not retried: {recorder.all_requests()}"


def test_truncated_download(open_worker, s3, sec_bucket, local_out, recorder, clips):
    content = clips.path("main.mp4").read_bytes()
    url = recorder.add_truncated("truncated.mp4", content[: len(content) // 2], len(content))
    expect_failure(open_worker, s3, sec_bucket, local_out, url, "input_download_failed")


def test_connection_refused(open_worker, s3, sec_bucket, local_out):
    url = f"http://127.0.0.1:{free_port()}/video.mp4"
    expect_failure(open_worker, s3, sec_bucket, local_out, url, "input_download_failed")


# ---- MAX_INPUT_BYTES -------------------------------------------------------------------


def test_max_input_bytes(worker_factory, s3, bucket, tmp_path, inputs, recorder, clips):
    local_out = tmp_path / "out"
    local_out.mkdir()
    worker = worker_factory(env=_env(s3, bucket, local_out, ALLOW_PRIVATE_INPUTS="true",
                                     MAX_INPUT_BYTES="400000"), name="capped")
    big = clips.path("main.mp4").read_bytes()
    assert len(big) > 400000, "the test clip must exceed the cap"
    expect_failure(worker, s3, bucket, local_out, inputs.clip_url("main.mp4"), "input_too_large")
    # Without Content-Length the cap must be enforced while streaming.
    chunked = recorder.add_chunked("chunked.mp4", big)
    expect_failure(worker, s3, bucket, local_out, chunked, "input_too_large")
    # A small input still goes through.
    small = clips.path("small.mkv")
    assert small.stat().st_size < 400000
    request = job_request(new_job_id("under-cap"), inputs.clip_url("small.mkv"), "480p_h264",
                          "capped/small.mp4")
    run_job(worker, request).expect_terminal("COMPLETED")
    assert "capped/small.mp4" in s3.list_objects(bucket, "capped/")
