"""Live mode benchmark (not a test): a paced fake camera dreamed live, for N seconds.

    python scripts/bench_live.py --seconds 60            # 640x480 @ 30 fps, realtime preset
    python scripts/bench_live.py --seconds 600 --every 30  # memory over 10 minutes

Prints the output fps, the capture-to-sink latency p50 / p95, the frames dropped and the
process's resident memory (RSS) over time, then the targets of the live-mode issue: output
>= 15 fps, p95 <= 150 ms, memory flat (the RSS slope after the warm-up). Never fails on speed:
the exit code is 0 whatever the numbers (other work on the machine moves them; say so).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import cv2
import numpy as np

from livedream.config import video_preset
from livedream.io.sinks import NullSink
from livedream.io.sources import SyntheticSource
from livedream.live.run import run_live
from livedream.live.stats import LiveStats
from livedream.pipeline import build_dreamers


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2**20 if sys.platform == "darwin" else 2**10)


class SmoothSyntheticSource(SyntheticSource):
    """SyntheticSource whose pan goes back and forth instead of wrapping around.

    The stock scene jumps back by 64 px every 128 frames (its pan wraps): the warm start sees a
    scene cut there and dreams a cold frame (`cold_iters`, 6 at realtime), about every 4 s at 30
    fps. A real camera rarely cuts; `--smooth` shows the rate without those cold frames.
    """

    def frame(self, i: int) -> np.ndarray:
        def bounce(v: int) -> int:
            return 63 - abs(v % 126 - 63)

        dx, dy = bounce(i), bounce(i // 2)
        img = np.ascontiguousarray(self._scene[dy:dy + self.height, dx:dx + self.width])
        cx = 4 * bounce(i) * (self.width - 1) // 252
        cv2.circle(img, (cx, self.height // 2), max(4, self.height // 8), (230, 200, 40), -1)
        return img


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--preset", default="realtime")
    ap.add_argument("--dream-width", type=int, help="override the preset's dream width")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between stats / RSS lines")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds before the RSS baseline")
    ap.add_argument("--smooth", action="store_true",
                    help="a scene that never cuts (see SmoothSyntheticSource)")
    ap.add_argument("--json", help="also write the run's report here")
    args = ap.parse_args()

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cfg = video_preset(args.preset, dream_width=args.dream_width)
    print(f"live bench: {args.width}x{args.height} @ {args.fps:g} fps paced, preset {args.preset} "
          f"(dream width {cfg.dream_width}), {args.seconds:g} s, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    rss_start = rss_mb()
    dreamers = build_dreamers(cfg)
    rss_model = rss_mb()
    kind = SmoothSyntheticSource if args.smooth else SyntheticSource
    source = kind(args.width, args.height, frames=sys.maxsize, fps=args.fps, paced=True)
    started = time.monotonic()
    samples: list[tuple[float, float]] = []  # (seconds, RSS MB)

    def on_stats(s: dict) -> None:
        t, mb = time.monotonic() - started, rss_mb()
        samples.append((t, mb))
        print(f"{t:6.0f} s  {LiveStats.line(s)}  RSS {mb:.0f} MB", flush=True)

    result = run_live(source, [NullSink()], cfg, dreamers=dreamers, seconds=args.seconds,
                      stats_every=args.every, on_stats=on_stats)
    r = result.report
    rss_end = rss_mb()
    after = [(t, mb) for t, mb in samples if t >= args.warmup]
    slope = float(np.polyfit(*zip(*after, strict=True), 1)[0]) * 60 if len(after) >= 3 else float("nan")
    third = max(1, len(after) // 3)
    mbs = [mb for _, mb in after]
    growth = float(np.median(mbs[-third:]) - np.median(mbs[:third])) if after else float("nan")
    lat = r["latency_ms"]
    print()
    print(f"output      {r['fps_out']:.1f} fps (input {r['fps_in']:.1f} fps), {r['frames']} frames "
          f"in {r['seconds']:.0f} s")
    print(f"dream       p50 {r['dream_ms']['p50']:.0f} ms, p95 {r['dream_ms']['p95']:.0f} ms per frame")
    print(f"latency     p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms (capture to sink)")
    print(f"dropped     {r['dropped']} ({r['dropped_source']} at the source, "
          f"{r['dropped_pipeline']} in the pipeline), cold starts {r['cold_starts']}")
    print(f"RSS         {rss_start:.0f} MB at start, {rss_model:.0f} MB with the model, "
          f"{after[0][1] if after else float('nan'):.0f} MB after {args.warmup:g} s, "
          f"{rss_end:.0f} MB at the end")
    print(f"            after the warm-up {min(mbs, default=0):.0f}..{max(mbs, default=0):.0f} MB; "
          f"last third - first third (medians) {growth:+.1f} MB; fitted slope {slope:+.2f} MB/min")
    print(f"targets     fps_out >= 15: {'yes' if r['fps_out'] >= 15 else 'NO'}; "
          f"p95 <= 150 ms: {'yes' if lat['p95'] <= 150 else 'NO'}; "
          f"memory flat (growth < 10 MB): {'yes' if growth < 10 else 'NO'}")
    print(f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          "(other work on this machine lowers these numbers)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**r, "rss_mb": samples, "rss_growth_mb": growth, "rss_slope_mb_per_min": slope}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
