"""A fake pyvirtualcam backend: keeps the frames it is sent, so tests and demos need no device.

Registered through pyvirtualcam's own `register_backend` under the name `livedream-fake`:

    from livedream.io import fake_vcam
    fake_vcam.register()
    frames = []
    with pyvirtualcam.Camera(64, 48, 30, backend="livedream-fake", frames=frames) as cam:
        cam.send(rgb)   # frames[-1] is now an (H, W, 3) copy of rgb

`VirtualCameraSink(..., backend="livedream-fake")` registers it by itself. It is never tried
when no backend is named, so it cannot hide a missing real one.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

__all__ = ["FAKE_BACKEND", "FakeVirtualCamera", "register", "is_fake"]

FAKE_BACKEND = "livedream-fake"

# FourCC codes pyvirtualcam gives a backend -> (channels, name); see pyvirtualcam.PixelFormat.
_FORMATS = {"raw ": (3, "RGB"), "24BG": (3, "BGR"), "ABGR": (4, "RGBA"), "J400": (1, "GRAY")}


class FakeVirtualCamera:
    """A pyvirtualcam backend (see pyvirtualcam.camera.Backend) that stores what it is sent.

    `frames`: a list (or deque) to append each frame to, as an (H, W, C) uint8 copy; by default
    a deque of the newest `keep`. `fail_after`: raise OSError on that many-th send (tests of a
    device that goes away).
    """

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None,
                 frames: list[np.ndarray] | deque[np.ndarray] | None = None, keep: int = 100,
                 fail_after: int | None = None, **_: Any) -> None:
        code = fourcc.to_bytes(4, "little").decode("ascii", "replace")
        if code not in _FORMATS:
            raise RuntimeError(f"the fake camera takes RGB, BGR, RGBA or GRAY frames, not {code!r}")
        self.channels, self.format = _FORMATS[code]
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self._device = device or "fake-camera-0"
        self.frames = frames if frames is not None else deque(maxlen=keep)
        self.sent = 0
        self.fail_after = fail_after
        self.closed = False

    def send(self, frame: np.ndarray) -> None:
        if self.closed:
            raise RuntimeError("send() after close()")
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise OSError("fake camera unplugged")
        shape = (self.height, self.width) if self.channels == 1 else (self.height, self.width, self.channels)
        self.frames.append(np.array(frame, dtype=np.uint8, copy=True).reshape(shape))
        self.sent += 1

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return self._device

    def native_fourcc(self) -> int | None:
        return self.fourcc


def register(name: str = FAKE_BACKEND) -> str:
    """Register the fake with pyvirtualcam (idempotent); the backend name to ask for."""
    import pyvirtualcam

    pyvirtualcam.register_backend(name, FakeVirtualCamera)
    return name


def is_fake(name: str) -> bool:
    """True for a backend name registered with this fake (never tried unless asked for)."""
    from pyvirtualcam.camera import BACKENDS

    return BACKENDS.get(name) is FakeVirtualCamera
