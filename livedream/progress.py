"""Progress lines on stderr, drawn by tqdm: one place for how they look."""

from __future__ import annotations

import sys

from tqdm import tqdm

__all__ = ["progress_bar"]


def progress_bar(total: int | None, unit: str, *, enabled: bool = True, label: str = "dreaming") -> tqdm:
    """A bar counting `unit`s up to `total` (None: unknown); redrawn 5 times a second on a
    terminal, every 5 s into a log file. `update(n)`, then `close()`."""
    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=label, unit=unit, disable=not enabled, file=sys.stderr,
                mininterval=0.2 if tty else 5.0, dynamic_ncols=tty, leave=True)
