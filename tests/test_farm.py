"""`livedream batch` and livedream.farm: chunking at keyframes, exact joins, seams, resume,
failures, and the local and Ray executors (Ray tests skip when Ray is not installed)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from clips import SAMPLE_RATE, _write_tone, clip_pts, clip_time_base, picture

from livedream.cli import main as cli_main
from livedream.config import VideoConfig, video_preset
from livedream.farm import (
    MANIFEST_NAME,
    BatchOptions,
    ChunkTask,
    Fault,
    InlineExecutor,
    LocalExecutor,
    Part,
    dream_chunk,
    join_chunks,
    plan_file,
    run_batch,
)
from livedream.io.video import VideoReader
from livedream.temporal import warping_error

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # whole jobs, processes


def main(args: list[str]) -> int:
    """`livedream batch ARGS` in this process."""
    return cli_main(["batch", *args])


FAST = dict(dream_width=48, iters=1, cold_iters=1, jitter=2)
FAST_ARGS = ["--quiet", "--dream-width", "48", "--iters", "1", "--cold-iters", "1", "--jitter", "2"]


def pan(i: int, width: int, height: int) -> np.ndarray:
    """A smooth texture panning 1.5 px right and 0.5 px down per frame: every pair of frames has
    the same motion, so flicker can be compared between pairs."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x, y = x + 1.5 * i, y + 0.5 * i
    rgb = np.stack([128 + 60 * np.sin(x / 7) + 50 * np.sin(y / 5),
                    128 + 70 * np.sin((x + y) / 9),
                    128 + 60 * np.cos(x / 4 - y / 11)], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def make_keyed_clip(path: Path, *, width: int = 64, height: int = 48, frames: int = 48,
                    fps: int = 24, gop: int = 12, audio: bool = True, crf: int = 18,
                    vfr: bool = False, draw: Callable[[int, int, int], np.ndarray] = picture) -> Path:
    """An H.264 clip with a keyframe every `gop` frames (clips.make_clip leaves x264's 250);
    `vfr`: frames last 1, 1, 2, 1, 3... nominal frames (see clips.clip_pts)."""
    time_base = clip_time_base(fps, vfr)
    pts = clip_pts(frames, fps, vfr)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={
            "preset": "veryfast", "crf": str(crf),
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = video.codec_context.time_base = time_base
        sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if audio else None
        for i in range(frames + 1):
            frame = None
            if i < frames:
                frame = av.VideoFrame.from_ndarray(draw(i, width, height), "rgb24")
                frame.pts, frame.time_base = pts[i], time_base
            for packet in video.encode(frame):
                packet.duration = pts[pts.index(packet.pts) + 1] - packet.pts
                container.mux(packet)
        if sound is not None:
            _write_tone(container, sound, float(pts[-1] * time_base))
    return path


def probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        duration = c.duration
        times = [float(f.time) for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = [(float(p.pts * p.time_base), hashlib.md5(bytes(p)).hexdigest())
                 for p in c.demux(audio=0) if p.size] if c.streams.audio else []
        codecs = [s.codec_context.name for s in c.streams]
    return {"times": times, "duration": duration, "audio": audio, "codecs": codecs}


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(video=0) if p.size]


def cfg(**extra: object) -> VideoConfig:
    return video_preset("realtime", **(FAST | extra))


def manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_NAME).read_text())["files"]


# -- planning ---------------------------------------------------------------------------------------
def test_plan_cuts_at_the_keyframe_nearest_each_multiple(tmp_path):
    src = make_keyed_clip(tmp_path / "k.mp4", frames=48, gop=12, audio=False)  # 2 s, key every 0.5 s
    plan = plan_file(src, chunk_seconds=0.6, warmup=4)
    tick = round(1 / (24 * plan.time_base))  # pts of one frame
    # multiples of 0.6 s: 0.6, 1.2, 1.8 -> the nearest keyframes: 0.5, 1.0, 1.5 s
    assert [c.begin for c in plan.chunks] == [None, 12 * tick, 24 * tick, 36 * tick]
    assert [c.end for c in plan.chunks] == [12 * tick, 24 * tick, 36 * tick, None]
    assert [c.warm for c in plan.chunks] == [None, 8 * tick, 20 * tick, 32 * tick]
    assert [c.fade for c in plan.chunks] == [8 * tick, 20 * tick, 32 * tick, None]
    assert [c.frames for c in plan.chunks] == [12, 12, 12, 12]
    assert len(plan_file(src, chunk_seconds=None).chunks) == 1
    assert len(plan_file(src, chunk_seconds=1.5).chunks) == 1  # not 1.5x longer than a chunk


def test_plan_rejects_what_is_not_a_video(tmp_path):
    from livedream.errors import InputError

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    with pytest.raises(InputError, match="not a video file: bad.mp4"):
        plan_file(bad)


# -- chunks and joins -------------------------------------------------------------------------------
@pytest.mark.parametrize("vfr", [False, True], ids=["cfr", "vfr"])
def test_chunked_output_has_the_input_frames_timestamps_duration_and_audio(tmp_path, vfr):
    src = make_keyed_clip(tmp_path / "in.mp4", frames=48, gop=12, audio=True, vfr=vfr)
    out = tmp_path / "out" / "in.mp4"
    out.parent.mkdir()
    with InlineExecutor() as executor:
        summary = run_batch([(str(src), str(out))], cfg(), executor,
                            BatchOptions(chunk_seconds=0.5, warmup=4, progress=False,
                                         metadata={"livedream": "test"}))
    report = summary.files[0]
    assert (report.status, report.chunks, report.frames) == ("done", 4, 48), report
    a, b = probe(src), probe(out)
    assert len(b["times"]) == len(a["times"]) == 48
    assert b["times"] == a["times"]  # every frame at its exact source time
    assert b["duration"] == a["duration"]
    # The video ends where the input's does, both as their headers say (as `livedream video` reads
    # a file's end): whichever frames the encoder made B-frames (an .mp4 stores decode-order
    # durations only, so the last packet's says where the video ends).
    with VideoReader(src) as source, VideoReader(out) as output:
        assert output.end_time == pytest.approx(source.end_time, abs=1e-6)
    assert b["audio"] == a["audio"] and len(a["audio"]) > 50  # the same AAC packets, same times
    assert b["codecs"] == ["h264", "aac"]
    diff = np.mean([np.abs(x.astype(int) - y.astype(int)).mean()
                    for x, y in zip(decode(src), decode(out), strict=True)])
    assert diff > 2.0, f"output barely differs from input ({diff:.2f})"
    assert not (out.parent / ".livedream-chunks").exists()  # chunk files removed after the join
    assert sorted(os.listdir(out.parent)) == ["in.mp4", MANIFEST_NAME]  # no temporary file left
    entry = manifest(out.parent)["in.mp4"]
    assert entry["status"] == "done" and entry["frames"] == 48 and len(entry["done"]) == 4


def test_chunks_are_joined_without_reencoding(tmp_path):
    src = make_keyed_clip(tmp_path / "in.mkv", width=66, height=46, frames=36, gop=12,
                          audio=False)  # Matroska input, odd-sized chroma blocks
    plan = plan_file(src, chunk_seconds=0.5, warmup=4)
    assert len(plan.chunks) == 3
    parts, packets = [], []
    for chunk in plan.chunks:
        result = dream_chunk(ChunkTask("out.mp4", plan.src, chunk, plan.time_base, plan.fps,
                                       str(tmp_path / f"c{chunk.index}.mp4"), cfg()))
        assert result.frames == chunk.frames == 12
        assert result.warmup == (0 if chunk.index == 0 else 4)
        assert result.faded == (4 if chunk.index < 2 else 0)
        parts.append(Part(result.path, result.first_pts))
        packets += video_packets(Path(result.path))
    joined = join_chunks(parts, tmp_path / "out.mp4", source=plan.src, time_base=plan.time_base)
    assert joined.frames == 36 and joined.duration == pytest.approx(1.5)
    assert video_packets(tmp_path / "out.mp4") == packets  # the chunks' bytes, in order
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264" and not c.streams.audio
    assert probe(tmp_path / "out.mp4")["times"] == probe(src)["times"]


def test_seams_flicker_no_more_than_the_rest(tmp_path):
    # Chunk files are encoded lossless here: each chunk starts with a keyframe, and a keyframe
    # re-quantises every block (x264 at crf 18 on 96x72 shows ~1.3x flicker at any keyframe,
    # chunked or not). This measures the seams between the dreams; see scripts/bench_farm.py.
    src = make_keyed_clip(tmp_path / "pan.mp4", width=96, height=72, frames=72, gop=24, crf=8,
                          audio=False, draw=pan)
    sources = decode(src)

    def seam_ratio(warmup: int) -> tuple[float, list[float]]:
        out = tmp_path / f"warmup{warmup}" / "pan.mp4"
        out.parent.mkdir()
        with InlineExecutor() as executor:
            summary = run_batch([(str(src), str(out))], cfg(dream_width=64, cold_iters=4), executor,
                                BatchOptions(chunk_seconds=1.0, warmup=warmup, crf=0, progress=False))
        assert summary.files[0].chunks == 3
        frames = decode(out)
        errors = [warping_error(frames[t - 1:t + 1], sources[t - 1:t + 1]) for t in range(1, 72)]
        median = float(np.median(errors))
        seams = [errors[t - 1] for t in (24, 48)]  # pairs (23, 24) and (47, 48)
        return max(seams) / median, seams

    ratio, seams = seam_ratio(8)
    assert ratio <= 1.2, f"seams {seams} are {ratio:.2f}x the median"
    cold, _ = seam_ratio(0)  # each chunk starts cold at its keyframe: the check does see that
    assert cold > 1.25 and cold > ratio + 0.15, (cold, ratio)


# -- nothing lost ----------------------------------------------------------------------------------
class _StopAfter:
    def __init__(self, chunks: int) -> None:
        self.left = chunks

    def __call__(self, name: str, index: int) -> None:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt  # as a crash or Ctrl-C right after the chunk was recorded


def test_rerun_after_an_interrupted_run_skips_finished_chunks(tmp_path):
    src = make_keyed_clip(tmp_path / "in.mp4", frames=36, gop=12)
    outdir = tmp_path / "out"
    outdir.mkdir()
    pairs = [(str(src), str(outdir / "in.mp4"))]
    options = BatchOptions(chunk_seconds=0.5, warmup=4, progress=False)
    with InlineExecutor() as executor:
        first = run_batch(pairs, cfg(), executor, options, on_chunk=_StopAfter(1))
    assert first.interrupted and first.files[0].status == "interrupted"
    assert not (outdir / "in.mp4").exists()  # nothing half-made at the final name
    done = manifest(outdir)["in.mp4"]["done"]
    assert set(done) == {"0"} and done["0"]["run"] == first.run

    with InlineExecutor() as executor:
        second = run_batch(pairs, cfg(), executor, options)
    assert second.files[0].status == "done" and second.files[0].resumed == 1
    done = manifest(outdir)["in.mp4"]["done"]
    assert done["0"]["run"] == first.run  # made by the first run, not again
    assert {done[k]["run"] for k in ("1", "2")} == {second.run}
    assert len(decode(outdir / "in.mp4")) == 36

    with InlineExecutor() as executor:  # a third time: nothing to do
        third = run_batch(pairs, cfg(), executor, options)
    assert third.files[0].status == "skipped"


def test_a_chunk_that_keeps_failing_fails_its_file_only(tmp_path):
    a = make_keyed_clip(tmp_path / "a.mp4", frames=24, gop=12, audio=False)
    b = make_keyed_clip(tmp_path / "b.mp4", frames=24, gop=12, audio=False)
    outdir = tmp_path / "out"
    outdir.mkdir()
    fault = Fault("a.mp4", 1, action="raise", once=False)
    with InlineExecutor() as executor:
        summary = run_batch([(str(a), str(outdir / "a.mp4")), (str(b), str(outdir / "b.mp4"))],
                            cfg(), executor, BatchOptions(chunk_seconds=0.4, warmup=4, retries=1,
                                                        progress=False), fault=fault)
    status = {os.path.basename(f.output): f for f in summary.files}
    assert status["b.mp4"].status == "done" and len(decode(outdir / "b.mp4")) == 24
    assert status["a.mp4"].status == "failed" and not (outdir / "a.mp4").exists()
    assert status["a.mp4"].error == ("chunk 1 of a.mp4: sink stage failed: injected fault in "
                                     "chunk 1 of a.mp4 (after 2 attempts)")
    assert manifest(outdir)["a.mp4"]["status"] == "failed"


def test_corrupt_file_among_good_ones_is_named_and_exits_non_zero(tmp_path, capsys):
    indir, outdir = tmp_path / "in", tmp_path / "out"
    indir.mkdir()
    make_keyed_clip(indir / "a.mp4", frames=24, gop=12)
    make_keyed_clip(indir / "c.mov", frames=12, gop=12, audio=False)
    (indir / "b.avi").write_bytes(b"RIFF" + os.urandom(2000))
    code = main([str(indir), "-o", str(outdir), "--workers", "1", "--chunk-seconds", "0.4",
                 "--warmup", "4", *FAST_ARGS])
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(os.listdir(outdir)) == ["a.mp4", "c.mov", MANIFEST_NAME]
    assert len(decode(outdir / "a.mp4")) == 24 and len(decode(outdir / "c.mov")) == 12
    assert f"livedream: error: 1 of 3 files failed: {indir / 'b.avi'}" in err


def _damage(kind: str, data: dict) -> str:
    """Damage a manifest's data in place as `kind` says; the field the message must name."""
    entry = data["files"]["in.mp4"]
    record = entry["done"]["0"]
    changes = {
        "chunk file": (record, "file", 5), "chunk frames": (record, "frames", "12"),
        "chunk first_pts": (record, "first_pts", None), "chunk seconds": (record, "seconds", True),
        "chunk stopped_early": (record, "stopped_early", ["x"]),
        "entry chunks": (entry, "chunks", 1.5), "entry done": (entry, "done", []),
        "entry error": (entry, "error", 7), "entry output_size": (entry, "output_size", "1"),
        "entry status": (entry, "status", None),
    }
    if kind in changes:
        where, key, value = changes[kind]
        where[key] = value
        return key
    if kind == "chunk missing run":
        del record["run"]
        return "run"
    if kind == "entry a list":
        data["files"]["in.mp4"] = [entry]
        return "in.mp4"
    data["files"] = [entry]  # "files a list"
    return "files"


@pytest.mark.parametrize("kind", [
    "chunk file", "chunk frames", "chunk first_pts", "chunk seconds", "chunk stopped_early",
    "chunk missing run", "entry chunks", "entry done", "entry error", "entry output_size",
    "entry status", "entry a list", "files a list"])
def test_a_manifest_with_a_field_of_the_wrong_type_is_one_line_exit_2(tmp_path, capsys, kind):
    src = make_keyed_clip(tmp_path / "in.mp4", frames=12, gop=12, audio=False)
    outdir = tmp_path / "out"
    outdir.mkdir()
    record = {"file": ".livedream-chunks/in.mp4/chunk-0000.mp4", "frames": 12, "first_pts": 0,
              "run": "0123abcd", "seconds": 0.5, "stopped_early": None}
    data = {"version": 1, "files": {"in.mp4": {
        "input": str(src), "fingerprint": "0123456789abcdef", "chunks": 1, "done": {"0": record},
        "status": "pending", "error": None, "output_size": None, "output_mtime_ns": None,
        "frames": None, "run": "0123abcd"}}}
    field = _damage(kind, data)
    (outdir / MANIFEST_NAME).write_text(json.dumps(data))
    code = main([str(src), "-o", str(outdir), "--workers", "1", *FAST_ARGS])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("livedream: error: "), err
    assert "is damaged" in err and "delete it to start over" in err and field in err, err
    assert sorted(os.listdir(outdir)) == [MANIFEST_NAME]  # nothing dreamed, nothing written


def assert_whole_after_a_worker_dies(tmp_path, executor):
    """Dream a 3-chunk clip on `executor` while the worker on chunk 1 exits after 3 frames: the
    fault fired, and the output still has every frame time and the sound of the input."""
    src = make_keyed_clip(tmp_path / "in.mp4", frames=36, gop=12)
    outdir = tmp_path / "out"
    outdir.mkdir()
    marker = tmp_path / "fired"
    with executor:
        summary = run_batch([(str(src), str(outdir / "in.mp4"))], cfg(), executor,
                            BatchOptions(chunk_seconds=0.5, warmup=4, progress=False),
                            fault=Fault("in.mp4", 1, str(marker), action="exit", after=3))
    assert marker.exists()  # the worker did die
    assert summary.files[0].status == "done", summary.files[0].error
    a, b = probe(src), probe(outdir / "in.mp4")
    assert b["times"] == a["times"] and b["audio"] == a["audio"]


def test_local_worker_killed_mid_job_is_replaced_and_the_output_is_whole(tmp_path):
    assert_whole_after_a_worker_dies(tmp_path, LocalExecutor(workers=2))


def _workers(driver: int) -> list[int]:
    """The worker processes `driver` started (multiprocessing's spawned children), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == driver and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not reaped by whoever adopted it, does not)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _busy_batch(tmp_path: Path) -> tuple[subprocess.Popen, Path, list[int]]:
    """`livedream batch` of two long clips on two workers, once both are dreaming; (process,
    output folder, worker pids)."""
    clips = [make_keyed_clip(tmp_path / f"{name}.mp4", width=160, height=120, frames=600, gop=30,
                             audio=False) for name in ("a", "b")]
    outdir = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "livedream", "batch", *map(str, clips), "-o",
                             str(outdir), "--workers", "2", "--chunk-seconds", "0", "--quiet",
                             "--dream-width", "96", "--cold-iters", "1"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(outdir.glob(".livedream-chunks/*/.chunk-*.part-*"))) == 2:  # both are writing
            break
        time.sleep(0.2)
    workers = _workers(proc.pid)
    assert proc.poll() is None and len(workers) == 2, workers
    return proc, outdir, workers


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_a_batch_like_ctrl_c_keeping_the_manifest_and_stopping_the_workers(tmp_path):
    proc, outdir, workers = _busy_batch(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (f"livedream: interrupted: finished chunks are kept in "
                                            f"{outdir / MANIFEST_NAME}; run the same command again "
                                            "to resume"), err
    assert set(manifest(outdir)) == {"a.mp4", "b.mp4"}
    assert not [pid for pid in workers if _running(pid)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_driver(tmp_path):
    proc, _, workers = _busy_batch(tmp_path)
    proc.send_signal(signal.SIGKILL)  # the driver cannot stop them: the kernel must
    deadline = time.monotonic() + 3  # each had seconds of dreaming left
    proc.wait(timeout=10)  # not communicate(): it would wait for the workers (stderr is theirs too)
    while time.monotonic() < deadline and any(_running(pid) for pid in workers):
        time.sleep(0.05)
    alive = [pid for pid in workers if _running(pid)]
    for pid in alive:  # the test's own cleanup, before it fails
        os.kill(pid, signal.SIGKILL)
    assert proc.stderr is not None
    proc.stderr.close()
    assert not alive, "workers outlived their driver"


def test_ray_executor_missing_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    src = make_keyed_clip(tmp_path / "in.mp4", frames=12, gop=12, audio=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    code = main([str(src), "-o", str(tmp_path / "out"), "--executor", "ray", *FAST_ARGS])
    assert code == 2
    assert capsys.readouterr().err == ("livedream: error: the ray executor needs Ray: "
                                       "pip install 'livedream[ray]'\n")


# -- Ray --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'livedream[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_ray_gives_the_same_outputs_as_local(tmp_path, ray_cluster):
    from livedream.farm.ray_executor import RayExecutor

    clips = [make_keyed_clip(tmp_path / "a.mp4", frames=36, gop=12),
             make_keyed_clip(tmp_path / "b.mkv", frames=12, gop=12, audio=False)]
    options = BatchOptions(chunk_seconds=0.5, warmup=4, progress=False)
    outputs = {}
    for name, executor in (("ray", RayExecutor()), ("inline", InlineExecutor(threads=1))):
        outdir = tmp_path / name
        outdir.mkdir()
        with executor:
            summary = run_batch([(str(c), str(outdir / c.name)) for c in clips], cfg(), executor,
                                options)
        assert [f.status for f in summary.files] == ["done", "done"]
        outputs[name] = outdir
    for clip in clips:
        a, b = outputs["ray"] / clip.name, outputs["inline"] / clip.name
        assert probe(a) == probe(b)
        # Both run each chunk on one thread of this machine: the same kernels, the same chain
        # of warm starts, the same encoder, so the same pixels.
        same = [np.array_equal(x, y) for x, y in zip(decode(a), decode(b), strict=True)]
        assert all(same), f"{clip.name}: ray and local differ at frames {np.flatnonzero(~np.array(same))}"


def test_ray_worker_killed_mid_job_still_completes(tmp_path, ray_cluster):
    from livedream.farm.ray_executor import RayExecutor

    assert_whole_after_a_worker_dies(tmp_path, RayExecutor(retries=2))


def test_ray_workers_load_the_model_once_and_stream_results(tmp_path, ray_cluster):
    from livedream.farm.ray_executor import RayExecutor

    src = make_keyed_clip(tmp_path / "in.mp4", frames=48, gop=6, audio=False)
    plan = plan_file(src, chunk_seconds=0.25, warmup=2)
    assert len(plan.chunks) == 8
    with RayExecutor() as executor:
        assert executor.capacity == 2 and not executor.gpus
        for chunk in plan.chunks[:executor.capacity]:
            executor.submit(ChunkTask("in.mp4", plan.src, chunk, plan.time_base, plan.fps,
                                    str(tmp_path / f"c{chunk.index}.mp4"), cfg()))
        queued, results = list(plan.chunks[executor.capacity:]), []
        while len(results) < len(plan.chunks):
            outcome = executor.next_outcome(1.0)  # each one as it ends: submit the next
            if outcome is None:
                continue
            assert outcome.result is not None, outcome.error
            results.append(outcome.result)
            if queued:
                chunk = queued.pop(0)
                executor.submit(ChunkTask("in.mp4", plan.src, chunk, plan.time_base, plan.fps,
                                        str(tmp_path / f"c{chunk.index}.mp4"), cfg()))
    assert sorted(r.index for r in results) == list(range(8))
    pids = [r.pid for r in results]
    assert len(set(pids)) < len(pids)  # workers were reused...
    assert {r.model_loads for r in results} == {1}  # ...and none built its model twice
