"""A progress line on stderr: done/total, rate and time left. Redrawn at most 5 times a second."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    def __init__(self, total: int | None, label: str = "", unit: str = "it",
                 stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.done = 0
        self._start = time.monotonic()
        self._drawn = 0.0
        self._tty = self.stream.isatty()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._drawn >= (0.2 if self._tty else 5.0)):
            self._drawn = now
            self._draw(now)

    def rate(self) -> float:
        elapsed = time.monotonic() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            if self._tty:
                self.stream.write("\n")
            self.stream.flush()
            self.enabled = False

    def _draw(self, now: float) -> None:
        rate = self.rate()
        if self.total:
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta = f"ETA {left:4.0f}s" if left != float("inf") else "ETA    ?"
            text = f"{self.label} {self.done}/{self.total} {self.unit} {rate:5.1f} {self.unit}/s {eta}"
        else:
            text = f"{self.label} {self.done} {self.unit} {rate:5.1f} {self.unit}/s"
        self.stream.write(("\r" + text) if self._tty else (text + "\n"))
        self.stream.flush()
