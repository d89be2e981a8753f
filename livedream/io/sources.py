"""Frame sources: each yields `Frame`s in order. Small classes, picked by name where a CLI needs to.

`SyntheticSource` is the shipped fake camera: moving shapes on a textured background, optionally
paced to a real-time clock and dropping what isn't read in time, as a camera does.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator

import cv2
import numpy as np

from livedream.errors import InputError
from livedream.frame import Frame
from livedream.io.video import VideoReader

__all__ = ["SyntheticSource", "VideoFileSource", "SYNTHETIC_HELP"]

SYNTHETIC_HELP = "synthetic[:WxH[@FPS]]"
_SYNTHETIC = re.compile(r"synthetic(?::(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?)?")


class SyntheticSource:
    """`frames` frames of `width` x `height` at `fps`: a textured scene panning, a disc moving.

    paced: frames come at the real-time rate; frames the consumer was too slow to take are
    skipped (their sequence numbers too), like a camera that keeps only the newest frame.
    """

    def __init__(self, width: int = 320, height: int = 240, frames: int = 30, fps: float = 30.0,
                 *, paced: bool = False, seed: int = 0) -> None:
        self.width, self.height, self.count, self.fps, self.paced = width, height, frames, fps, paced
        rng = np.random.default_rng(seed)
        big = rng.integers(0, 255, (height // 8 + 8, width // 8 + 8, 3), dtype=np.uint8)
        self._scene = cv2.resize(big, (width + 64, height + 64), interpolation=cv2.INTER_CUBIC)
        self.skipped = 0

    @classmethod
    def parse(cls, spec: str) -> SyntheticSource | None:
        """The endless, paced fake camera `synthetic[:WxH[@FPS]]` (640x480@30 by default); None
        for a spec of another kind; InputError (one line) for a malformed or out-of-range one."""
        text = spec.strip()
        if text != "synthetic" and not text.startswith("synthetic:"):
            return None
        m = _SYNTHETIC.fullmatch(text)
        if m is None:
            raise InputError(f"malformed synthetic source {spec!r}; expected {SYNTHETIC_HELP}, "
                             "e.g. synthetic:640x480@30")
        w, h, fps = int(m[1] or 640), int(m[2] or 480), float(m[3] or 30)
        if not (16 <= w <= 8192 and 16 <= h <= 8192 and 0 < fps <= 1000):
            raise InputError(f"synthetic source {w}x{h}@{fps:g} out of range (16..8192 px, 0..1000 fps)")
        return cls(w, h, frames=sys.maxsize, fps=fps, paced=True)

    def frame(self, i: int) -> np.ndarray:
        """The i-th frame (H, W, 3) uint8: the scene panned by i pixels, a disc moving across."""
        dx, dy = i % 64, (i // 2) % 64
        img = np.ascontiguousarray(self._scene[dy:dy + self.height, dx:dx + self.width])
        cx = int((i * 4) % self.width)
        cv2.circle(img, (cx, self.height // 2), max(4, self.height // 8), (230, 200, 40), -1)
        return img

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        i = 0
        while i < self.count:
            if self.paced:
                due = start + i / self.fps
                now = time.monotonic()
                if now < due:
                    time.sleep(due - now)
                else:
                    late = int((now - due) * self.fps)  # frames that passed while nobody read
                    if late:
                        self.skipped += min(late, self.count - i)
                        i += late
                        if i >= self.count:
                            break
            yield Frame(index=i, time=i / self.fps, rgb=self.frame(i))
            i += 1

    def close(self) -> None:
        pass


class VideoFileSource:
    """Frames of an open `livedream.io.video.VideoReader`."""

    def __init__(self, reader: VideoReader) -> None:
        self.reader = reader

    def __iter__(self) -> Iterator[Frame]:
        return self.reader.frames()

    def close(self) -> None:
        pass
