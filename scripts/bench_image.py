"""Benchmarks for the dream engine's targets (not tests: prints medians, never fails on speed).

    python scripts/bench_image.py [--repeats 3] [--skip-4k]

- classic 182x158 photo, default network: seconds for the dream itself (target <= 0.4 s)
- classic 1280x720: seconds (target <= 6.5 s, the hackathon's two GTX 1080 Ti)
- 3840x2160 with tiling: peak RSS of a separate process (target <= 3 GB)
- `livedream image` process start to model ready (target <= 3 s)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "samples", "fruits.jpg")


def _photo(width: int, height: int):
    import cv2

    from livedream.dream import to_tensor
    from livedream.io.images import read_image

    return to_tensor(cv2.resize(read_image(SAMPLE), (width, height), interpolation=cv2.INTER_AREA))


def time_dream(width: int, height: int, repeats: int, **overrides: object) -> tuple[float, float, float]:
    """(median s, spread s, energy gain) of `classic` at width x height."""
    from livedream.config import preset
    from livedream.dream import Dreamer

    dreamer = Dreamer(preset("classic", **overrides))
    x = _photo(width, height)
    dreamer.dream(x)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        y = dreamer.dream(x)
        times.append(time.perf_counter() - t)
    gain = float(dreamer.energy(y)[0] / dreamer.energy(x)[0])
    return statistics.median(times), max(times) - min(times), gain


def peak_rss_4k() -> float:
    """Peak RSS in GB of a child process dreaming a 3840x2160 frame with tiles."""
    code = (
        f"import resource, sys; sys.path.insert(0, {ROOT!r})\n"
        "from scripts.bench_image import _photo\n"
        "from livedream.config import preset\nfrom livedream.dream import Dreamer\n"
        "d = Dreamer(preset('classic', iters=2))\nd.dream(_photo(3840, 2160))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024**2


def startup_seconds(repeats: int) -> float:
    """`livedream image` to the moment the model is ready (the first dream step starts)."""
    code = (
        "import time; t = time.perf_counter()\n"
        "from livedream.dream import Dreamer\nDreamer()\nprint(time.perf_counter() - t)\n"
    )
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-4k", action="store_true")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    for w, h, target in [(182, 158, 0.4), (1280, 720, 6.5)]:
        med, spread, gain = time_dream(w, h, args.repeats)
        print(f"classic {w}x{h}: median {med:.3f} s (spread {spread:.3f}), "
              f"energy gain {gain:.2f}x, target <= {target} s: {'ok' if med <= target else 'MISSED'}")
    if not args.skip_4k:
        rss = peak_rss_4k()
        print(f"3840x2160 tiled (2 iters): peak RSS {rss:.2f} GB, target <= 3 GB: "
              f"{'ok' if rss <= 3 else 'MISSED'}")
    start = startup_seconds(args.repeats)
    print(f"process start to model ready: median {start:.2f} s, target <= 3 s: "
          f"{'ok' if start <= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()
