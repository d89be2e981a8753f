"""Benchmarks for the farm's targets (not tests: prints numbers and ratios, never fails on speed).

    python scripts/bench_farm.py [--skip-executors] [--skip-seams] [--skip-film] [--real]
                                 [--clips 4] [--clip-seconds 4] [--film-minutes 10]

1. Executors: `--clips` short clips through the Ray executor (a local cluster of 2 CPUs) and the local
   executor (2 worker processes): wall time ratio, target ray <= 1.15x local. Both include their
   start-up (spawning workers that import torch; for Ray also starting the cluster); Ray is also
   timed on a cluster that is already running.
2. Seams: a panning clip cut every 2 s. Flicker (warping error between consecutive output
   frames, flow from the input) at each seam vs the median over all pairs, target <= 1.2x; next
   to it the same pairs in the whole-file dream (`livedream video`) and in the source itself,
   with the chunk files encoded at crf 18 (the default) and lossless. `--real`: also box.mp4
   from ../shared/media (a real camera clip; slow: ~2 x 455 frames at 640x480).
3. A long film made here (`--film-minutes`, default 10, at 64x48 with sound: dreaming it at full
   size would take hours on this CPU) in 30 s chunks: the output must hold exactly the input's
   frames, timestamps, duration and audio packets.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from fractions import Fraction

import av
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEDIA = os.path.join(os.path.dirname(ROOT), "shared", "media")


# -- media made here --------------------------------------------------------------------------------
def pan(i: int, width: int, height: int) -> np.ndarray:
    """A smooth texture panning 1.5 px per frame, and a disc crossing it: steady motion."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x + 1.5 * i, y + 0.5 * i
    rgb = np.stack([128 + 60 * np.sin(u / 7) + 50 * np.sin(v / 5),
                    128 + 70 * np.sin((u + v) / 9),
                    128 + 60 * np.cos(u / 4 - v / 11)], axis=-1)
    cx, cy, r = (2 * i) % (width + 40) - 20, height / 2, height / 6
    rgb[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = (240, 200, 40)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def make_clip(path: str, *, width: int, height: int, seconds: float, fps: int = 24,
              gop: int | None = None, audio: bool = True, crf: int = 12) -> str:
    """H.264 (+ AAC tone) made in code; `gop`: a keyframe every `gop` frames (None: x264's)."""
    frames = round(seconds * fps)
    tb = Fraction(1, fps)
    options = {"preset": "veryfast", "crf": str(crf)}
    if gop:
        options["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
    with av.open(path, "w") as c:
        video = c.add_stream("libx264", rate=fps, options=options)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = video.codec_context.time_base = tb
        sound = c.add_stream("aac", rate=44100, layout="mono") if audio else None
        for i in range(frames + 1):
            frame = None
            if i < frames:
                frame = av.VideoFrame.from_ndarray(pan(i, width, height), "rgb24")
                frame.pts, frame.time_base = i, tb
            for packet in video.encode(frame):
                packet.duration = 1
                c.mux(packet)
        if sound is not None:
            samples = round(frames / fps * 44100)
            for start in range(0, samples, 1024):
                t = np.arange(start, min(start + 1024, samples)) / 44100
                a = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                               format="flt", layout="mono")
                a.sample_rate, a.pts, a.time_base = 44100, start, Fraction(1, 44100)
                c.mux(sound.encode(a))
            c.mux(sound.encode(None))
    return path


def facts(path: str) -> dict:
    """Frame times, duration, the last frame's end and the audio packets (pts, md5) of a file."""
    with av.open(path) as c:
        end = max(float((p.pts + p.duration) * p.time_base) for p in c.demux(video=0) if p.size)
    with av.open(path) as c:
        duration = c.duration
        times = [f.pts for f in c.decode(video=0)]
        tb = c.streams.video[0].time_base
    with av.open(path) as c:
        audio = [(p.pts, hashlib.md5(bytes(p)).hexdigest()) for p in c.demux(audio=0) if p.size] \
            if c.streams.audio else []
    return {"times": [float(t * tb) for t in times], "duration": duration, "end": end, "audio": audio}


def decode(path: str) -> list[np.ndarray]:
    with av.open(path) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


# -- 1. executors -------------------------------------------------------------------------------------
def bench_executors(tmp: str, clips: int, seconds: float) -> None:
    from livedream.config import video_preset
    from livedream.farm import BatchOptions, LocalExecutor, run_batch
    from livedream.farm.ray_executor import RayExecutor, import_ray

    ray = import_ray()
    cfg = video_preset("realtime")
    sources = [make_clip(os.path.join(tmp, f"clip{i}.mp4"), width=320, height=240,
                         seconds=seconds) for i in range(clips)]
    frames = clips * round(seconds * 24)
    options = BatchOptions(progress=False)

    def run(name: str, make_executor) -> float:
        outdir = os.path.join(tmp, f"out-{name}")
        os.makedirs(outdir)
        start = time.perf_counter()
        with make_executor() as executor:
            summary = run_batch([(s, os.path.join(outdir, os.path.basename(s))) for s in sources],
                                cfg, executor, options)
        wall = time.perf_counter() - start
        assert all(f.status == "done" for f in summary.files), summary.files
        print(f"  {name:<24} {wall:6.1f} s  ({frames / wall:4.1f} frames/s)", flush=True)
        return wall

    print(f"1. executors: {clips} clips of {seconds:g} s, 320x240, realtime preset, {frames} frames")
    local = run("local (2 workers)", lambda: LocalExecutor(2))
    ray_cold = run("ray, starting its cluster", lambda: RayExecutor(workers=2))
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    print(f"  (ray.init of a 2-CPU cluster: {time.perf_counter() - start:.1f} s)")
    try:
        ray_warm = run("ray, cluster running", lambda: RayExecutor())
    finally:
        ray.shutdown()
    print(f"  ray / local: {ray_cold / local:.2f}x with the cluster's start, "
          f"{ray_warm / local:.2f}x on a running cluster (target <= 1.15x)")


# -- 2. seams ---------------------------------------------------------------------------------------
def seam_flicker(src: str, out: str, chunk_frames: list[int]) -> tuple[float, list[float], list[float]]:
    """(median pair flicker, flicker at each seam, the source's own flicker at each seam)."""
    from livedream.temporal import warping_error

    sources, frames = decode(src), decode(out)
    assert len(sources) == len(frames), (len(sources), len(frames))
    errors = [warping_error(frames[t - 1:t + 1], sources[t - 1:t + 1]) for t in range(1, len(frames))]
    seams = list(np.cumsum(chunk_frames)[:-1])
    own = [warping_error(sources[t - 1:t + 1], sources[t - 1:t + 1]) for t in seams]
    return statistics.median(errors), [errors[t - 1] for t in seams], own


def bench_seams(tmp: str, real: bool) -> None:
    from livedream.config import video_preset
    from livedream.farm import BatchOptions, InlineExecutor, plan_file, run_batch
    from livedream.pipeline import build_dreamers
    from livedream.video_job import dream_video

    cfg = video_preset("realtime")
    cases = [(make_clip(os.path.join(tmp, "pan.mp4"), width=192, height=144, seconds=8, gop=48,
                        audio=False), 2.0, "pan 192x144, 8 s, cut every 2 s")]
    if real and os.path.exists(os.path.join(MEDIA, "box.mp4")):
        cases.append((os.path.join(MEDIA, "box.mp4"), 5.0, "box.mp4 640x480, keyframes at 0 and 8.3 s"))
    print("2. seams: flicker at each seam / the clip's median pair flicker (target <= 1.2x)")
    for src, every, label in cases:
        print(f"  {label}")
        plan = plan_file(src, chunk_seconds=every, warmup=16)
        sizes = [c.frames for c in plan.chunks]
        whole = os.path.join(tmp, "whole-" + os.path.basename(src))
        dream_video(src, whole, cfg, build_dreamers(cfg), progress=False)
        median, at_seams, own = seam_flicker(src, whole, sizes)
        print(f"    whole file (livedream video): median {median:.2f}, same pairs "
              f"{', '.join(f'{e:.2f}' for e in at_seams)} -> {max(at_seams) / median:.2f}x; "
              f"source's own flicker there {', '.join(f'{e:.2f}' for e in own)}")
        for crf in (18, 0):
            outdir = os.path.join(tmp, f"seams-{crf}-{os.path.basename(src)}")
            os.makedirs(outdir)
            out = os.path.join(outdir, os.path.basename(src))
            with InlineExecutor() as executor:
                run_batch([(src, out)], cfg, executor,
                          BatchOptions(chunk_seconds=every, warmup=16, crf=crf, progress=False))
            median, at_seams, _ = seam_flicker(src, out, sizes)
            print(f"    chunked, crf {crf:>2}: median {median:.2f}, seams "
                  f"{', '.join(f'{e:.2f}' for e in at_seams)} -> {max(at_seams) / median:.2f}x",
                  flush=True)


# -- 3. a long film ---------------------------------------------------------------------------------
def bench_film(tmp: str, minutes: float) -> None:
    from livedream.config import video_preset
    from livedream.farm import BatchOptions, LocalExecutor, run_batch

    start = time.perf_counter()
    src = make_clip(os.path.join(tmp, "film.mp4"), width=64, height=48, seconds=60 * minutes)
    print(f"3. film: {minutes:g} min at 64x48, 24 fps, AAC, x264's own keyframes "
          f"(made in {time.perf_counter() - start:.0f} s)")
    outdir = os.path.join(tmp, "film-out")
    os.makedirs(outdir)
    out = os.path.join(outdir, "film.mp4")
    start = time.perf_counter()
    with LocalExecutor(2) as executor:
        summary = run_batch([(src, out)], video_preset("realtime"), executor,
                            BatchOptions(chunk_seconds=30, progress=False))
    wall = time.perf_counter() - start
    report = summary.files[0]
    a, b = facts(src), facts(out)
    print(f"  {report.status}: {report.chunks} chunks, {report.frames} frames in {wall:.0f} s "
          f"({report.frames / wall:.0f} frames/s, 2 workers)")
    print(f"  frames {len(b['times'])} vs {len(a['times'])} in the input; timestamps identical: "
          f"{a['times'] == b['times']}; duration {b['duration'] / 1e6:.6f} vs "
          f"{a['duration'] / 1e6:.6f} s; last frame ends at {b['end']:.6f} vs {a['end']:.6f} s; "
          f"audio packets identical: {a['audio'] == b['audio']} ({len(a['audio'])})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--clip-seconds", type=float, default=4.0)
    p.add_argument("--film-minutes", type=float, default=10.0)
    p.add_argument("--skip-executors", action="store_true")
    p.add_argument("--skip-seams", action="store_true")
    p.add_argument("--skip-film", action="store_true")
    p.add_argument("--real", action="store_true", help="also the seams of ../shared/media/box.mp4")
    args = p.parse_args()
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (a shared machine: "
          "other work changes these numbers)")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_executors:
            bench_executors(tmp, args.clips, args.clip_seconds)
        if not args.skip_seams:
            bench_seams(tmp, args.real)
        if not args.skip_film:
            bench_film(tmp, args.film_minutes)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
