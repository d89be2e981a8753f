"""The served network: loaded once, shared by the photo worker and the live stream.

A `Dreamer` is not thread-safe (its network reads activations through hooks on shared modules),
and two dreams at once on one CPU only slow each other down; so every dream holds one lock,
`PhotoDreamer.lock` (a `DreamLock`), where a photo goes before the next live frame: someone is
waiting for the photo, while the live stream just shows its next frame a little later. The live
pipeline gets the same Dreamer wrapped in `LockedDreamer`.

A photo is dreamed at `dream_side` pixels (longest side) and the dream's residual (dream minus the
small photo) is upsampled and added to the full-size photo, as the video pipeline does: the cost
is set by `dream_side`, whatever the photo's size.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import torch

from livedream.config import DreamConfig
from livedream.dream import Dreamer, to_tensor
from livedream.frame import compose
from livedream.models.layer_table import LayerTable
from livedream.server.params import DreamRequest
from livedream.server.uploads import HTTPProblem
from livedream.student.dreamer import StudentDreamer
from livedream.student.weights import find_shipped, load_student

__all__ = ["PhotoDreamer", "LockedDreamer", "DreamLock"]

_CACHED = 3  # Dreamers kept for other layers than the default (each holds a truncated network)
STUDENT_SIDE = 1600  # a student dreams a photo at up to this many pixels on its longest side


class DreamLock:
    """One dream at a time; photos first: a live frame waits while any photo is waiting."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._photos_waiting = 0

    @contextlib.contextmanager
    def photo(self) -> Iterator[None]:
        with self._cond:
            self._photos_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._busy)
            finally:
                self._photos_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            self._release()

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._busy and self._photos_waiting == 0)
            self._busy = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()


class LockedDreamer:
    """A dream source (a Dreamer or a student) whose `dream` and `residual` hold the photo
    dreamer's lock as a live frame; otherwise the same object (for `Pipeline`)."""

    def __init__(self, dreamer: Any, lock: DreamLock) -> None:
        self._dreamer, self._lock = dreamer, lock

    def dream(self, x: torch.Tensor, cfg: DreamConfig | None = None) -> torch.Tensor:
        with self._lock.live():
            return self._dreamer.dream(x, cfg) if cfg is not None else self._dreamer.dream(x)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        with self._lock.live():
            return self._dreamer.residual(x)

    def __getattr__(self, name: str) -> object:
        return getattr(self._dreamer, name)


class PhotoDreamer:
    """Dreams photos with the one served model; a Dreamer per layer, built on first use, cached."""

    def __init__(self, layers: LayerTable, *, dream_side: int = 400, weights: str | None = None,
                 device: str = "cpu") -> None:
        self.layers = layers
        self.dream_side = dream_side
        self.base = DreamConfig(model=layers.model, weights=weights, device=device)
        self.lock = DreamLock()  # one dream at a time, photos before live frames
        self._cache_lock = threading.Lock()
        self._dreamers: collections.OrderedDict[str, Dreamer] = collections.OrderedDict()
        self._students: dict[str, StudentDreamer] = {}
        self.default = self.dreamer(layers.canonical(None))  # loads the network now, once

    def dreamer(self, layer: str) -> Dreamer:
        """The Dreamer for `layer` (a canonical name), loading it if new; the default is never
        evicted."""
        with self._cache_lock:
            if layer in self._dreamers:
                self._dreamers.move_to_end(layer)
                return self._dreamers[layer]
            dreamer = Dreamer(self.base.replace(layers=(layer,)))
            self._dreamers[layer] = dreamer
            default = self.layers.canonical(None)
            while len(self._dreamers) > _CACHED + 1:
                oldest = next(k for k in self._dreamers if k != default)
                del self._dreamers[oldest]
            return dreamer

    def locked(self, dreamer: Any) -> LockedDreamer:
        return LockedDreamer(dreamer, self.lock)

    def student(self, layer: str, channel: int | None) -> StudentDreamer | None:
        """The shipped student for `layer` and `channel` (a replica of its own), if one exists."""
        path = find_shipped(self.layers.model, (layer,), channel, self.layers.default)
        if path is None:
            return None
        with self._cache_lock:
            if str(path) not in self._students:
                self._students[str(path)] = StudentDreamer(load_student(path), device=self.base.device)
            return self._students[str(path)]

    def dream(self, rgb: np.ndarray, req: DreamRequest) -> np.ndarray:
        """RGB uint8 (H, W, 3) -> dreamed RGB uint8 (H, W, 3) of the same size."""
        if req.instant:
            return self._instant(rgb, req)
        dreamer = self.dreamer(req.layer)
        h, w = rgb.shape[:2]
        scale = min(1.0, self.dream_side / max(h, w))
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        small = rgb if size == (w, h) else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        x = to_tensor(small)  # (1, 3, h, w)
        with self.lock.photo():
            y = dreamer.dream(x, req.config(dreamer.cfg))
        residual = (y - x)[0].permute(1, 2, 0).numpy()  # (h, w, 3) float32
        return compose(rgb, residual, req.strength)

    def _instant(self, rgb: np.ndarray, req: DreamRequest) -> np.ndarray:
        """One pass of the layer's student, at the photo's size up to `STUDENT_SIDE` pixels."""
        student = self.student(req.layer, req.channel)
        if student is None:
            which = req.layer + ("" if req.channel is None else f" filter {req.channel}")
            raise HTTPProblem(400, f"no student dreams {which}: dream it without preset=instant")
        h, w = rgb.shape[:2]
        scale = min(1.0, STUDENT_SIDE / max(h, w))
        size = (max(16, round(w * scale)), max(16, round(h * scale)))
        small = rgb if size == (w, h) else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        with self.lock.photo():
            residual = student.residual(to_tensor(small))[0].permute(1, 2, 0).numpy()
        return compose(rgb, residual, req.strength)
