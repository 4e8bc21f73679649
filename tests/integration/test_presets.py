"""Every built-in preset once, read back from the bucket with a real S3 GET and
checked with ffprobe; and the progress stream a client sees."""

import datetime

import pytest

from harness import media, outputs
from harness.checks import assert_worker_clean
from harness.jobs import BUILTIN_PRESETS, describe, job_request, new_job_id, phase_name, run_job, status_name
from harness.s3server import worker_env


@pytest.fixture(scope="module")
def preset_bucket(s3):
    return s3.create_bucket("presets")


@pytest.fixture(scope="module")
def worker(module_worker_factory, s3, preset_bucket):
    env = worker_env(s3, preset_bucket)
    env.update(ALLOW_PRIVATE_INPUTS="true", MAX_CONCURRENT_JOBS="2")
    return module_worker_factory(env=env, name="presets")


@pytest.mark.parametrize("preset", list(BUILTIN_PRESETS))
def test_builtin_preset_output_plays(preset, worker, s3, preset_bucket, inputs, clips, tmp_path):
    output_type, has_audio, heights = BUILTIN_PRESETS[preset]
    path = f"presets/{preset}.mp4" if output_type == "single" else f"presets/{preset}"
    request = job_request(new_job_id(preset.replace("_", "-")), inputs.clip_url("main.mp4"),
                          preset, path)
    stream = run_job(worker, request)
    final = stream.expect_terminal("COMPLETED")
    source = media.input_duration(clips.path("main.mp4"))
    if output_type == "single":
        outputs.check_single_s3(s3, preset_bucket, path, final, tmp_path, source, heights[0], has_audio)
    elif output_type == "hls" and len(heights) == 1:
        outputs.check_hls_single_variant(s3, preset_bucket, path, final, tmp_path, source,
                                         heights[0], has_audio)
    elif output_type == "hls":
        outputs.check_hls_abr(s3, preset_bucket, path, final, tmp_path, source, heights, has_audio)
    else:
        outputs.check_dash(s3, preset_bucket, path, final, tmp_path, source, heights, has_audio)
    assert_worker_clean(worker)


def _parse_rfc3339(text: str) -> datetime.datetime:
    value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert value.tzinfo is not None, f"timestamp {text!r} has no time zone"
    return value


def test_progress_stream_from_queued_to_completed(worker, s3, preset_bucket, inputs, clips, tmp_path):
    """QUEUED -> PROCESSING (downloading, probing, encoding with rising progress,
    validating) -> UPLOADING -> COMPLETED, each event numbered and stamped."""
    job_id = new_job_id("sequence")
    path = "presets/sequence.mp4"
    stream = run_job(worker, job_request(job_id, inputs.clip_url("medium.mp4"), "720p_h264", path))
    final = stream.expect_terminal("COMPLETED")
    events = stream.events
    log = describe(events)

    assert status_name(events[0].status) == "JOB_STATUS_QUEUED", f"first event is not QUEUED:\n{log}"
    assert phase_name(events[0].phase) == "JOB_PHASE_QUEUED", f"first event's phase:\n{log}"
    for event in events:
        assert event.job_id == job_id, f"event #{event.sequence} carries job_id {event.job_id!r}"
        _parse_rfc3339(event.timestamp)
        assert 0.0 <= event.progress <= 100.0, f"progress out of range:\n{log}"
    sequences = [e.sequence for e in events]
    assert sequences[0] >= 1 and all(b > a for a, b in zip(sequences, sequences[1:])), (
        f"sequence numbers not increasing: {sequences}")
    stamps = [_parse_rfc3339(e.timestamp) for e in events]
    assert all(b >= a for a, b in zip(stamps, stamps[1:])), f"timestamps go backwards:\n{log}"

    # Statuses never go back: QUEUED < PROCESSING < UPLOADING < COMPLETED, each seen.
    order = ["JOB_STATUS_QUEUED", "JOB_STATUS_PROCESSING", "JOB_STATUS_UPLOADING",
             "JOB_STATUS_COMPLETED"]
    ranks = [order.index(status_name(e.status)) for e in events]
    assert ranks == sorted(ranks), f"status went backwards:\n{log}"
    assert set(ranks) == set(range(4)), f"a status is missing:\n{log}"

    phases = ["JOB_PHASE_DOWNLOADING", "JOB_PHASE_PROBING", "JOB_PHASE_ENCODING",
              "JOB_PHASE_VALIDATING", "JOB_PHASE_UPLOADING"]
    seen = [phase_name(e.phase) for e in events if phase_name(e.phase) in phases]
    first_seen = [p for i, p in enumerate(seen) if p not in seen[:i]]
    assert first_seen == phases, f"phases {first_seen}, want {phases} in that order:\n{log}"
    processing = {phase_name(e.phase) for e in events if status_name(e.status) == "JOB_STATUS_PROCESSING"}
    assert set(phases[:4]) <= processing, f"PROCESSING events lack phases {set(phases[:4]) - processing}"
    uploading = [e for e in events if status_name(e.status) == "JOB_STATUS_UPLOADING"]
    assert all(phase_name(e.phase) == "JOB_PHASE_UPLOADING" for e in uploading), (
        f"UPLOADING status outside the uploading phase:\n{log}")

    encoding = [e for e in events if phase_name(e.phase) == "JOB_PHASE_ENCODING"]
    values = [e.progress for e in encoding]
    assert values == sorted(values), f"encoding progress goes down: {values}"
    assert len(set(values)) >= 2, f"encoding progress never moved: {values}"
    assert any(e.fps > 0 for e in encoding), f"no encoding event reports fps:\n{log}"
    assert any(e.speed > 0 for e in encoding), f"no encoding event reports speed:\n{log}"
    assert any(e.eta_seconds >= 0 for e in encoding), f"no encoding event reports an ETA:\n{log}"

    assert final.progress == pytest.approx(100.0), f"COMPLETED with progress {final.progress}"
    outputs.check_single_s3(s3, preset_bucket, path, final, tmp_path,
                            media.input_duration(clips.path("medium.mp4")), 720, True)
    assert_worker_clean(worker)


def test_list_presets_and_status_describe_the_builtins(worker, pb):
    presets = {p.name: p for p in worker.list_presets().presets}
    missing = set(BUILTIN_PRESETS) - set(presets)
    assert not missing, f"ListPresets lacks {missing}; has {sorted(presets)}"
    for name, (output_type, has_audio, heights) in BUILTIN_PRESETS.items():
        info = presets[name]
        assert info.output_type == output_type, f"{name}: output_type {info.output_type!r}"
        assert info.has_audio == has_audio, f"{name}: has_audio {info.has_audio}"
        assert sorted(info.heights, reverse=True) == sorted(heights, reverse=True), (
            f"{name}: heights {list(info.heights)}, want {heights}")
        assert info.video_codec in ("h264", "libx264"), f"{name}: video_codec {info.video_codec!r}"
        assert info.description, f"{name}: no description"
    status = worker.status()
    assert set(BUILTIN_PRESETS) <= set(status.presets), f"GetStatus.presets {list(status.presets)}"
    assert "s3" in status.storage_types, f"GetStatus.storage_types {list(status.storage_types)}"
    assert status.state == pb.WORKER_STATE_READY, f"state {pb.WorkerState.Name(status.state)}"


CUSTOM_PRESETS_YAML = """\
presets:
  - name: tiny_240p_silent
    description: 240p proxy without audio
    type: single
    x264_preset: veryfast
    crf: 30
    audio: false
    variants:
      - height: 240
"""


def test_presets_file_adds_a_preset(worker_factory, s3, bucket, inputs, clips, tmp_path):
    presets_file = tmp_path / "presets.yaml"
    presets_file.write_text(CUSTOM_PRESETS_YAML)
    env = worker_env(s3, bucket)
    env.update(ALLOW_PRIVATE_INPUTS="true", PRESETS_FILE=str(presets_file))
    worker = worker_factory(env=env, name="custom-presets")
    presets = {p.name: p for p in worker.list_presets().presets}
    assert set(BUILTIN_PRESETS) <= set(presets), f"built-ins lost with PRESETS_FILE: {sorted(presets)}"
    custom = presets.get("tiny_240p_silent")
    assert custom is not None, f"PRESETS_FILE preset missing from ListPresets: {sorted(presets)}"
    assert (custom.output_type, custom.has_audio, list(custom.heights)) == ("single", False, [240]), custom
    key = "custom/tiny.mp4"
    final = run_job(worker, job_request(new_job_id("custom"), inputs.clip_url("main.mp4"),
                                        "tiny_240p_silent", key, output_type="single")
                    ).expect_terminal("COMPLETED")
    outputs.check_single_s3(s3, bucket, key, final, tmp_path,
                            media.input_duration(clips.path("main.mp4")), 240, False)
