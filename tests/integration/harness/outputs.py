"""Reading a job's output back from storage and checking it with ffprobe."""

import pathlib

from . import manifests, media

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


def _content_type(head: dict) -> str:
    return head.get("ContentType", "").split(";")[0].strip()


def _assert_head(s3, bucket, key, content_type, no_cache=None):
    head = s3.client().head_object(Bucket=bucket, Key=key)
    assert _content_type(head) == content_type, (
        f"{key}: Content-Type {head.get('ContentType')!r}, want {content_type}")
    if no_cache is True:
        assert "no-cache" in head.get("CacheControl", ""), (
            f"{key}: Cache-Control {head.get('CacheControl')!r}, want no-cache")
    if no_cache is False:
        assert "no-cache" not in head.get("CacheControl", ""), (
            f"{key}: segment has Cache-Control {head.get('CacheControl')!r}; segments are long-lived")
    return head


def assert_result_matches(final, objects: dict, what: str, has_audio: bool,
                          height: int, key_prefix: str = "") -> None:
    """JobResult agrees with what is really in storage ({key: size})."""
    result = final.result
    assert final.HasField("result"), f"{what}: COMPLETED without a result"
    assert result.file_count == len(objects), (
        f"{what}: result.file_count {result.file_count}, storage holds {len(objects)}: {sorted(objects)}")
    assert result.size_bytes == sum(objects.values()), (
        f"{what}: result.size_bytes {result.size_bytes}, storage holds {sum(objects.values())}")
    # OutputFile.key is the object key; accept it relative to the prefix too.
    listed = {}
    for f in result.files:
        key = f.key if f.key in objects or not key_prefix else f"{key_prefix}/{f.key}"
        listed[key] = f.size_bytes
    assert listed == objects, f"{what}: result.files {listed} != storage {objects}"
    assert result.video_codec == "h264", f"{what}: result.video_codec {result.video_codec!r}"
    assert result.height == height, f"{what}: result.height {result.height}, want {height}"
    assert result.width > 0 and result.width % 2 == 0, f"{what}: result.width {result.width}"
    assert result.pixel_format == "yuv420p", f"{what}: result.pixel_format {result.pixel_format!r}"
    assert result.fps > 0, f"{what}: result.fps {result.fps}"
    assert result.duration_seconds > 0, f"{what}: result.duration_seconds {result.duration_seconds}"
    if has_audio:
        assert result.audio_codec == "aac", f"{what}: result.audio_codec {result.audio_codec!r}"
        assert result.audio_channels > 0 and result.audio_sample_rate > 0, (
            f"{what}: audio {result.audio_channels} ch @ {result.audio_sample_rate} Hz")
    else:
        assert result.audio_codec == "", f"{what}: result.audio_codec {result.audio_codec!r}, want none"
    assert result.encode_seconds > 0, f"{what}: result.encode_seconds {result.encode_seconds}"
    for phase in ("download", "probe", "validate", "upload"):
        assert getattr(result, f"{phase}_seconds") >= 0, f"{what}: negative {phase}_seconds"


def check_single_s3(s3, bucket, key, final, tmp: pathlib.Path, input_duration: float,
                    height: int, audio: bool, metadata=None) -> dict:
    """The single-file output at `key`: one object, plays, and matches result."""
    objects = s3.list_objects(bucket, key)
    assert list(objects) == [key], f"expected exactly the object {key}, found {objects}"
    assert final.output_url == f"{s3.endpoint}/{bucket}/{key}", f"output_url {final.output_url!r}"
    head = _assert_head(s3, bucket, key, "video/mp4")
    if metadata:
        assert head.get("Metadata") == metadata, (
            f"{key}: x-amz-meta-* {head.get('Metadata')}, want {metadata}")
    local = s3.download(bucket, key, tmp / pathlib.Path(key).name)
    info = media.ffprobe(local)
    video = media.assert_playable_video(info, key, height=height, audio=audio)
    media.assert_duration_close(media.duration(info), input_duration, key)
    assert_result_matches(final, objects, key, audio, height)
    assert final.result.width == int(video["width"]), (
        f"result.width {final.result.width}, file has {video['width']}")
    return info


def _fetch_output(s3, bucket, prefix, main_key, final, tmp):
    """A multi-file output under prefix: the main file is there and is the
    job's output_url. Returns ({key: size}, {relative path: downloaded file})."""
    objects = s3.list_objects(bucket, prefix + "/")
    assert main_key in objects, f"no {main_key} in {sorted(objects)}"
    assert final.output_url == f"{s3.endpoint}/{bucket}/{main_key}", f"output_url {final.output_url!r}"
    return objects, s3.download_prefix(bucket, prefix, tmp)


def check_hls_single_variant(s3, bucket, prefix, final, tmp, input_duration, height, audio):
    playlist_key = f"{prefix}/playlist.m3u8"
    objects, files = _fetch_output(s3, bucket, prefix, playlist_key, final, tmp)
    text = files["playlist.m3u8"].read_text()
    assert text.startswith("#EXTM3U"), f"playlist does not start with #EXTM3U:\n{text}"
    assert "#EXT-X-TARGETDURATION" in text, f"no #EXT-X-TARGETDURATION:\n{text}"
    segments = [manifests.resolve("playlist.m3u8", u) for u in manifests.hls_media_segments(text)]
    assert segments, f"playlist lists no segments:\n{text}"
    missing = [s for s in segments if s not in files]
    assert not missing, f"segments listed but not uploaded: {missing}; uploaded {sorted(files)}"
    strays = set(files) - set(segments) - {"playlist.m3u8"}
    assert not strays, f"uploaded files nothing refers to: {sorted(strays)}"
    _assert_head(s3, bucket, playlist_key, PLAYLIST_TYPE, no_cache=True)
    _assert_head(s3, bucket, f"{prefix}/{segments[0]}", "video/mp2t", no_cache=False)
    info = media.ffprobe(files["playlist.m3u8"])
    media.assert_playable_video(info, playlist_key, height=height, audio=audio)
    media.assert_duration_close(media.duration(info), input_duration, playlist_key)
    assert_result_matches(final, objects, prefix, audio, height, prefix)


def check_hls_abr(s3, bucket, prefix, final, tmp, input_duration, heights, audio):
    master_key = f"{prefix}/master.m3u8"
    objects, files = _fetch_output(s3, bucket, prefix, master_key, final, tmp)
    master = files["master.m3u8"].read_text()
    assert master.startswith("#EXTM3U"), f"master does not start with #EXTM3U:\n{master}"
    variants = manifests.hls_variants(master)
    assert len(variants) == 3, f"master lists {len(variants)} variants, want 3:\n{master}"
    referenced = {"master.m3u8"}
    seen_heights = []
    variant_has_audio = []
    for attributes, uri in variants:
        assert "BANDWIDTH" in attributes and int(attributes["BANDWIDTH"]) > 0, (
            f"variant {uri} without BANDWIDTH:\n{master}")
        assert "RESOLUTION" in attributes, f"variant {uri} without RESOLUTION:\n{master}"
        width, height = (int(x) for x in attributes["RESOLUTION"].split("x"))
        seen_heights.append(height)
        playlist = manifests.resolve("master.m3u8", uri)
        assert playlist in files, f"variant playlist {playlist} not uploaded; uploaded {sorted(files)}"
        referenced.add(playlist)
        segments = [manifests.resolve(playlist, u)
                    for u in manifests.hls_media_segments(files[playlist].read_text())]
        assert segments, f"variant {playlist} lists no segments"
        missing = [s for s in segments if s not in files]
        assert not missing, f"{playlist}: segments not uploaded: {missing}"
        referenced.update(segments)
        _assert_head(s3, bucket, f"{prefix}/{playlist}", PLAYLIST_TYPE, no_cache=True)
        info = media.ffprobe(files[playlist])
        video = media.assert_playable_video(info, playlist, height=height)
        assert int(video["width"]) == width, f"{playlist}: width {video['width']}, RESOLUTION says {width}"
        media.assert_duration_close(media.duration(info), input_duration, playlist)
        variant_has_audio.append(bool(media.audio_streams(info)))
    assert sorted(seen_heights, reverse=True) == sorted(heights, reverse=True), (
        f"variant heights {seen_heights}, want {heights}")
    # Audio either muxed into every variant or as an EXT-X-MEDIA rendition.
    renditions = [r for r in manifests.hls_media_renditions(master) if r.get("TYPE") == "AUDIO"]
    rendition_audio = False
    for rendition in renditions:
        playlist = manifests.resolve("master.m3u8", rendition["URI"])
        assert playlist in files, f"audio rendition {playlist} not uploaded"
        referenced.add(playlist)
        segments = [manifests.resolve(playlist, u)
                    for u in manifests.hls_media_segments(files[playlist].read_text())]
        missing = [s for s in segments if s not in files]
        assert not missing, f"{playlist}: segments not uploaded: {missing}"
        referenced.update(segments)
        rendition_audio = rendition_audio or bool(media.audio_streams(media.ffprobe(files[playlist])))
    if audio:
        assert all(variant_has_audio) or rendition_audio, (
            f"preset has audio but no variant or rendition carries it:\n{master}")
    else:
        assert not any(variant_has_audio) and not rendition_audio, (
            f"video-only preset produced audio:\n{master}")
    strays = set(files) - referenced
    assert not strays, f"uploaded files nothing refers to: {sorted(strays)}"
    _assert_head(s3, bucket, master_key, PLAYLIST_TYPE, no_cache=True)
    assert_result_matches(final, objects, prefix, audio, max(heights), prefix)


def check_dash(s3, bucket, prefix, final, tmp, input_duration, heights, audio):
    manifest_key = f"{prefix}/manifest.mpd"
    objects, files = _fetch_output(s3, bucket, prefix, manifest_key, final, tmp)
    text = files["manifest.mpd"].read_text()
    reps = manifests.dash_representations(text)
    videos = [r for r in reps if r["height"] or "video" in (r["mime"] + r["content"])]
    audios = [r for r in reps if r not in videos and "audio" in (r["mime"] + r["content"])]
    assert sorted((r["height"] for r in videos), reverse=True) == sorted(heights, reverse=True), (
        f"video representations {[(r['id'], r['height']) for r in videos]}, want heights {heights}:\n{text}")
    assert bool(audios) == audio, f"audio representations {audios}, preset audio={audio}:\n{text}"
    referenced = {"manifest.mpd"}
    for rep in reps:
        assert rep["files"], f"representation {rep['id']} references no files:\n{text}"
        missing = [f for f in rep["files"] if f not in files]
        assert not missing, (f"representation {rep['id']}: referenced but not uploaded {missing}; "
                             f"uploaded {sorted(files)}")
        referenced.update(rep["files"])
        joined = tmp / f"joined-{rep['id']}.mp4"
        with open(joined, "wb") as out:
            for name in rep["files"]:
                out.write(files[name].read_bytes())
        info = media.ffprobe(joined)
        if rep in videos:
            media.assert_playable_video(info, f"representation {rep['id']}", height=rep["height"])
        else:
            assert media.audio_streams(info), f"audio representation {rep['id']} has no audio"
        media.assert_duration_close(media.duration(info), input_duration, f"representation {rep['id']}")
    strays = set(files) - referenced
    assert not strays, f"uploaded files the manifest does not reference: {sorted(strays)}"
    _assert_head(s3, bucket, manifest_key, "application/dash+xml", no_cache=True)
    segment = next(f for f in sorted(referenced) if f.endswith(".m4s"))
    _assert_head(s3, bucket, f"{prefix}/{segment}", "video/iso.segment", no_cache=False)
    info = media.ffprobe(files["manifest.mpd"])
    probed = sorted((int(s["height"]) for s in media.video_streams(info)), reverse=True)
    assert probed == sorted(heights, reverse=True), f"ffprobe of the manifest sees heights {probed}"
    assert bool(media.audio_streams(info)) == audio, "ffprobe of the manifest: audio presence"
    assert_result_matches(final, objects, prefix, audio, max(heights), prefix)
