"""`python -m livedream.server [options]`: the same as `livedream serve [options]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from livedream.server.cli import EXIT_USAGE, register

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="livedream")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    register(sub)
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
