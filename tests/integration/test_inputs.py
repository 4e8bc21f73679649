"""Inputs a real client sends: no audio, odd sizes, 10-bit, vertical, other
containers, local files. Each must complete and play in a browser."""

import shutil

import pytest

from harness import media, outputs
from harness.checks import assert_worker_clean
from harness.jobs import job_request, new_job_id, run_job
from harness.s3server import worker_env


@pytest.fixture(scope="module")
def input_bucket(s3):
    return s3.create_bucket("inputs")


@pytest.fixture(scope="module")
def local_inputs(tmp_path_factory):
    return tmp_path_factory.mktemp("local-inputs")


@pytest.fixture(scope="module")
def worker(module_worker_factory, s3, input_bucket, local_inputs):
    env = worker_env(s3, input_bucket)
    env.update(ALLOW_PRIVATE_INPUTS="true", LOCAL_INPUT_DIR=str(local_inputs))
    return module_worker_factory(env=env, name="inputs")


def _run_single(worker, s3, bucket, url, preset, clip_path, height, audio, tmp_path, label):
    path = f"inputs/{label}.mp4"
    stream = run_job(worker, job_request(new_job_id(label), url, preset, path))
    final = stream.expect_terminal("COMPLETED")
    info = outputs.check_single_s3(s3, bucket, path, final, tmp_path,
                                   media.input_duration(clip_path), height, audio)
    assert_worker_clean(worker)
    return info


def test_input_without_audio_on_an_audio_preset(worker, s3, input_bucket, inputs, clips, tmp_path):
    _run_single(worker, s3, input_bucket, inputs.clip_url("noaudio.mp4"), "720p_h264",
                clips.path("noaudio.mp4"), 720, False, tmp_path, "noaudio-720p")


def test_input_without_audio_on_the_abr_preset(worker, s3, input_bucket, inputs, clips, tmp_path):
    prefix = "inputs/noaudio-abr"
    request = job_request(new_job_id("noaudio-abr"), inputs.clip_url("noaudio.mp4"),
                          "hls_720p_abr", prefix)
    final = run_job(worker, request).expect_terminal("COMPLETED")
    outputs.check_hls_abr(s3, input_bucket, prefix, final, tmp_path,
                          media.input_duration(clips.path("noaudio.mp4")), [720, 480, 360], False)
    assert_worker_clean(worker)


def test_odd_dimensions_give_even_output(worker, s3, input_bucket, inputs, clips, tmp_path):
    source = media.video_streams(media.ffprobe(clips.path("odd_1279x719.mp4")))[0]
    assert (source["width"], source["height"]) == (1279, 719), "the test clip is not odd-sized"
    _run_single(worker, s3, input_bucket, inputs.clip_url("odd_1279x719.mp4"), "720p_h264",
                clips.path("odd_1279x719.mp4"), 720, True, tmp_path, "odd")


def test_ten_bit_input_gives_8_bit_420(worker, s3, input_bucket, inputs, clips, tmp_path):
    source = media.video_streams(media.ffprobe(clips.path("tenbit.mp4")))[0]
    assert source["pix_fmt"] == "yuv420p10le", "the test clip is not 10-bit"
    _run_single(worker, s3, input_bucket, inputs.clip_url("tenbit.mp4"), "720p_h264",
                clips.path("tenbit.mp4"), 720, True, tmp_path, "tenbit")


def test_vertical_input_keeps_its_orientation(worker, s3, input_bucket, inputs, clips, tmp_path):
    info = _run_single(worker, s3, input_bucket, inputs.clip_url("vertical.mp4"), "720p_h264",
                       clips.path("vertical.mp4"), 720, True, tmp_path, "vertical")
    video = media.video_streams(info)[0]
    # scale=-2:720 of 720x1280 is about 405x720: portrait, not stretched.
    assert 400 <= int(video["width"]) <= 410, f"vertical output is {video['width']}x{video['height']}"


@pytest.mark.parametrize("clip", ["small.mkv", "small.mov", "small.ts", "small.webm"])
def test_other_containers(clip, worker, s3, input_bucket, inputs, clips, tmp_path):
    _run_single(worker, s3, input_bucket, inputs.clip_url(clip), "480p_h264", clips.path(clip),
                480, True, tmp_path, "container-" + clip.replace(".", "-"))


def test_file_url_inside_local_input_dir(worker, s3, input_bucket, clips, local_inputs, tmp_path):
    target = local_inputs / "sub dir" / "local clip.mp4"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clips.path("main.mp4"), target)
    url = "file://" + str(target).replace(" ", "%20")
    _run_single(worker, s3, input_bucket, url, "480p_h264", clips.path("main.mp4"), 480, True,
                tmp_path, "file-input")
    assert target.exists(), "the worker removed or moved the caller's input file"
