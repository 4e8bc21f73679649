"""ffmpeg-level hostile inputs through a real worker (and, end to end, through
the control plane): playlists and concat lists in disguise that point at
/etc/passwd and at an internal listener, the AVI/GAB2 embedded-playlist
trick, subfile:/data:/gopher: inputs, a decompression bomb, inputs that never
end and a file that claims to last for days.

Each case has one expected outcome: a FAILED job with its exact error_code
and a reason (or, for the GAB2 trick, a clean output without the smuggled
content); never a crash, a hang, a file left in WORK_DIR, /etc/passwd in any
output, or a connection to the trap on loopback (tests/integration/
test_security.py has the simpler cases; these extend it).

Cases written against the resource-limit contract (MAX_INPUT_PIXELS,
MAX_INPUT_DURATION: /tmp/limits_contract.md, issue 5) skip with that reason
while the worker under test does not read those variables yet.
"""

import base64
import uuid

import pytest

import hostile
from cpharness.api import job_body
from harness import media
from harness.checks import assert_worker_clean
from harness.jobs import job_request, new_job_id, run_job
from harness.s3server import worker_env

MAX_INPUT_BYTES = 3_000_000


@pytest.fixture(scope="module")
def out_bucket(s3):
    return s3.create_bucket("hostile-ff")


@pytest.fixture(scope="module")
def local_out(tmp_path_factory):
    return tmp_path_factory.mktemp("local-out")


@pytest.fixture(scope="module")
def local_inputs(tmp_path_factory):
    return tmp_path_factory.mktemp("local-inputs")


@pytest.fixture(scope="module")
def worker(module_worker_factory, s3, out_bucket, local_out, local_inputs):
    """Loopback inputs allowed (the input server is on 127.0.0.1), so that
    what is tested is the input itself; a LOCAL_INPUT_DIR; a small input cap.
    The resource limits keep their defaults."""
    env = worker_env(s3, out_bucket)
    env.update(LOCAL_STORAGE_DIR=str(local_out), ALLOW_PRIVATE_INPUTS="true",
               LOCAL_INPUT_DIR=str(local_inputs), MAX_INPUT_BYTES=str(MAX_INPUT_BYTES))
    return module_worker_factory(env=env, name="ffmpeg-hostile")


@pytest.fixture(scope="module")
def cp(module_cp_factory, worker):
    return module_cp_factory([worker], name="cp-hostile")


def fail(worker, url, code, s3, bucket, local_out, trap, **kwargs):
    return hostile.run_failing_job(worker, url, code, s3=s3, bucket=bucket, local_out=local_out,
                                   trap=trap, **kwargs)


def playlist_to(trap) -> bytes:
    """An HLS playlist whose key, init section and segments point at
    /etc/passwd, at the trap and at the metadata service."""
    return ("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:10\n"
            f"#EXT-X-KEY:METHOD=AES-128,URI=\"{trap.url(path='/key')}\"\n"
            f"#EXT-X-MAP:URI=\"{trap.url(path='/init.mp4')}\"\n"
            "#EXTINF:10,\nfile:///etc/passwd\n"
            f"#EXTINF:10,\n{trap.url(path='/seg.ts')}\n"
            f"#EXTINF:10,\nhttp://[::1]:{trap.port}/seg6.ts\n"
            "#EXTINF:10,\nhttp://169.254.169.254/latest/meta-data/\n#EXT-X-ENDLIST\n").encode()


def concat_list_to(trap) -> bytes:
    return ("ffconcat version 1.0\nfile '/etc/passwd'\n"
            f"file '{trap.url(path='/part.mp4')}'\nfile 'file:///etc/shadow'\n").encode()


# ---- playlists and concat lists in disguise -----------------------------------------


@pytest.mark.parametrize("name", ["video.mp4", "playlist.m3u8", "clip.MOV"])
def test_playlist_served_over_http(name, worker, s3, out_bucket, local_out, inputs, trap):
    url = inputs.server.add_file(f"hls/{uuid.uuid4().hex[:8]}/{name}", playlist_to(trap))
    fail(worker, url, "input_invalid", s3, out_bucket, local_out, trap)


def test_playlist_as_a_local_file(worker, s3, out_bucket, local_out, local_inputs, trap):
    target = local_inputs / f"{uuid.uuid4().hex[:8]}-video.mp4"
    target.write_bytes(playlist_to(trap))
    fail(worker, f"file://{target}", "input_invalid", s3, out_bucket, local_out, trap,
         storage="local")


@pytest.mark.parametrize("name", ["video.mp4", "list.ffconcat", "list.txt"])
def test_concat_list_served_over_http(name, worker, s3, out_bucket, local_out, inputs, trap):
    url = inputs.server.add_file(f"concat/{uuid.uuid4().hex[:8]}/{name}", concat_list_to(trap))
    fail(worker, url, "input_invalid", s3, out_bucket, local_out, trap)


def test_concat_list_as_a_local_file(worker, s3, out_bucket, local_out, local_inputs, trap):
    target = local_inputs / f"{uuid.uuid4().hex[:8]}-concat.mp4"
    target.write_bytes(concat_list_to(trap))
    fail(worker, f"file://{target}", "input_invalid", s3, out_bucket, local_out, trap)


def test_playlist_in_disguise_through_the_control_plane(cp, worker, local_out, inputs, trap):
    """End to end: the control plane accepts the URL (it is an ordinary
    loopback http URL on a stack that allows them), the worker refuses what
    it downloaded, and the job document says why."""
    url = inputs.server.add_file(f"hls/{uuid.uuid4().hex[:8]}/movie.mp4", playlist_to(trap))
    path = f"e2e/{uuid.uuid4().hex[:8]}.mp4"
    job_id = cp.api.submit(job_body(url, path, storage="local"))
    doc = cp.api.wait_job(job_id, timeout=90)
    assert doc["status"] == "failed" and doc["error_code"] == "input_invalid", doc
    assert doc["error"] and hostile.PASSWD_MARKER.decode() not in doc["error"], doc
    assert doc["attempts"] == 1, f"a deterministic refusal was retried: {doc}"
    assert not (local_out / path).exists()
    assert_worker_clean(worker, "after the end-to-end refusal")
    assert trap.seen() == [], f"connections reached the trap: {trap.seen()}"


# ---- the AVI/GAB2 embedded-playlist trick ---------------------------------------------


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return hostile.jpeg_frames(tmp_path_factory.mktemp("frames"))


def test_gab2_crafting_reaches_the_embedded_demuxer(frames, tmp_path):
    """The test of the test: the same AVI with an SRT in its GAB2 chunk is
    read as a subtitle stream, so the crafted bytes do reach avidec's GAB2
    parser; the playlist variant below is then a real attack."""
    path = tmp_path / "srt.avi"
    srt = b"1\n00:00:00,000 --> 00:00:01,000\nhello\n\n"
    path.write_bytes(hostile.mjpeg_avi(frames, 64, 48, gab2_payload=srt))
    codecs = [s.get("codec_name") for s in media.ffprobe(path)["streams"]]
    assert codecs == ["mjpeg", "subrip"], codecs


def test_gab2_playlist_is_neither_followed_nor_kept(frames, worker, s3, out_bucket, inputs, trap,
                                                    tmp_path):
    """The embedded playlist points at /etc/passwd and at the trap. Expected:
    the job completes with the video alone (ffmpeg reads the GAB2 playlist as
    nothing: its sub-demuxer may only be SRT/ASS, and hls is outside the
    worker's demuxer allow-list anyway); no subtitle stream, no passwd bytes
    in the output, no connection."""
    avi = hostile.mjpeg_avi(frames, 64, 48, gab2_payload=playlist_to(trap))
    url = inputs.server.add_file(f"gab2/{uuid.uuid4().hex[:8]}/clip.avi", avi)
    path = f"gab2/{uuid.uuid4().hex[:8]}.mp4"
    final = run_job(worker, job_request(new_job_id("gab2"), url, "480p_h264", path)) \
        .expect_terminal("COMPLETED", timeout=120)
    assert final.output_url.endswith(path)
    local = s3.download(out_bucket, path, tmp_path / "out.mp4")
    assert hostile.PASSWD_MARKER not in local.read_bytes()
    streams = media.ffprobe(local)["streams"]
    assert [s["codec_type"] for s in streams] == ["video"], streams
    assert_worker_clean(worker, "after the GAB2 job")
    assert trap.seen() == [], f"the embedded playlist was followed: {trap.seen()}"


def test_gab2_playlist_through_the_control_plane(frames, cp, worker, local_out, inputs, trap,
                                                 tmp_path):
    avi = hostile.mjpeg_avi(frames, 64, 48, gab2_payload=playlist_to(trap))
    url = inputs.server.add_file(f"gab2/{uuid.uuid4().hex[:8]}/clip.mp4", avi)
    path = f"e2e-gab2/{uuid.uuid4().hex[:8]}.mp4"
    doc = cp.api.wait_job(cp.api.submit(job_body(url, path, storage="local")), timeout=120)
    assert doc["status"] == "completed", doc
    written = (local_out / path).read_bytes()
    assert hostile.PASSWD_MARKER not in written
    assert trap.seen() == []


# ---- subfile:, data:, gopher: ---------------------------------------------------------


# {port}: the trap's; {hls}: a playlist pointing at /etc/passwd and the trap, base64.
SCHEME_URLS = [
    "subfile:,,start,0,end,0,,:/etc/passwd",
    "SUBFILE:,,start,0,end,0,,:http://127.0.0.1:{port}/secret",
    "data:application/vnd.apple.mpegurl;base64,{hls}",
    "data:video/mp4,#EXTM3U%0A#EXTINF:1,%0Afile:///etc/passwd%0A",
    "Data:,x",
    "gopher://127.0.0.1:{port}/_GET%20/latest/meta-data/%20HTTP/1.0%0D%0A%0D%0A",
    "GOPHER://[::1]:{port}/1",
    "gophers://127.0.0.1:{port}/1",
    "hls+http://127.0.0.1:{port}/x.m3u8",
    "tcp://127.0.0.1:{port}",
    "concat:http://127.0.0.1:{port}/a.mp4|/etc/passwd",
    "file:/etc/passwd",
]


def spell(template: str, trap) -> str:
    hls = base64.b64encode(playlist_to(trap)).decode()
    return template.replace("{port}", str(trap.port)).replace("{hls}", hls)


@pytest.mark.parametrize("template", SCHEME_URLS, ids=[u[:32] for u in SCHEME_URLS])
def test_forbidden_scheme_never_reaches_ffmpeg(template, worker, s3, out_bucket, local_out, trap):
    url = spell(template, trap)
    # file:/etc/passwd is a file URL, allowed on this worker only under LOCAL_INPUT_DIR.
    code = "url_path_forbidden" if url.startswith("file:") else "url_scheme_forbidden"
    fail(worker, url, code, s3, out_bucket, local_out, trap)


def test_forbidden_schemes_refused_by_the_control_plane(cp, trap):
    before = set(cp.api.all_job_ids())
    for template in SCHEME_URLS:
        url = spell(template, trap)
        response = cp.api.post("/api/v1/jobs", json=job_body(url, "x/out.mp4"))
        assert response.status_code == 400, f"{url}: {response.status_code} {response.text}"
        body = response.json()
        # No LOCAL_INPUT_DIR on this control plane: file: is a forbidden scheme too.
        assert (body["code"], body["field"]) == ("input_url_scheme_forbidden", "input_url"), (url, body)
    assert set(cp.api.all_job_ids()) == before
    assert trap.seen() == []


# ---- a decompression bomb -------------------------------------------------------------


@pytest.mark.skipif(not hostile.worker_knows("MAX_INPUT_PIXELS"),
                    reason="contract: MAX_INPUT_PIXELS (issue 5 resource limits) is not in this "
                           "worker yet; run again once it lands")
def test_decompression_bomb_is_refused_before_ffmpeg(frames, worker, s3, out_bucket, local_out,
                                                     inputs, trap):
    """2 KiB of AVI declaring an 8192x8192 MJPEG picture (67 Mpx, over the
    default MAX_INPUT_PIXELS of 8192x4320): input_too_large from the probe.
    (ffmpeg starts beside the probe and is stopped by its verdict: the
    contract's "stopped at once"; nothing is uploaded, nothing left running.)"""
    bomb = hostile.mjpeg_avi([hostile.with_declared_size(frames[0], 8192, 8192)], 8192, 8192)
    assert len(bomb) < 8192
    url = inputs.server.add_file(f"bomb/{uuid.uuid4().hex[:8]}/tiny.avi", bomb)
    stream = fail(worker, url, "input_too_large", s3, out_bucket, local_out, trap)
    assert "8192" in stream.final.error, stream.final.error


# ---- inputs that never end ------------------------------------------------------------


def test_endless_fast_stream_hits_the_size_cap(worker, s3, out_bucket, local_out, inputs, trap):
    """A chunked body that never ends, as fast as loopback allows: cut at
    MAX_INPUT_BYTES, and the worker hangs up on the server."""
    stats = {}
    url = hostile.add_endless_route(inputs.server, f"endless/{uuid.uuid4().hex[:8]}.mp4",
                                    b"\0" * 65536, 0, stats)
    fail(worker, url, "input_too_large", s3, out_bucket, local_out, trap)
    assert stats["closed"].wait(15), "the worker did not hang up on the endless stream"
    assert stats["bytes"] < 50 * MAX_INPUT_BYTES


def test_endless_trickle_ends_with_the_job_timeout(worker, s3, out_bucket, local_out, inputs, trap):
    """Sixteen bytes every quarter second, forever: never fast-failing, never
    done. The job's timeout ends it with "timeout" and the connection is
    closed; nothing waits for the hour-long download limit."""
    stats = {}
    url = hostile.add_endless_route(inputs.server, f"trickle/{uuid.uuid4().hex[:8]}.mp4",
                                    b"\0" * 16, 0.25, stats)
    fail(worker, url, "timeout", s3, out_bucket, local_out, trap, timeout_seconds=3, timeout=60)
    assert stats["closed"].wait(15), "the trickling connection was left open"


@pytest.mark.skipif(not hostile.worker_knows("MAX_INPUT_DURATION"),
                    reason="contract: MAX_INPUT_DURATION (issue 5 resource limits) is not in this "
                           "worker yet; run again once it lands")
def test_file_claiming_days_is_input_too_long(worker, s3, out_bucket, local_out, inputs, trap,
                                              tmp_path):
    """3 KiB claiming 3 days (over the default MAX_INPUT_DURATION of 1 day):
    input_too_long from the probe, which stops the encode it runs beside; the
    60 s job timeout is only here so that a regression fails ("timeout")
    instead of encoding days of duplicated frames."""
    path = hostile.days_long_mkv(tmp_path / "long.mkv", days=3)
    assert media.duration(media.ffprobe(path)) > 2 * 86400
    url = inputs.server.add_copy(f"long/{uuid.uuid4().hex[:8]}/days.mkv", path)
    fail(worker, url, "input_too_long", s3, out_bucket, local_out, trap, timeout_seconds=60)


def test_the_trap_saw_nothing(trap):
    assert trap.seen() == [], f"connections reached the trap during the module: {trap.seen()}"
