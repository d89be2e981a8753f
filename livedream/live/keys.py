"""Window keys that steer a live dream through its `Control`: n / p layer, + / - iterations,
[ / ] strength, d dream source (gradient ascent or a shipped student), s snapshot. (q, space
and i belong to the window itself.)"""

from __future__ import annotations

import logging

from livedream.config import ConfigError
from livedream.control import Control
from livedream.errors import OutputError
from livedream.io.window import WindowSink
from livedream.models import model_spec

__all__ = ["Steering", "WINDOW_KEYS"]

log = logging.getLogger("livedream.live")

WINDOW_KEYS = ("q quit, space pause, n/p next/previous layer, +/- iterations, [ ] strength, "
               "d gradient/student, s snapshot, i stats")


class Steering:
    """`steering(key)`: apply one key to `control`; a short message saying what it did, or None.
    `window`: where `s` takes its snapshot from (saved in `snapshot_dir`)."""

    def __init__(self, control: Control, window: WindowSink | None = None, snapshot_dir: str = ".") -> None:
        self.control, self.window, self.snapshot_dir = control, window, snapshot_dir
        self.snapshots: list[str] = []

    def __call__(self, key: str) -> str | None:
        cfg = self.control.config
        try:
            if key in ("n", "p"):
                layer = self._next_layer(1 if key == "n" else -1)
                self.control.update(layer=layer, channel=None)  # a channel belongs to its layer
                return f"layer {layer}"
            if key in ("+", "="):
                return f"iterations {self.control.update(iters=cfg.dream.iters + 1).dream.iters}"
            if key in ("-", "_"):
                return f"iterations {self.control.update(iters=max(1, cfg.dream.iters - 1)).dream.iters}"
            if key in ("[", "]"):
                strength = round(min(4.0, max(0.0, cfg.strength + (0.1 if key == "]" else -0.1))), 2)
                return f"strength {self.control.update(strength=strength).strength:.1f}"
            if key == "d":
                return self._next_source()
            if key == "s" and self.window is not None:
                params = {k: str(v) for k, v in self.control.params().items()}
                path = self.window.snapshot(self.snapshot_dir, params)
                self.snapshots.append(path)
                return f"saved {path}"
        except (ConfigError, OutputError) as e:
            log.warning("%s", e)
            return str(e)
        return None

    def _next_source(self) -> str:
        """Gradient ascent, then each shipped student of the network (at its own layer and
        filter), in turn."""
        from livedream.student import student_for
        from livedream.student.weights import shipped_for

        cfg = self.control.config
        default = model_spec(cfg.dream.model).default_layer
        Choice = tuple[str | None, tuple[str, ...], int | None]  # weights, layers, channel
        choices: list[Choice] = [(None, cfg.dream.layers, cfg.dream.channel)]
        choices += [(str(path), ls or (default,), c) for path, ls, c in shipped_for(cfg.dream.model)]
        if len(choices) == 1:
            return f"no student ships for {cfg.dream.model}: gradient ascent"
        current = student_for(cfg)
        now = next((i for i, (path, _, _) in enumerate(choices)
                    if current is not None and path == current.path), 0)
        path, layers, channel = choices[(now + 1) % len(choices)]
        self.control.set_quality(student=path, layers=layers, channel=channel)
        if path is None:
            return "gradient ascent"
        return f"student {layers[0]}" + ("" if channel is None else f" filter {channel}")

    def _next_layer(self, step: int) -> str:
        dream = self.control.config.dream
        spec = model_spec(dream.model)
        names = [info.name for info in spec.arch().layers()]
        current = dream.layers[0] if dream.layers else spec.default_layer
        i = names.index(current) if current in names else 0
        return names[(i + step) % len(names)]
