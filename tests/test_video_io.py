"""Video file decode / encode on real files: timing, audio, odd sizes, cuts, damage, failures."""

from __future__ import annotations

import os
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clips import clip_pts, clip_time_base, make_clip, make_tone, picture

from livedream.errors import InputError, OutputError
from livedream.frame import Frame
from livedream.io.video import VideoInfo, VideoReader, VideoWriter

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def media(name: str) -> Path:
    path = MEDIA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (real footage lives in ../shared/media)")
    return path


def dream(
    src: Path, dst: Path, *, start: float | None = None, duration: float | None = None,
    audio: bool = True, limit: int | None = None, metadata: dict[str, str] | None = None,
) -> tuple[VideoInfo, list[Frame]]:
    """The file-to-file pipeline minus the dreaming: copy `src` to `dst` through the classes."""
    end = None if duration is None else (start or 0.0) + duration
    with VideoReader(src, start=start, duration=duration) as reader:
        info = reader.info
        frames = list(reader.frames())[:limit]
        with VideoWriter(dst, width=info.width, height=info.height, time_base=info.time_base,
                         rate=info.fps, audio_source=str(src) if audio else None,
                         audio_start=start, audio_end=end, metadata=metadata,
                         end_time=reader.end_time) as writer:
            for frame in frames:
                writer.write(frame)
            if limit is not None:
                writer.end_time = None  # stopped early: the video ends after its last frame
    return info, frames


def probe(path: Path) -> dict:
    """What a file holds, straight from PyAV (independent of VideoReader)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        times = sorted(float(f.pts * video.time_base) for f in container.decode(video))
        out = {"width": video.codec_context.width, "height": video.codec_context.height,
               "times": times, "duration": container.duration / av.time_base,
               "metadata": {k.lower(): v for k, v in container.metadata.items()}}
        if video.duration:
            out["duration"] = float(video.duration * video.time_base)
        elif "DURATION" in video.metadata:  # Matroska: "00:00:00.333000000"
            h, m, sec = video.metadata["DURATION"].split(":")
            out["duration"] = int(h) * 3600 + int(m) * 60 + float(sec)
        audio = container.streams.audio
        if audio:
            container.seek(0)
            packets = [p for p in container.demux(audio[0]) if p.size]
            out["audio_codec"] = audio[0].codec_context.codec.canonical_name
            out["audio_packets"] = packets
            out["audio_bytes"] = [bytes(p) for p in packets]
            out["audio_start"] = float(packets[0].pts * packets[0].time_base)
            last = packets[-1]
            out["audio_end"] = float((last.pts + last.duration) * last.time_base)
    return out


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- round trips ------------------------------------------------------------------------------


def test_round_trip_keeps_frames_timing_and_copies_audio_packets(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=30, fps=30)
    info, frames = dream(src, tmp_path / "out.mp4")
    before, after = probe(src), probe(tmp_path / "out.mp4")

    assert (info.width, info.height, info.codec, info.has_audio) == (64, 48, "h264", True)
    assert info.duration == pytest.approx(1.0) and info.fps == pytest.approx(30)
    assert len(frames) == len(after["times"]) == 30
    assert after["times"] == pytest.approx(before["times"], abs=1e-3)
    assert after["duration"] == pytest.approx(before["duration"], abs=1 / 30)
    # Remuxed, not re-encoded: the very same AAC packets, in the same number.
    assert after["audio_codec"] == before["audio_codec"] == "aac"
    assert after["audio_bytes"] == before["audio_bytes"]
    assert after["audio_end"] == pytest.approx(before["audio_end"], abs=0.03)
    # Pixels survive the trip (crf 18 on a small synthetic picture).
    with VideoReader(tmp_path / "out.mp4") as reader:
        again = list(reader.frames())
    for a, b in zip(frames, again, strict=True):
        assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).mean() < 6


def test_frames_are_rgb_with_timestamps_in_the_stream_time_base(tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=10, fps=25, audio=False)
    with VideoReader(src) as reader:
        frames = list(reader.frames())
        time_base = reader.info.time_base
        assert reader.stopped_early is None
    assert [f.index for f in frames] == list(range(10))
    for f in frames:
        assert f.rgb.shape == (48, 64, 3) and f.rgb.dtype == np.uint8
        assert f.time == pytest.approx(float(f.pts * time_base))
        assert f.time == pytest.approx(f.index / 25, abs=1e-3)
    assert np.abs(frames[0].rgb.astype(int) - frames[9].rgb.astype(int)).mean() > 5  # moving


def test_no_audio_in_no_audio_out(tmp_path):
    src = make_clip(tmp_path / "in.mp4", audio=False)
    info, _ = dream(src, tmp_path / "out.mp4")
    assert not info.has_audio
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert [s.type for s in container.streams] == ["video"]


def test_odd_size_is_padded_by_one_pixel_keeping_frames_and_duration(tmp_path):
    src = make_clip(tmp_path / "in.mp4", width=63, height=47, frames=20)
    info, frames = dream(src, tmp_path / "out.mp4")
    assert (info.width, info.height) == (63, 47) and frames[0].rgb.shape == (47, 63, 3)
    after = probe(tmp_path / "out.mp4")
    assert (after["width"], after["height"]) == (64, 48)
    assert len(after["times"]) == 20
    assert after["duration"] == pytest.approx(20 / 30, abs=1 / 30)
    with VideoReader(tmp_path / "out.mp4") as reader:
        out = next(reader.frames()).rgb.astype(int)
    assert np.abs(out[:47, :63] - frames[0].rgb).mean() < 6
    # The added column and row repeat the edge, they are not black.
    assert np.abs(out[:47, 63] - out[:47, 62]).mean() < 12
    assert np.abs(out[47, :63] - out[46, :63]).mean() < 12


def test_variable_frame_rate_timestamps_are_kept(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=24, fps=30, vfr=True)
    expected = [float(p * clip_time_base(30, True)) for p in clip_pts(24, 30, vfr=True)]
    info, frames = dream(src, tmp_path / "out.mp4")
    assert [f.time for f in frames] == pytest.approx(expected[:-1], abs=1e-3)
    assert info.duration == pytest.approx(expected[-1], abs=1e-3)
    after = probe(tmp_path / "out.mp4")
    assert after["times"] == pytest.approx(expected[:-1], abs=1e-3)
    assert after["duration"] == pytest.approx(expected[-1], abs=1 / 30)


def test_metadata_is_written_into_the_container(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=5, audio=False)
    tags = {"comment": "dreamed by livedream", "livedream": '{"model": "effnet-lite0"}'}
    for name in ("out.mp4", "out.mkv", "out.mov"):
        dream(src, tmp_path / name, metadata=tags)
        assert probe(tmp_path / name)["metadata"].items() >= tags.items(), name


# --- cuts ---------------------------------------------------------------------------------------


def test_start_and_duration_cut_video_and_audio_rebased_to_zero(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=90, fps=30)  # 3 s
    _, frames = dream(src, tmp_path / "out.mp4", start=1.0, duration=1.0)
    assert len(frames) == 30
    assert frames[0].time == 0 and frames[-1].time == pytest.approx(29 / 30, abs=1e-3)
    after = probe(tmp_path / "out.mp4")
    assert len(after["times"]) == 30 and after["times"][0] == 0
    assert after["duration"] == pytest.approx(1.0, abs=1 / 30)
    # AAC packets are 1024 samples (23 ms): the cut is exact to one packet.
    assert after["audio_codec"] == "aac"
    assert after["audio_start"] == pytest.approx(0, abs=0.025)
    assert after["audio_end"] == pytest.approx(1.0, abs=0.025)


def test_a_cut_ending_past_the_file_stops_at_its_end(tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=30, audio=False)
    with VideoReader(src, start=0.5, duration=10) as reader:
        assert reader.end_time == pytest.approx(0.5, abs=1e-3)
        assert len(list(reader.frames())) == 15
        assert reader.stopped_early is None


@pytest.mark.parametrize("start, duration, message", [
    (5.0, None, "past the end"), (-1.0, None, "start must be >= 0"), (0.0, 0.0, "duration"),
])
def test_bad_cut_is_an_input_error(tmp_path, start, duration, message):
    src = make_clip(tmp_path / "in.mkv", frames=10, audio=False)
    with pytest.raises(InputError, match=message):
        VideoReader(src, start=start, duration=duration)


# --- audio that the output container cannot hold ------------------------------------------------


def test_pcm_audio_into_mp4_is_reencoded_to_aac_with_a_warning(tmp_path):
    src = make_clip(tmp_path / "in.mkv", audio_codec="pcm_s16le")
    with pytest.warns(UserWarning, match="pcm_s16le.*re-encoding it to AAC"):
        dream(src, tmp_path / "out.mp4")
    after = probe(tmp_path / "out.mp4")
    assert after["audio_codec"] == "aac"
    assert after["audio_end"] == pytest.approx(1.0, abs=0.05)
    assert len(after["times"]) == 30


def test_pcm_audio_into_mkv_is_copied_without_warning(tmp_path):
    src = make_clip(tmp_path / "in.mov", audio_codec="pcm_s16le")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dream(src, tmp_path / "out.mkv")
    assert probe(tmp_path / "out.mkv")["audio_codec"] == "pcm_s16le"


def test_audio_is_interleaved_with_the_video_not_appended(tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=90, fps=30)
    dream(src, tmp_path / "out.mkv")
    with av.open(str(tmp_path / "out.mkv")) as container:
        kinds = [p.stream.type for p in container.demux() if p.size]
    first_audio, last_video = kinds.index("audio"), len(kinds) - 1 - kinds[::-1].index("video")
    assert first_audio < last_video / 2


# --- damaged and wrong inputs ---------------------------------------------------------------


@pytest.mark.parametrize("name, options", [("in.mkv", None), ("in.mp4", {"movflags": "faststart"})])
def test_truncated_file_keeps_what_decoded_and_says_how_far(tmp_path, name, options):
    src = make_clip(tmp_path / name, frames=90, fps=30, options=options)
    data = src.read_bytes()
    cut = tmp_path / f"cut-{name}"
    cut.write_bytes(data[: len(data) // 2])
    with VideoReader(cut) as reader:
        frames = list(reader.frames())
        reason = reader.stopped_early
    assert 0 < len(frames) < 90
    assert reason is not None and "\n" not in reason
    assert f"{len(frames)} frames" in reason and "truncated" in reason


@pytest.mark.parametrize("name", ["in.mp4", "in.mkv"])
def test_damage_in_the_middle_stops_cleanly_keeping_the_frames_before(tmp_path, name):
    src = make_clip(tmp_path / name, frames=90, fps=30)
    data = bytearray(src.read_bytes())
    third = len(data) // 3
    data[third : third + third // 2] = np.random.default_rng(0).bytes(third // 2)
    src.write_bytes(bytes(data))
    with VideoReader(src) as reader:
        frames = list(reader.frames())
        reason = reader.stopped_early
    assert 0 < len(frames) < 90
    assert reason is not None and "\n" not in reason and f"{len(frames)} frames" in reason


def test_decoding_can_stop_midway(tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=30, audio=False)
    with VideoReader(src) as reader:
        frames = reader.frames()
        assert next(frames).index == 0 and next(frames).index == 1
    # closed mid-iteration: nothing leaks, close() again is harmless
    reader.close()


@pytest.mark.parametrize("kind", ["missing", "empty", "random", "text", "audio-only", "folder"])
def test_not_a_video_is_an_input_error_with_one_line(tmp_path, kind):
    path = tmp_path / "input.mp4"
    if kind == "empty":
        path.touch()
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(20_000))
    elif kind == "text":
        path = tmp_path / "notes.txt"
        path.write_text("not a video\n" * 50)
    elif kind == "audio-only":
        path = make_tone(tmp_path / "tone.m4a")
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(InputError) as caught:
        VideoReader(path)
    message = str(caught.value)
    assert "\n" not in message and path.name in message
    if kind == "random":
        assert message.startswith("not a video file: input.mp4 (Invalid data")
    if kind == "audio-only":
        assert "no video stream" in message and "audio" in message


# --- output failures and clean-up -----------------------------------------------------------


# --- rotation ----------------------------------------------------------------------------------
def make_rotated_clip(path: Path, degrees: int, frames: int = 6) -> list[np.ndarray]:
    """A 64x48 clip stored as `picture(i)`, with a display matrix turning it `degrees` counter-
    clockwise (a phone's portrait clip: -90); the frames as stored."""
    stored = [picture(i, 64, 48) for i in range(frames)]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=30, options={"preset": "veryfast", "crf": "8"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.set_display_rotation(degrees)  # the muxer writes it into the 'tkhd' matrix
        for i, rgb in enumerate(stored):
            frame = av.VideoFrame.from_ndarray(rgb, "rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    with av.open(str(path)) as container:  # the clip really says so
        assert next(container.decode(video=0)).rotation % 360 == degrees % 360
    return stored


def differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean()) if a.shape == b.shape else 255.0


@pytest.mark.parametrize("degrees", [-90, 90, 180])
def test_a_rotated_clip_is_read_and_written_upright(tmp_path, degrees):
    stored = make_rotated_clip(tmp_path / "phone.mp4", degrees)
    upright = [np.rot90(rgb, degrees // 90) for rgb in stored]  # np.rot90 turns counter-clockwise
    # as stored, or turned the other way round
    wrong = [rgb if degrees == 180 else np.rot90(rgb, -degrees // 90) for rgb in stored]
    info, frames = dream(tmp_path / "phone.mp4", tmp_path / "out.mp4", audio=False)
    height, width = upright[0].shape[:2]
    assert (info.width, info.height) == (width, height)
    assert len(frames) == len(stored)
    for got, want, other in zip(frames, upright, wrong, strict=True):
        assert differ(got.rgb, want) < 12 < 40 < differ(got.rgb, other)
    with av.open(str(tmp_path / "out.mp4")) as container:  # upright pixels, no turn left to do
        out = list(container.decode(video=0))
    assert [f.rotation for f in out] == [0] * len(stored)
    assert all(differ(f.to_ndarray(format="rgb24"), want) < 15 for f, want in zip(out, upright, strict=True))
    assert info.rotation == degrees % 360  # what the reader turned them by


def writer_for(path: Path, **kw) -> VideoWriter:
    return VideoWriter(path, width=64, height=48, time_base=Fraction(1, 30), rate=30, **kw)


def test_writes_to_a_hidden_temp_file_then_renames(tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=5, audio=False)
    out = tmp_path / "out" / "clip.mp4"
    out.parent.mkdir()
    with VideoReader(src) as reader, writer_for(out) as writer:
        for frame in reader.frames():
            writer.write(frame)
        (temp,) = out.parent.iterdir()
        assert temp.name.startswith(".clip.part-") and temp.suffix == ".mp4"
        assert not out.exists()
    assert listing(out.parent) == ["clip.mp4"]
    writer.close()  # again: harmless


@pytest.mark.parametrize("size", [(64, 48), (320, 240)])
def test_the_same_frames_encode_to_the_same_bytes(tmp_path, size):
    # libx264's AVX-512 code made these differ from run to run (3-10 of 16 streams differed on an
    # Intel Xeon); the same frames must give the same file.
    w, h = size
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for i in range(24):  # a smooth pan with sensor noise
        xs, ys = x + 1.5 * i, y + 0.5 * i
        rgb = np.stack([128 + 60 * np.sin(xs / 7) + 50 * np.sin(ys / 5), 128 + 70 * np.sin((xs + ys) / 9),
                        128 + 60 * np.cos(xs / 4 - ys / 11)], axis=-1)
        frames.append(np.clip(rgb + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8))
    streams = set()
    for k in range(16):
        path = tmp_path / f"o{k}.mp4"
        writer = VideoWriter(path, width=w, height=h, time_base=Fraction(1, 6144), rate=12)
        for i, rgb in enumerate(frames):
            writer.write(Frame(index=i, pts=i * 512, time=i / 12, rgb=rgb))
        writer.close()
        with av.open(str(path)) as c:
            streams.add(b"".join(bytes(p) for p in c.demux(video=0)))
    assert len(streams) == 1


KILLED_WRITER = """
import sys, time
from fractions import Fraction
import numpy as np
from livedream.frame import Frame
from livedream.io.video import VideoWriter

writer = VideoWriter(sys.argv[1], width=64, height=48, time_base=Fraction(1, 30), rate=30)
for i in range(5):
    writer.write(Frame(index=i, time=i / 30, rgb=np.zeros((48, 64, 3), np.uint8), pts=i))
print("writing", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL, and live processes told by os.kill(pid, 0)")
def test_a_killed_writers_temp_file_is_removed_by_the_next_writer_of_that_output(tmp_path):
    import signal
    import subprocess

    out = tmp_path / "clip.mp4"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "writing\n"
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    proc.stdout.close()
    (stale,) = [p.name for p in tmp_path.iterdir()]
    assert stale.startswith(".clip.part-") and f"-{proc.pid}-" in stale and stale.endswith(".mp4")
    host = stale.removeprefix(".clip.part-").split("-")[0]
    kept = [f".clip.part-{host}-{os.getpid()}-0123abcd.mp4",  # a writer that still runs (this one)
            ".clip.part-otherhost-999999999-0123abcd.mp4",  # another machine's, on shared storage
            f".other.part-{host}-999999999-0123abcd.mp4"]  # another output's
    for name in kept:
        (tmp_path / name).write_bytes(b"")

    writer = writer_for(out)
    writer.write(Frame(index=0, time=0.0, rgb=np.zeros((48, 64, 3), np.uint8), pts=0))
    writer.close()
    assert listing(tmp_path) == sorted(["clip.mp4", *kept])  # the killed writer's file is gone


def test_abort_leaves_nothing(tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=10, audio=True)
    out = tmp_path / "out"
    out.mkdir()
    writer = writer_for(out / "x.mp4", audio_source=str(src))
    with VideoReader(src) as reader:
        for frame in reader.frames():
            writer.write(frame)
    writer.abort()
    writer.abort()
    assert listing(out) == []
    with pytest.raises(RuntimeError):
        writer.write(frame)


def test_an_exception_before_any_frame_leaves_nothing(tmp_path):
    with pytest.raises(ZeroDivisionError), writer_for(tmp_path / "x.mp4"):
        raise ZeroDivisionError
    assert listing(tmp_path) == []


def test_interrupted_run_still_gives_a_playable_file_with_audio_cut_to_the_video(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=60, fps=30)  # 2 s, audio to 2 s
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoReader(src) as reader, VideoWriter(
            out, width=64, height=48, time_base=reader.info.time_base, rate=reader.info.fps,
            audio_source=str(src), end_time=reader.end_time,
        ) as writer:
            for frame in reader.frames():
                writer.write(frame)
                if frame.index == 19:
                    raise KeyboardInterrupt
    assert listing(tmp_path) == ["in.mp4", "out.mp4"]
    after = probe(out)
    assert len(after["times"]) == 20
    assert after["duration"] == pytest.approx(20 / 30, abs=1 / 30)  # not 2 s
    assert after["audio_end"] == pytest.approx(20 / 30, abs=0.03)
    with VideoReader(out) as reader:
        assert len(list(reader.frames())) == 20 and reader.stopped_early is None


def test_fewer_frames_then_close_is_playable(tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=30)
    dream(src, tmp_path / "out.mkv", limit=10)
    after = probe(tmp_path / "out.mkv")
    assert len(after["times"]) == 10
    assert after["duration"] == pytest.approx(10 / 30, abs=1 / 30)


@pytest.mark.parametrize("where", ["missing folder", "folder is a file", "read-only folder"])
def test_unwritable_output_is_an_output_error_and_leaves_nothing(tmp_path, where):
    folder = tmp_path / "out"
    if where == "folder is a file":
        folder.write_text("")
    elif where == "read-only folder":
        if os.name != "posix" or os.geteuid() == 0:
            pytest.skip("root (or Windows) can write in a read-only folder")
        folder.mkdir()
        folder.chmod(0o555)
    with pytest.raises(OutputError) as caught:
        writer_for(folder / "x.mp4")
    assert "\n" not in str(caught.value)
    if where == "read-only folder":
        folder.chmod(0o755)
        assert listing(folder) == []


def test_unknown_output_format_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="unknown video format"):
        writer_for(tmp_path / "x.notavideo")
    assert listing(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file size limit")
def test_disk_full_while_writing_is_an_output_error_and_removes_the_temp_file(tmp_path):
    """A real write failure: the file size limit (EFBIG) stands in for a full disk."""
    import resource
    import signal

    rng = np.random.default_rng(0)
    noise = [Frame(index=i, pts=i, time=i / 30, rgb=rng.integers(0, 256, (48, 64, 3), np.uint8))
             for i in range(60)]  # incompressible: megabits, far over the limit
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail writes, don't kill us
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, old_limit[1]))
        with pytest.raises(OutputError, match="x.mp4") as caught:
            with writer_for(tmp_path / "x.mp4") as writer:
                for frame in noise:
                    writer.write(frame)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert "\n" not in str(caught.value)
    assert listing(tmp_path) == []


def test_wrong_frame_size_is_refused(tmp_path):
    with writer_for(tmp_path / "x.mp4") as writer:
        writer.write(Frame(index=0, pts=0, time=0.0, rgb=np.zeros((48, 64, 3), np.uint8)))
        with pytest.raises(ValueError, match=r"expected \(48, 64, 3\) uint8"):
            writer.write(Frame(index=1, pts=1, time=1 / 30, rgb=np.zeros((64, 48, 3), np.uint8)))
    assert listing(tmp_path) == ["x.mp4"]


# --- real footage -------------------------------------------------------------------------------


def test_box_mp4_broken_nal_units_and_broken_pts_decode_in_order():
    with VideoReader(media("box.mp4"), duration=2.0) as reader:
        info = reader.info
        frames = list(reader.frames())
        assert reader.stopped_early is None
    assert (info.width, info.height, info.codec, info.has_audio) == (640, 480, "h264", True)
    assert info.duration == pytest.approx(15.18, abs=0.05)
    assert len(frames) == 60
    # Its container stores decode-order times as pts; frames still come out evenly spaced.
    gaps = np.diff([f.time for f in frames])
    assert gaps.min() > 0.02 and gaps.max() < 0.1


def test_box_mp4_round_trip_copies_its_mpeg_audio(tmp_path):
    src = media("box.mp4")
    dream(src, tmp_path / "out.mp4", duration=2.0)
    before, after = probe(src), probe(tmp_path / "out.mp4")
    assert after["audio_codec"] == before["audio_codec"]
    assert after["audio_bytes"] == before["audio_bytes"][: len(after["audio_bytes"])]
    assert len(after["times"]) == 60
    assert after["duration"] == pytest.approx(2.0, abs=1 / 30)
    assert after["audio_end"] == pytest.approx(2.0, abs=0.1)


def test_box_mp4_seek_to_start():
    with VideoReader(media("box.mp4"), start=5.0, duration=1.0) as reader:
        frames = list(reader.frames())
    assert abs(len(frames) - 30) <= 1
    assert frames[0].time == 0 and frames[-1].time < 1.0


def test_tree_avi_duration_comes_from_timestamps_not_frame_count(tmp_path):
    src = media("tree.avi")
    info, frames = dream(src, tmp_path / "out.mp4")
    assert info.codec == "cinepak" and (info.width, info.height) == (320, 240)
    assert info.duration == pytest.approx(29.6, abs=0.01)
    assert 60 <= len(frames) <= 80  # "repeat previous frame" packets decode to nothing
    after = probe(tmp_path / "out.mp4")
    assert len(after["times"]) == len(frames)
    assert after["times"] == pytest.approx([f.time for f in frames], abs=1e-3)
    assert after["duration"] == pytest.approx(29.6, abs=1 / info.fps)
