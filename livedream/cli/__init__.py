"""The `livedream` command: one module per subcommand, each with `register(subparsers)` and
`run(args) -> exit code`; what they share is in `common`. The command line builds a config and
calls the library; the library never reads `sys.argv`.

Every error a user can cause ends as one line on stderr and exit code 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from livedream.cli import batch, bench, distill, image, layers, live, serve, video
from livedream.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, Parser
from livedream.errors import LivedreamError

__all__ = ["main", "build_parser"]

_COMMANDS = (image, video, live, serve, batch, distill, layers, bench)


def build_parser() -> argparse.ArgumentParser:
    """The whole parser; imports no torch (so `--help` and usage errors answer at once)."""
    parser = Parser(prog="livedream", description="DeepDream for images, video files and live video.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in _COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.run(args))
        # Skip collecting torch's object graph at exit (up to ~1 s on a busy CPU; a Ctrl-C
        # must end a live run within 2 s).
        gc.freeze()
        return code
    except LivedreamError as e:
        print(f"livedream: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("livedream: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `livedream layers | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
