"""The engine's benchmarks (issue 2 targets): `livedream bench --sections machine,image`.

    python scripts/bench_image.py [--quick] [--threads N] [--json PATH]
"""

import sys

from livedream.bench import main

if __name__ == "__main__":
    sys.exit(main(["--sections", "machine,image", *sys.argv[1:]]))
