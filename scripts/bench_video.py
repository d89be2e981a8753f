"""The video pipeline's benchmarks (issue 3 targets): `livedream bench --sections machine,video`.

Realtime fps file to file (whole process) and in the pipeline, realtime vs classic fps,
strength (on full-size frames and at dream size) and flicker.

    python scripts/bench_video.py [--quick] [--threads N] [--json PATH]
"""

import sys

from livedream.bench import main

if __name__ == "__main__":
    sys.exit(main(["--sections", "machine,video", *sys.argv[1:]]))
