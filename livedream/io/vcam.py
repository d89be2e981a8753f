"""The dreamed frames as a virtual camera (pyvirtualcam): OBS, Zoom and browsers see a webcam.

A pipeline sink (`write(frame)`, idempotent `close()`, a context manager). When no backend can
start, the error lists each backend's reason and how to install one.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

from livedream.errors import OutputError
from livedream.frame import Frame
from livedream.io.sinks import Closing

__all__ = ["VirtualCameraSink", "VCAM_INSTALL_HINT"]

log = logging.getLogger("livedream.live")

VCAM_INSTALL_HINT = (
    "install one: on Linux `sudo apt install v4l2loopback-dkms && sudo modprobe v4l2loopback "
    "exclusive_caps=1`, on Windows or macOS OBS Studio 28+ (start its Virtual Camera once)"
)


class VirtualCameraSink(Closing):
    """Sends the dreamed frames to a virtual camera with pyvirtualcam (OBS, Zoom, browsers see it).

    `backend`: a pyvirtualcam backend name; None tries every real one (v4l2loopback on Linux, OBS
    on Windows and macOS; never the fake). When none can start: OutputError with each backend's
    reason and how to install one. Frames of another size are resized to `width` x `height`.
    `options` go to the backend (pyvirtualcam's **kw), e.g. the fake's `frames` list.
    """

    def __init__(self, width: int, height: int, fps: float = 30.0, *, backend: str | None = None,
                 device: str | None = None, options: dict[str, Any] | None = None) -> None:
        try:
            import pyvirtualcam
            from pyvirtualcam.camera import BACKENDS
        except ImportError:
            raise OutputError("--vcam needs pyvirtualcam: pip install pyvirtualcam") from None
        from livedream.io import fake_vcam

        if backend == fake_vcam.FAKE_BACKEND:
            fake_vcam.register()
        if backend is not None and backend not in BACKENDS:
            raise OutputError(f"unknown virtual camera backend {backend!r}; available: "
                              f"{', '.join([*BACKENDS, fake_vcam.FAKE_BACKEND])}")
        names = [backend] if backend else [n for n in BACKENDS if not fake_vcam.is_fake(n)]
        self.size = (width, height)
        self.count = 0
        self.camera: Any = None
        failures = []
        for name in names:
            try:
                self.camera = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                                  device=device, backend=name, **(options or {}))
                break
            except Exception as e:  # noqa: BLE001 - every backend's reason is reported
                text = " ".join(str(e).split()).removeprefix(f"'{name}' backend: ")
                failures.append(f"{name}: {text}")
        if self.camera is None:
            tried = "; ".join(failures) if failures else "none: pyvirtualcam has no backend for this system"
            raise OutputError(f"no virtual camera could start (tried {tried}); {VCAM_INSTALL_HINT}")
        self.backend = self.camera.backend
        self.device = self.camera.device
        log.info("virtual camera: %s (%s) %dx%d", self.device, self.backend, width, height)

    def write(self, frame: Frame) -> None:
        rgb = frame.image
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        self.camera.send(np.ascontiguousarray(rgb))
        self.count += 1

    def close(self) -> None:
        camera, self.camera = self.camera, None
        if camera is not None:
            camera.close()
