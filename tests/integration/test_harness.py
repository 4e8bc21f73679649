"""The harness on its own, without the worker: if these fail, the other
integration failures say nothing about flux-worker."""

import pathlib
import urllib.error
import urllib.request

import pytest

from harness import media, stubs
from harness.ports import free_port, port_open
from harness.process import ManagedProcess, child_env


def test_stubs_generated_from_proto_alone(pb):
    _, pb_grpc = stubs.load()
    assert hasattr(pb_grpc, "WorkerServiceStub")
    assert pb.JobStatus.Value("JOB_STATUS_COMPLETED") == 4
    fields = {f.name: f.number for f in pb.JobProgress.DESCRIPTOR.fields}
    assert fields["job_id"] == 1 and fields["error"] == 7 and fields["error_code"] == 9


def test_s3rver_roundtrip_and_restart(s3, bucket, tmp_path):
    client = s3.client()
    client.put_object(Bucket=bucket, Key="a/b.txt", Body=b"hello",
                      ContentType="text/plain", Metadata={"owner": "it"})
    assert s3.list_objects(bucket) == {"a/b.txt": 5}
    head = client.head_object(Bucket=bucket, Key="a/b.txt")
    assert head["Metadata"] == {"owner": "it"}
    port = s3.port
    s3.stop()
    assert not port_open(port), "s3rver still listening after stop()"
    s3.start()
    assert s3.port == port
    assert s3.list_objects(bucket) == {"a/b.txt": 5}, "objects lost across a restart"


def test_s3rver_multipart_small_parts_are_accepted_and_logged(s3, bucket):
    """The storage test relies on small parts being accepted and on s3rver's
    log naming every stored part."""
    client = s3.client()
    upload = client.create_multipart_upload(Bucket=bucket, Key="mp.bin")
    parts = []
    for number in (1, 2, 3):
        response = client.upload_part(Bucket=bucket, Key="mp.bin", UploadId=upload["UploadId"],
                                      PartNumber=number, Body=bytes([number]) * 70000)
        parts.append({"PartNumber": number, "ETag": response["ETag"]})
    client.complete_multipart_upload(Bucket=bucket, Key="mp.bin", UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": parts})
    head = client.head_object(Bucket=bucket, Key="mp.bin")
    assert head["ContentLength"] == 210000
    uploads = {upload_id for upload_id, _ in s3.stored_parts(bucket)}
    assert uploads == {upload["UploadId"]}
    assert sorted(n for _, n in s3.stored_parts(bucket)) == [1, 2, 3]


def test_clip_generation(clips):
    info = media.ffprobe(clips.path("main.mp4"))
    video = media.video_streams(info)[0]
    assert (video["width"], video["height"]) == (1280, 720)
    assert media.audio_streams(info)
    assert abs(media.duration(info) - 2.0) < 0.2
    odd = media.video_streams(media.ffprobe(clips.path("odd_1279x719.mp4")))[0]
    assert (odd["width"], odd["height"]) == (1279, 719)


def test_input_server_routes(inputs, recorder):
    url = inputs.clip_url("main.mp4")
    with urllib.request.urlopen(url) as response:
        assert response.status == 200 and len(response.read()) > 1000
    missing = recorder.add_status("gone.mp4", 404)
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(missing)
    assert error.value.code == 404
    assert recorder.requests_for("gone.mp4") == [("GET", "/gone.mp4")]
    chunked = recorder.add_chunked("chunked.mp4", b"x" * 200000)
    with urllib.request.urlopen(chunked) as response:
        assert len(response.read()) == 200000


def test_free_port_is_free():
    port = free_port()
    assert not port_open(port)


SH = pathlib.Path("/bin/sh")


def test_managed_process_keeps_each_run_and_reports_its_problems(tmp_path):
    script = ('echo \'{"msg": "up"}\'; echo plain; '
              'echo "ERROR: AddressSanitizer: heap-use-after-free" >&2; exec sleep 30')
    proc = ManagedProcess(tmp_path, "sh", SH, child_env(), args=["-c", script])
    for run in (1, 2):
        proc.spawn()
        proc.wait_until(lambda: (proc.stderr_text() != "", None), 10, "write its stderr")
        assert proc.runs == run and proc.log_records() == [{"msg": "up"}, "plain"]
        if run == 1:
            proc.kill()  # a SIGKILL the harness sent is not a problem in itself
    assert len(proc.all_log_records()) == 4
    problems = "\n".join(proc.stop(timeout=10))
    assert "sh (run 1): sanitizer report" in problems and "sh (run 2): sanitizer report" in problems
    assert "exited with -15 after SIGTERM" in problems, problems


def test_managed_process_that_exits_early_fails_the_wait_with_its_output(tmp_path):
    proc = ManagedProcess(tmp_path, "quitter", SH, child_env(), args=["-c", "echo gone >&2; exit 3"])
    proc.spawn()
    with pytest.raises(AssertionError, match=r"(?s)quitter exited with 3 before answering.*gone"):
        proc.wait_until(lambda: (False, "no answer"), 10, "answering")
    assert proc.stop() == []
