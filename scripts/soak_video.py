"""Memory over a long input (not a test): RSS sampled while a synthetic 640x480 clip is dreamed.

    python scripts/soak_video.py [--frames 18000]   # 18000 frames = 10 minutes at 30 fps

Prints RSS every 10% and the growth between the first and last tenth; flat means no leak.
"""

from __future__ import annotations

import argparse
import resource

from livedream.config import video_preset
from livedream.io.sinks import NullSink
from livedream.io.sources import SyntheticSource
from livedream.pipeline import Frame, Pipeline, build_dreamers


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=18000)
    parser.add_argument("--preset", default="realtime")
    args = parser.parse_args()
    cfg = video_preset(args.preset)
    samples: list[tuple[int, float]] = []
    step = max(1, args.frames // 10)

    def on_frame(frame: Frame) -> None:
        if frame.index % step == 0:
            samples.append((frame.index, rss_mb()))
            print(f"frame {frame.index:6d}: RSS {samples[-1][1]:7.1f} MB", flush=True)

    report = Pipeline(SyntheticSource(640, 480, frames=args.frames), [NullSink()], cfg,
                      build_dreamers(cfg), on_frame=on_frame).run()
    first, last = samples[1][1], samples[-1][1]  # skip the warm-up sample
    print(f"{report.frames_out} frames at {report.fps:.1f} fps; RSS {first:.0f} MB after 10% -> "
          f"{last:.0f} MB at the end ({last - first:+.0f} MB)")


if __name__ == "__main__":
    main()
