"""The one frame type, and the two rules every path shares: the size a frame is dreamed at, and how
a dream's residual is added back onto the full-size frame. numpy and OpenCV only (no torch).

A `Frame` is made by a source (a file's decoder, a camera, the synthetic fake) with its picture
and timestamps; the pipeline fills in the dream; sinks (a file's encoder, a window, a stream)
show `frame.image`: the dreamed picture once there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from time import monotonic

import cv2
import numpy as np

__all__ = ["Frame", "dream_size", "compose"]


@dataclass
class Frame:
    """One frame on its way from a source to the sinks."""

    index: int  # sequence number from the source, 0, 1, 2 ... (a camera's may skip dropped ones)
    time: float  # presentation time in seconds
    rgb: np.ndarray  # (H, W, 3) uint8 source picture
    pts: int | None = None  # timestamp in its stream's time base (decoded files); None elsewhere
    captured: float = field(default_factory=monotonic)  # when the source produced it
    seq: int = -1  # position in a pipeline run, 0, 1, 2 ... with no gaps (set by the pipeline)
    small: np.ndarray | None = None  # (h, w, 3) uint8, the picture at dream size
    residual: np.ndarray | None = None  # (h, w, 3) float32: the dream minus `small`
    out: np.ndarray | None = None  # (H, W, 3) uint8, the dreamed picture
    cut: bool = False  # dreamed from a cold start (first frame, scene cut)

    @property
    def image(self) -> np.ndarray:
        """The picture to show or write: the dreamed one if there is one, else the source's."""
        return self.out if self.out is not None else self.rgb


def dream_size(width: int, height: int, dream_width: int | None) -> tuple[int, int]:
    """(w, h) to dream a width x height frame at: `dream_width` wide keeping the aspect, never
    larger than the frame (None: the frame's own size)."""
    if dream_width is None or dream_width >= width:
        return width, height
    return dream_width, max(8, round(height * dream_width / width))


def compose(rgb: np.ndarray, residual: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """The dreamed picture: `rgb` (H, W, 3) uint8 plus `strength` x `residual` (h, w, 3) float32,
    the residual resized (bilinear) to the frame's size first. (H, W, 3) uint8."""
    h, w = rgb.shape[:2]
    if residual.shape[:2] != (h, w):
        residual = cv2.resize(residual, (w, h), interpolation=cv2.INTER_LINEAR)
    out = rgb.astype(np.float32)
    out += residual if strength == 1.0 else strength * residual
    return np.clip(out, 0, 255).astype(np.uint8)
