"""Uploads: S3 multipart, S3 failures and retries, local storage, metadata,
S3 inputs."""

import pytest

from harness import media, outputs
from harness.checks import assert_nothing_uploaded, assert_worker_clean
from harness.jobs import describe, job_request, new_job_id, run_job, submit
from harness.s3proxy import FlakyS3Proxy
from harness.s3server import S3rver, worker_env


@pytest.fixture
def own_s3(tmp_path):
    """An s3rver of this test's own, free to be stopped."""
    server = S3rver(tmp_path / "own-s3rver")
    server.start()
    yield server
    server.stop()


def test_multipart_upload_above_threshold(worker_factory, s3, bucket, inputs, clips, tmp_path):
    env = worker_env(s3, bucket)
    env.update(ALLOW_PRIVATE_INPUTS="true", S3_MULTIPART_THRESHOLD="262144",
               S3_PART_SIZE="131072")
    worker = worker_factory(env=env, name="multipart")
    key = "multipart/out.mp4"
    final = run_job(worker, job_request(new_job_id("multipart"), inputs.clip_url("main.mp4"),
                                        "720p_h264", key)).expect_terminal("COMPLETED")
    size = s3.list_objects(bucket, key).get(key)
    assert size and size > 2 * 131072, f"output of {size} bytes does not span 2 parts; test needs a bigger clip"
    parts = s3.stored_parts(bucket)
    uploads = {upload_id for upload_id, _ in parts}
    assert len(uploads) == 1 and len(parts) >= 2, (
        f"expected one multipart upload of >= 2 parts for {size} bytes, s3rver stored {parts}")
    expected_parts = -(-size // 131072)
    assert sorted(n for _, n in parts) == list(range(1, expected_parts + 1)), (
        f"parts {sorted(n for _, n in parts)} for {size} bytes at 131072 per part")
    outputs.check_single_s3(s3, bucket, key, final, tmp_path,
                            media.input_duration(clips.path("main.mp4")), 720, True)
    media.assert_decodes(tmp_path / "out.mp4", key)
    assert_worker_clean(worker)


def test_single_put_below_threshold_carries_metadata(worker_factory, s3, bucket, inputs, clips,
                                                     tmp_path):
    worker = worker_factory(env={**worker_env(s3, bucket), "ALLOW_PRIVATE_INPUTS": "true"},
                            name="metadata")
    key = "meta/out.mp4"
    metadata = {"customer": "acme", "ticket-id": "T-42"}
    final = run_job(worker, job_request(new_job_id("meta"), inputs.clip_url("main.mp4"),
                                        "480p_h264", key, metadata=metadata)
                    ).expect_terminal("COMPLETED")
    assert s3.stored_parts(bucket) == [], "a small output went through multipart"
    outputs.check_single_s3(s3, bucket, key, final, tmp_path,
                            media.input_duration(clips.path("main.mp4")), 480, True,
                            metadata=metadata)


def test_s3_down_during_encode_fails_with_upload_failed(worker_factory, own_s3, inputs, tmp_path):
    bucket = own_s3.create_bucket()
    worker = worker_factory(env={**worker_env(own_s3, bucket), "ALLOW_PRIVATE_INPUTS": "true"},
                            name="s3-down")
    key = "down/out.mp4"
    stream = submit(worker, job_request(new_job_id("s3down"), inputs.clip_url("medium.mp4"),
                                        "720p_h264", key), timeout=300)
    stream.wait_phase("ENCODING", timeout=60)
    own_s3.stop()
    final = stream.expect_terminal("FAILED", "upload_failed", timeout=240)
    statuses = stream.statuses()
    assert "JOB_STATUS_UPLOADING" in statuses, f"never tried to upload:\n{describe(stream.events)}"
    own_s3.start()
    assert_nothing_uploaded(own_s3, bucket, prefix="down/", events=stream.events)
    assert_worker_clean(worker)
    assert final.output_url == "", f"a failed job reports output_url {final.output_url!r}"


def test_s3_slow_down_is_retried_then_fails(worker_factory, s3, bucket, inputs):
    proxy = FlakyS3Proxy(s3.port, fail_first=None)
    try:
        env = worker_env(s3, bucket)
        env.update(S3_ENDPOINT=proxy.endpoint, ALLOW_PRIVATE_INPUTS="true")
        worker = worker_factory(env=env, name="slowdown")
        key = "slow/out.mp4"
        stream = run_job(worker, job_request(new_job_id("slowdown"), inputs.clip_url("main.mp4"),
                                             "480p_h264", key), timeout=300)
        stream.expect_terminal("FAILED", "upload_failed", timeout=300)
        attempts = [r for r in proxy.seen() if r[0] == "PUT" and r[1].split("?")[0].endswith(key)]
        assert len(attempts) >= 2, f"a 503 SlowDown was not retried: {proxy.seen()}"
        assert_nothing_uploaded(s3, bucket, prefix="slow/", events=stream.events)
        assert_worker_clean(worker)
    finally:
        proxy.close()


def test_transient_s3_errors_are_retried_to_success(worker_factory, s3, bucket, inputs, clips,
                                                    tmp_path):
    proxy = FlakyS3Proxy(s3.port, fail_first=2)
    try:
        env = worker_env(s3, bucket)
        env.update(S3_ENDPOINT=proxy.endpoint, ALLOW_PRIVATE_INPUTS="true")
        worker = worker_factory(env=env, name="transient")
        key = "transient/out.mp4"
        stream = run_job(worker, job_request(new_job_id("transient"), inputs.clip_url("main.mp4"),
                                             "480p_h264", key))
        final = stream.expect_terminal("COMPLETED")
        assert [r[2] for r in proxy.seen()][:2] == [503, 503], f"proxy saw {proxy.seen()}"
        local = s3.download(bucket, key, tmp_path / "out.mp4")
        assert local.stat().st_size == final.result.size_bytes
        media.assert_playable_video(media.ffprobe(local), key, height=480, audio=True)
    finally:
        proxy.close()


def test_local_storage(worker_factory, inputs, clips, tmp_path, pb):
    out_dir = tmp_path / "local-out"
    out_dir.mkdir()
    worker = worker_factory(env={"STORAGE_TYPE": "local", "LOCAL_STORAGE_DIR": str(out_dir),
                                 "ALLOW_PRIVATE_INPUTS": "true"}, name="local")
    status = worker.status()
    assert list(status.storage_types) == ["local"], f"storage_types {list(status.storage_types)}"

    path = "a/b/out.mp4"
    final = run_job(worker, job_request(new_job_id("local"), inputs.clip_url("main.mp4"),
                                        "480p_h264", path, storage="local")
                    ).expect_terminal("COMPLETED")
    target = out_dir / path
    assert target.is_file(), f"no file at {target}; LOCAL_STORAGE_DIR has {list(out_dir.rglob('*'))}"
    assert final.output_url == f"file://{target}", f"output_url {final.output_url!r}, want file://{target}"
    assert target.stat().st_size == final.result.size_bytes, "result.size_bytes != file size"
    info = media.ffprobe(target)
    media.assert_playable_video(info, str(target), height=480, audio=True)
    media.assert_duration_close(media.duration(info), media.input_duration(clips.path("main.mp4")), path)

    prefix = "hls/show"
    final = run_job(worker, job_request(new_job_id("local-hls"), inputs.clip_url("main.mp4"),
                                        "hls_720p", prefix, storage="local")
                    ).expect_terminal("COMPLETED")
    playlist = out_dir / prefix / "playlist.m3u8"
    assert final.output_url == f"file://{playlist}", f"output_url {final.output_url!r}"
    media.assert_playable_video(media.ffprobe(playlist), str(playlist), height=720, audio=True)

    files = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    stray = [f for f in files if f != path and not f.startswith(prefix + "/")]
    assert not stray, f"temporary or stray files left in LOCAL_STORAGE_DIR: {stray}"
    assert final.result.file_count == len([f for f in files if f.startswith(prefix + "/")])
    assert_worker_clean(worker)

    refused = submit(worker, job_request(new_job_id("no-s3"), inputs.clip_url("main.mp4"),
                                         "480p_h264", "x.mp4", storage="s3"))
    refused.expect_rpc_error("INVALID_ARGUMENT")


def test_s3_input(worker_factory, s3, bucket, clips, tmp_path):
    worker = worker_factory(env=worker_env(s3, bucket), name="s3-input")
    s3.client().upload_file(str(clips.path("main.mp4")), bucket, "sources/input.mp4")
    key = "from-s3/out.mp4"
    final = run_job(worker, job_request(new_job_id("s3in"), f"s3://{bucket}/sources/input.mp4",
                                        "480p_h264", key)).expect_terminal("COMPLETED")
    outputs.check_single_s3(s3, bucket, key, final, tmp_path,
                            media.input_duration(clips.path("main.mp4")), 480, True)
    missing = run_job(worker, job_request(new_job_id("s3missing"), f"s3://{bucket}/sources/nope.mp4",
                                          "480p_h264", "from-s3/nope.mp4"))
    missing.expect_terminal("FAILED", "input_not_found")
    assert_worker_clean(worker)
