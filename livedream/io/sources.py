"""Frame sources: each yields `Frame`s in order. Small classes, picked by name where a CLI needs to.

`SyntheticSource` is the shipped fake camera: moving shapes on a textured background, optionally
paced to a real-time clock and dropping what isn't read in time, as a camera does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import cv2
import numpy as np

from livedream.pipeline import Frame

__all__ = ["SyntheticSource", "VideoFileSource"]


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

    def __init__(self, reader: object) -> None:
        self.reader = reader

    def __iter__(self) -> Iterator[Frame]:
        for vf in self.reader.frames():  # type: ignore[attr-defined]
            yield Frame(index=vf.index, time=vf.time, rgb=vf.rgb, pts=vf.pts)

    def close(self) -> None:
        pass
