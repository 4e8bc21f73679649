"""Test clips generated with ffmpeg's lavfi sources, and ffprobe checks."""

import json
import pathlib
import subprocess
import threading

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"

_VIDEO = "testsrc2=size={w}x{h}:rate={rate}"
_AUDIO = "sine=frequency=440:sample_rate=48000"

# name -> how to make it. Sizes and lengths are as small as each test allows:
# the worker is built with sanitizers and the machine has two cores. A job's
# encoding cost grows with its frames, so the quick clips are 10 frames a
# second: still 2 s long (the duration checks keep their meaning), half the
# encoding of 25.
CLIPS = {
    # 1280x720 with stereo audio, 2 s: the preset tests' input.
    "main.mp4": dict(w=1280, h=720, seconds=2, audio=True, rate=10),
    "noaudio.mp4": dict(w=1280, h=720, seconds=2, audio=False, rate=10),
    # Odd dimensions need 4:4:4 (4:2:0 cannot be odd); the output must still be
    # even-sized 4:2:0.
    "odd_1279x719.mp4": dict(w=1280, h=720, seconds=2, audio=True, rate=10,
                             vf="format=yuv444p,crop=1279:719:0:0", pix_fmt="yuv444p"),
    "tenbit.mp4": dict(w=1280, h=720, seconds=2, audio=True, rate=10, pix_fmt="yuv420p10le"),
    "vertical.mp4": dict(w=720, h=1280, seconds=2, audio=True, rate=10),
    # Longer, small clips for tests that need a job to be busy for a while.
    "medium.mp4": dict(w=640, h=360, seconds=6, audio=True),
    "long.mp4": dict(w=640, h=360, seconds=40, audio=True),
    # Other containers a client may send.
    "small.mkv": dict(w=320, h=240, seconds=2, audio=True, rate=10),
    "small.mov": dict(w=320, h=240, seconds=2, audio=True, rate=10),
    "small.ts": dict(w=320, h=240, seconds=2, audio=True, rate=10),
    "small.webm": dict(w=320, h=240, seconds=2, audio=True, rate=10, vcodec="libvpx-vp9",
                       acodec="libopus"),
    # The control plane suite's inputs: quick jobs, and ones that stay busy
    # for a while (tiny frames, so a sanitizer-built worker on two shared
    # cores still finishes them in seconds).
    "small.mp4": dict(w=320, h=240, seconds=2, audio=True, rate=10),
    "small_long.mp4": dict(w=320, h=240, seconds=30, audio=True),
}


class ClipLibrary:
    """Generates each clip on first use into `root` (a per-session temp dir)."""

    def __init__(self, root: pathlib.Path):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def path(self, name: str) -> pathlib.Path:
        target = self.root / name
        with self._lock:
            if not target.exists():
                _generate(CLIPS[name], target)
        return target


def _generate(spec: dict, target: pathlib.Path) -> None:
    seconds = spec["seconds"]
    cmd = [FFMPEG, "-v", "error", "-nostdin", "-y",
           "-f", "lavfi", "-i", _VIDEO.format(w=spec["w"], h=spec["h"], rate=spec.get("rate", 25))]
    if spec["audio"]:
        cmd += ["-f", "lavfi", "-i", _AUDIO]
    cmd += ["-t", str(seconds)]
    if "vf" in spec:
        cmd += ["-vf", spec["vf"]]
    vcodec = spec.get("vcodec", "libx264")
    cmd += ["-c:v", vcodec]
    if vcodec == "libx264":
        cmd += ["-preset", "ultrafast"]
    elif vcodec == "libvpx-vp9":
        cmd += ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "500k"]
    cmd += ["-pix_fmt", spec.get("pix_fmt", "yuv420p")]
    if spec["audio"]:
        cmd += ["-c:a", spec.get("acodec", "aac"), "-ac", "2"]
    tmp = target.with_name(".tmp-" + target.name)
    cmd += [str(tmp)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"clip generation failed: {' '.join(cmd)}\n{result.stderr}")
    tmp.rename(target)


# ---- ffprobe ------------------------------------------------------------------


def ffprobe(path, extra_args=()) -> dict:
    """ffprobe -show_streams -show_format as a dict; raises with stderr on failure."""
    cmd = [FFPROBE, "-v", "error", *extra_args, "-print_format", "json",
           "-show_streams", "-show_format", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"ffprobe could not read {path}: {result.stderr.strip()}")
    return json.loads(result.stdout)


def video_streams(info: dict) -> list:
    return [s for s in info.get("streams", []) if s.get("codec_type") == "video"]


def audio_streams(info: dict) -> list:
    return [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]


def duration(info: dict) -> float:
    value = info.get("format", {}).get("duration")
    if value is None:
        streams = [float(s["duration"]) for s in info.get("streams", []) if "duration" in s]
        return max(streams) if streams else 0.0
    return float(value)


def input_duration(path) -> float:
    return duration(ffprobe(path))


def assert_duration_close(actual: float, expected: float, what: str) -> None:
    """The worker's contract: within max(2 s, 2 %); tests also want it non-trivial."""
    tolerance = max(2.0, 0.02 * expected)
    assert abs(actual - expected) <= tolerance, (
        f"{what}: duration {actual:.3f}s, input {expected:.3f}s (tolerance {tolerance:.1f}s)")
    assert actual >= 0.5 * expected, f"{what}: duration {actual:.3f}s is far below {expected:.3f}s"


def assert_playable_video(info: dict, what: str, height=None, audio=None) -> dict:
    """Checks the things a browser needs: H.264, 8-bit 4:2:0, even dimensions."""
    videos = video_streams(info)
    assert len(videos) == 1, f"{what}: expected one video stream, got {len(videos)}: {info.get('streams')}"
    video = videos[0]
    assert video["codec_name"] == "h264", f"{what}: video codec {video['codec_name']}, want h264"
    assert video.get("pix_fmt") == "yuv420p", f"{what}: pix_fmt {video.get('pix_fmt')}, want yuv420p"
    width, got_height = int(video["width"]), int(video["height"])
    assert width % 2 == 0 and got_height % 2 == 0, f"{what}: odd dimensions {width}x{got_height}"
    if height is not None:
        assert got_height == height, f"{what}: height {got_height}, want {height}"
    if audio is not None:
        audios = audio_streams(info)
        if audio:
            assert audios, f"{what}: no audio stream, the preset has audio and so does the input"
        else:
            assert not audios, f"{what}: unexpected audio stream(s): {audios}"
    return video


def assert_decodes(path, what: str) -> None:
    """A full decode without a single error (what VALIDATION_LEVEL=strict does)."""
    cmd = [FFMPEG, "-v", "error", "-nostdin", "-xerror", "-i", str(path), "-f", "null", "-"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not result.stderr.strip(), (
        f"{what}: does not decode cleanly: {result.stderr.strip()[:2000]}")
