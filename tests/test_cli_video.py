"""`livedream video` end to end on clips made in code, and on the real clips when present."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from clips import make_clip

from livedream.cli import main

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
pytestmark = pytest.mark.slow  # whole videos through the command, some in processes

FAST = ["--quiet", "--dream-width", "64", "--iters", "1", "--cold-iters", "1", "--jitter", "2"]


def probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        audio = [s.codec_context.name for s in c.streams.audio]
        duration = float(c.duration / av.time_base) if c.duration else None
        meta = {k.lower(): val for k, val in c.metadata.items()}
    return {"frames": frames, "audio": audio, "duration": duration, "size": (v.width, v.height),
            "meta": meta}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "livedream", *args], capture_output=True,
                          text=True, timeout=300)


def test_keeps_frames_duration_and_audio(tmp_path):
    src = make_clip(tmp_path / "in.mp4", width=96, height=64, frames=24, fps=24, audio=True)
    out = tmp_path / "out.mp4"
    report = tmp_path / "r.json"
    assert main(["video", str(src), "-o", str(out), "--report", str(report), *FAST]) == 0
    a, b = probe(src), probe(out)
    assert len(b["frames"]) == len(a["frames"]) == 24
    assert b["duration"] == pytest.approx(a["duration"], abs=1 / 24)
    assert b["audio"] == a["audio"] == ["aac"]
    diff = np.mean([np.abs(x.astype(int) - y.astype(int)).mean()
                    for x, y in zip(a["frames"], b["frames"], strict=True)])
    assert diff > 2.0, f"output barely differs from input ({diff:.2f})"
    assert "dream_width=64" in b["meta"]["livedream"]
    data = json.loads(report.read_text())
    assert data["frames"] == 24 and data["fps"] > 0 and data["dropped"] == 0
    assert set(data["busy_seconds"]) >= {"dream", "sink"} and "queue_high_water" in data
    assert data["parameters"]["iters"] == "1"


def test_two_default_runs_give_identical_files(tmp_path):
    # Two replicas (one per core, the default) racing, and x264 on whatever CPU this is: the same
    # input, settings and seed must give the same frames and the same stream, byte for byte.
    src = make_clip(tmp_path / "in.mp4", width=96, height=64, frames=30, fps=24, audio=True)
    outs = []
    for name in ("a.mp4", "b.mp4"):
        out = tmp_path / name
        assert main(["video", str(src), "-o", str(out), *FAST, "--devices", "cpu,cpu"]) == 0
        outs.append(out)
    a, b = probe(outs[0]), probe(outs[1])
    assert len(a["frames"]) == 30
    assert all(np.array_equal(x, y) for x, y in zip(a["frames"], b["frames"], strict=True))
    with av.open(str(outs[0])) as ca, av.open(str(outs[1])) as cb:
        assert [bytes(p) for p in ca.demux(video=0)] == [bytes(p) for p in cb.demux(video=0)]


def test_odd_size_without_audio_and_variable_frame_rate(tmp_path):
    src = make_clip(tmp_path / "odd.mkv", width=67, height=45, frames=16, fps=20, audio=False,
                    vfr=True)
    out = tmp_path / "odd_out.mkv"
    assert main(["video", str(src), "-o", str(out), *FAST]) == 0
    a, b = probe(src), probe(out)
    assert len(b["frames"]) == 16 and b["audio"] == []
    assert b["duration"] == pytest.approx(a["duration"], abs=0.06)
    with av.open(str(src)) as c1, av.open(str(out)) as c2:
        t1 = [float(f.time) for f in c1.decode(video=0)]
        t2 = [float(f.time) for f in c2.decode(video=0)]
    assert np.allclose(t1, t2, atol=0.002), (t1, t2)


def test_several_inputs_go_to_a_folder_named_after_them(tmp_path):
    a = make_clip(tmp_path / "a.avi", frames=6, audio=False)
    b = make_clip(tmp_path / "b.mp4", frames=6, audio=False)
    outdir = tmp_path / "outs"
    assert main(["video", str(a), str(b), "-o", str(outdir), *FAST]) == 0
    assert sorted(os.listdir(outdir)) == ["a.mp4", "b.mp4"]


def test_a_folder_with_bad_files_dreams_the_good_ones_names_the_bad_ones_exits_1(tmp_path):
    indir, outdir = tmp_path / "in", tmp_path / "out"
    indir.mkdir()
    make_clip(indir / "a.mp4", frames=6, audio=False)
    (indir / "b.avi").write_bytes(b"RIFF" + os.urandom(2000))
    (indir / "c.mp4").write_text("not a video\n")
    make_clip(indir / "d.mkv", frames=6, audio=True)
    r = run_cli("video", str(indir), "-o", str(outdir), *FAST)
    assert r.returncode == 1, r.stderr
    assert sorted(os.listdir(outdir)) == ["a.mp4", "d.mkv"]  # the one after the bad ones too
    assert len(probe(outdir / "d.mkv")["frames"]) == 6
    assert r.stderr.splitlines() == [
        "livedream: error: not a video file: b.avi (Invalid data found when processing input)",
        "livedream: error: not a video file: c.mp4 (Invalid data found when processing input)",
        f"livedream: error: 2 of 4 files failed: {indir / 'b.avi'}, {indir / 'c.mp4'}",
    ], r.stderr  # nothing of libav's own

    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.mp4").write_bytes(os.urandom(3000))
    (only_bad / "y.mov").write_bytes(b"")
    r = run_cli("video", str(only_bad), "-o", str(tmp_path / "none"), *FAST)
    assert r.returncode == 1 and r.stderr.count("livedream: error:") == 3, r.stderr
    assert not (tmp_path / "none").exists()  # the folder it made held nothing: removed


@pytest.mark.parametrize("form", ["same file", "its own folder"])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path, form):
    src = make_clip(tmp_path / "a.mp4", frames=4, audio=False)
    before = src.read_bytes()
    out = src if form == "same file" else tmp_path
    r = run_cli("video", str(src), "-o", str(out), *FAST)
    assert r.returncode == 2, r.stderr
    assert "also an input" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert src.read_bytes() == before


@pytest.mark.parametrize("name", ["out.gif", "out.avi", "out.webm", "out.GIF"])
def test_an_output_in_a_format_we_do_not_write_is_refused_and_nothing_is_made(tmp_path, capsys,
                                                                             name):
    (tmp_path / "in").mkdir()
    src = make_clip(tmp_path / "in" / "a.mp4", frames=4, audio=False)
    assert main(["video", str(src), "-o", str(tmp_path / name), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"livedream: error: cannot write '{Path(name).suffix.lower()}' files")
    assert len(err.splitlines()) == 1 and "ending in .mp4, .mkv, .mov" in err, err
    assert os.listdir(tmp_path) == ["in"]  # no file, no folder out.gif/


def test_start_and_duration_cut(tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=60, fps=30, audio=True)
    out = tmp_path / "cut.mp4"
    assert main(["video", str(src), "-o", str(out), "--start", "0.5", "--duration", "1",
                 *FAST]) == 0
    b = probe(out)
    assert len(b["frames"]) == 30 and b["duration"] == pytest.approx(1.0, abs=0.05)
    assert b["audio"] == ["aac"]


@pytest.mark.parametrize("kind", ["missing", "random", "empty", "no-video", "bad-out"])
def test_bad_input_exits_2_with_one_line_and_no_file(tmp_path, kind):
    from clips import make_tone

    src = tmp_path / "in.mp4"
    out = tmp_path / "out.mp4"
    if kind == "random":
        src.write_bytes(os.urandom(5000))
    elif kind == "empty":
        src.write_bytes(b"")
    elif kind == "no-video":
        src = make_tone(tmp_path / "tone.m4a")
    elif kind == "bad-out":
        src = make_clip(src, frames=4, audio=False)
        out = tmp_path / "missing" / "out.mp4"
    r = run_cli("video", str(src), "-o", str(out), *FAST)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("livedream: error:"), r.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.rglob("*") if ".part" in p.name]


def test_truncated_input_dreams_what_decodes_and_says_so(tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=60, audio=False, width=96, height=64)
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.mp4"
    r = run_cli("video", str(cut), "-o", str(out), *FAST)
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "Traceback" not in r.stderr
    assert 5 < len(probe(out)["frames"]) < 60


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_finalizes_a_playable_file_and_leaves_no_temp_file(tmp_path, sig):
    """Ctrl-C, and SIGTERM as `kill`, a service manager or a container stop sends it."""
    src = make_clip(tmp_path / "long.mp4", frames=900, fps=30, width=160, height=120, audio=True)
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "livedream", "video", str(src), "-o", str(out),
                             "--quiet", "--dream-width", "96", "--cold-iters", "1"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob(".out*.part*")):
        time.sleep(0.2)
    time.sleep(3)  # let some frames through
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1].startswith("livedream: interrupted: wrote the ") and "Traceback" not in err
    b = probe(out)
    assert 0 < len(b["frames"]) < 900 and b["audio"] == ["aac"]
    assert b["duration"] == pytest.approx(len(b["frames"]) / 30, abs=0.2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4", "out.mp4"]  # no .part file


def test_a_failing_stage_names_it_and_keeps_what_was_dreamed(tmp_path, monkeypatch):
    from livedream.config import video_preset
    from livedream.io import sinks
    from livedream.pipeline import build_dreamers
    from livedream.video_job import dream_video

    real_write = sinks.VideoFileSink.write

    def flaky(self, frame):
        if frame.index == 5:
            raise OSError("No space left on device")
        real_write(self, frame)

    monkeypatch.setattr(sinks.VideoFileSink, "write", flaky)
    src = make_clip(tmp_path / "in.mp4", frames=30, audio=True)
    cfg = video_preset("realtime", dream_width=64, cold_iters=1)
    result = dream_video(str(src), str(tmp_path / "out.mp4"), cfg, build_dreamers(cfg),
                         progress=False)
    assert result.failed is not None and "sink stage failed" in str(result.failed)
    assert len(probe(tmp_path / "out.mp4")["frames"]) == 5


@pytest.mark.skipif(not (MEDIA / "box.mp4").exists(), reason="../shared/media not present")
def test_box_mp4_keeps_its_audio_and_timing(tmp_path):
    out = tmp_path / "box.mp4"
    assert main(["video", str(MEDIA / "box.mp4"), "-o", str(out), "--duration", "1", *FAST]) == 0
    b = probe(out)
    assert len(b["frames"]) == 30 and b["audio"] == ["mp3float"]
    assert b["duration"] == pytest.approx(1.0, abs=0.05)


@pytest.mark.skipif(not (MEDIA / "tree.avi").exists(), reason="../shared/media not present")
def test_tree_avi_duration_comes_from_timestamps(tmp_path):
    out = tmp_path / "tree.mp4"
    assert main(["video", str(MEDIA / "tree.avi"), "-o", str(out), *FAST]) == 0
    b = probe(out)
    assert b["duration"] == pytest.approx(29.6, abs=0.1)
    assert len(b["frames"]) == len(probe(MEDIA / "tree.avi")["frames"])
