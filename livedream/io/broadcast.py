"""The newest dreamed frame, shared with any number of readers (MJPEG clients, the web app).

A sink writes frames; readers wait for the next one. Only the newest frame is kept: a slow reader
skips frames instead of holding the pipeline back. JPEG encoding happens once per frame, in the
sink's thread, and only while someone is reading.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from livedream.frame import Frame

__all__ = ["Broadcast"]


class Broadcast:
    """A pipeline sink keeping the newest frame as JPEG bytes; `wait_next` blocks for a newer one."""

    def __init__(self, quality: int = 85) -> None:
        self.quality = quality
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0  # number of frames published
        self._readers = 0
        self._closed = False

    # -- sink side ------------------------------------------------------------------------------
    def write(self, frame: Frame) -> None:
        if self._readers == 0 and self._jpeg is not None:
            return  # nobody is watching: skip the encoding
        self.publish(self.encode(frame.image))

    def encode(self, rgb: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    def publish(self, jpeg: bytes) -> None:
        with self._cond:
            self._jpeg = jpeg
            self._seq += 1
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every reader; `wait_next` then returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- reader side ----------------------------------------------------------------------------
    def latest(self) -> tuple[int, bytes | None]:
        with self._cond:
            return self._seq, self._jpeg

    def wait_next(self, after: int, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The first frame newer than sequence number `after`, or None on timeout or close."""
        with self._cond:
            self._readers += 1
            try:
                ok = self._cond.wait_for(lambda: self._seq > after or self._closed, timeout)
                if not ok or self._closed or self._jpeg is None:
                    return None
                return self._seq, self._jpeg
            finally:
                self._readers -= 1
