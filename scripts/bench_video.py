"""Benchmarks for the video pipeline's targets (not tests: prints medians and ratios).

    python scripts/bench_video.py [CLIP] [--seconds 5] [--classic-frames 6]

- `realtime`, file to file, whole process (`livedream video` in a subprocess): fps (target >= 20)
- `realtime` vs `classic` on the same frames: fps ratio (target >= 20x), dream strength ratio
  (activation energy of the target layer, output over input; target >= 0.8x classic's) and
  flicker (warping error between consecutive output frames, flow from the input; target
  <= 1.5x the input's own)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import cv2

STRENGTH_AT_320: dict[str, float] = {}  # strength measured on frames resized to 320x240
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CLIP = os.path.join(ROOT, "samples", "box.mp4")


def whole_process_fps(clip: str, seconds: float, preset: str = "realtime") -> tuple[float, float, dict]:
    """(fps by wall clock of the whole process, fps of the pipeline, report) for `livedream video`."""
    with tempfile.TemporaryDirectory() as tmp:
        out, report = os.path.join(tmp, "out.mp4"), os.path.join(tmp, "r.json")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "livedream", "video", clip, "-o", out, "--quiet",
                        "--preset", preset, "--duration", str(seconds), "--report", report],
                       check=True)
        wall = time.perf_counter() - t
        data = json.load(open(report))
    return data["frames"] / wall, data["fps"], data


def strength_and_flicker(clip: str, preset: str, frames: int,
                         **overrides: object) -> tuple[float, float, float, float]:
    """(fps of the pipeline, strength, flicker ratio, input flicker) of `preset` on the first frames."""
    from livedream.config import video_preset
    from livedream.dream import Dreamer, to_tensor
    from livedream.io.sinks import ListSink
    from livedream.io.sources import VideoFileSource
    from livedream.io.video import VideoReader
    from livedream.pipeline import Pipeline, build_dreamers
    from livedream.temporal import warping_error

    cfg = video_preset(preset, **overrides)
    dreamers = build_dreamers(cfg)
    with VideoReader(clip) as reader:
        sink = ListSink()
        source = VideoFileSource(reader)
        limited = (f for f in source if f.index < frames)
        report = Pipeline(limited, [sink], cfg, dreamers).run()
    outs = [f.out for f in sink.frames]
    srcs = [f.rgb for f in sink.frames]
    # Strength at the layer the presets dream, on the full-size output frames.
    judge = Dreamer(video_preset("realtime").dream)
    picks = list(range(0, len(outs), max(1, len(outs) // 6)))
    e_in = judge.energy(to_tensor([srcs[i] for i in picks]))
    e_out = judge.energy(to_tensor([outs[i] for i in picks]))
    strength = float((e_out / e_in).mean())
    # The same at the realtime dream size (320 px wide), where that preset's network looks.
    small = [cv2.resize(a, (320, 240), interpolation=cv2.INTER_AREA) for a in (srcs + outs)]
    k = len(srcs)
    e_in_s = judge.energy(to_tensor([small[i] for i in picks]))
    e_out_s = judge.energy(to_tensor([small[k + i] for i in picks]))
    STRENGTH_AT_320[preset] = float((e_out_s / e_in_s).mean())
    base = warping_error(srcs, srcs)
    return report.fps, strength, warping_error(outs, srcs) / base, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("clip", nargs="?", default=DEFAULT_CLIP)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--classic-frames", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-classic", action="store_true")
    args = parser.parse_args()

    runs = [whole_process_fps(args.clip, args.seconds) for _ in range(args.repeats)]
    wall_fps = [r[0] for r in runs]
    pipe_fps = [r[1] for r in runs]
    busy = runs[-1][2]["busy_seconds"]
    print(f"realtime file to file ({args.clip}, {args.seconds:g} s): whole process "
          f"median {statistics.median(wall_fps):.1f} fps (runs {', '.join(f'{v:.1f}' for v in wall_fps)}),"
          f" pipeline {statistics.median(pipe_fps):.1f} fps; target >= 20")
    print(f"  busy seconds by stage (last run): {busy}")

    n = int(args.seconds * 30)
    rt = strength_and_flicker(args.clip, "realtime", n)
    print(f"realtime: {rt[0]:.1f} fps, strength {rt[1]:.2f}x, flicker {rt[2]:.2f}x input "
          f"(input warping error {rt[3]:.2f})")
    if args.skip_classic:
        return
    cl = strength_and_flicker(args.clip, "classic", args.classic_frames)
    print(f"classic:  {cl[0]:.2f} fps, strength {cl[1]:.2f}x, flicker {cl[2]:.2f}x input")
    s320 = STRENGTH_AT_320
    print(f"strength measured at 320x240 instead: realtime {s320['realtime']:.2f}x, classic "
          f"{s320['classic']:.2f}x, ratio {s320['realtime'] / s320['classic']:.2f}")
    print(f"realtime vs classic: fps {rt[0] / cl[0]:.1f}x (target >= 20), "
          f"strength {rt[1] / cl[1]:.2f}x (target >= 0.8), flicker {rt[2]:.2f}x input (target <= 1.5)")


if __name__ == "__main__":
    main()
