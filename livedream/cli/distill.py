"""`livedream distill`: train a student (a one-pass dreamer) to dream like the engine does."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("distill", help="train a one-pass student dreamer from images and videos")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError
