"""Fault injection for tests and fire drills: make one chunk's worker crash, once.

A `Fault` travels with the chunk tasks (it pickles); the worker dreaming the chosen chunk fires
it after writing `after` frames, unless the marker file exists, which firing creates first: the
retry then runs clean. So "a worker process killed mid-job" can be tested with the real executors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Fault"]


@dataclass(frozen=True)
class Fault:
    """Crash the worker dreaming chunk `chunk` of output `output`, once (see the module doc)."""

    output: str  # output file name (its basename), e.g. "clip.mp4"
    chunk: int  # chunk index
    marker: str = ""  # path of the file that records that the fault fired (with `once`)
    action: str = "exit"  # "exit": os._exit(3), as a killed process; "raise": RuntimeError
    after: int = 1  # frames written before it fires
    once: bool = True  # False: fire at every try (a chunk that keeps failing); no marker

    def __post_init__(self) -> None:
        if self.action not in ("exit", "raise"):
            raise ValueError(f"fault action must be 'exit' or 'raise', got {self.action!r}")
        if self.once and not self.marker:
            raise ValueError("a fault that fires once needs a marker file")

    def check(self, output: str, chunk: int, written: int) -> None:
        """Fire if this is the chosen chunk, `after` frames are written and it has not fired."""
        if output != self.output or chunk != self.chunk or written != self.after:
            return
        if self.once:
            try:
                os.close(os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except FileExistsError:
                return  # fired before: this is the retry
        if self.action == "exit":
            os._exit(3)
        raise RuntimeError(f"injected fault in chunk {chunk} of {output}")
