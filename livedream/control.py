"""Steering a running pipeline: a small thread-safe holder of the current `VideoConfig`.

The live window's keys and the HTTP app's `PUT /api/params` both change parameters through
`Control.update`, which validates them (a bad value raises ConfigError and changes nothing).
Dream workers read `Control.config` before each batch, so a change applies to the next frame.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from livedream.config import VIDEO_PRESETS, ConfigError, DreamConfig, VideoConfig, check_channel, video_preset

__all__ = ["Control", "STEERABLE"]

# Parameters that may change while running, and where they live.
STEERABLE = {
    "layer": "dream", "channel": "dream", "iters": "dream", "octaves": "dream", "step": "dream",
    "strength": "video", "decay": "video", "preset": "-",
}


class Control:
    def __init__(self, cfg: VideoConfig) -> None:
        self._cfg = cfg
        self._lock = threading.Lock()
        self._listeners: list[Callable[[VideoConfig], None]] = []
        self.version = 0  # bumped on every change

    @property
    def config(self) -> VideoConfig:
        with self._lock:
            return self._cfg

    def params(self) -> dict[str, object]:
        """The steerable parameters' current values; the layer by name even when none was given
        (the network's default), so a report says what was dreamed."""
        cfg = self.config
        return {
            "layer": cfg.dream.layers[0] if cfg.dream.layers else _default_layer(cfg.dream.model),
            "channel": cfg.dream.channel, "iters": cfg.dream.iters, "octaves": cfg.dream.octaves,
            "step": cfg.dream.step, "strength": cfg.strength, "decay": cfg.decay,
        }

    def update(self, **changes: object) -> VideoConfig:
        """Apply `changes` (names from STEERABLE); `preset` first, then the others. Atomic."""
        unknown = set(changes) - set(STEERABLE)
        if unknown:
            raise ConfigError(f"cannot steer {', '.join(sorted(unknown))}; "
                              f"steerable: {', '.join(STEERABLE)}")
        with self._lock:
            cfg = self._cfg
            if changes.get("preset") is not None:
                name = str(changes["preset"])
                if name not in VIDEO_PRESETS:
                    raise ConfigError(f"unknown preset {name!r}; available: {', '.join(VIDEO_PRESETS)}")
                fresh = video_preset(name)
                keep = dict(model=cfg.dream.model, weights=cfg.dream.weights,
                            layers=cfg.dream.layers, device=cfg.dream.device,
                            precision=cfg.dream.precision)
                cfg = fresh.replace(dream=fresh.dream.replace(**keep), devices=cfg.devices,
                                    batch=cfg.batch)
            dream: dict[str, object] = {}
            video: dict[str, object] = {}
            for name, value in changes.items():
                if name == "preset" or value is None and name != "channel":
                    continue
                if name == "layer":
                    dream["layers"] = (_canonical(cfg.dream.model, str(value)),)
                else:
                    (dream if STEERABLE[name] == "dream" else video)[name] = value
            cfg = cfg.replace(dream=cfg.dream.replace(**dream), **video)  # validates
            if "layers" in dream or "channel" in dream:
                check_layer(cfg)
            listeners = self._commit(cfg)
        for listener in listeners:
            listener(cfg)
        return cfg

    def set_quality(self, **fields: object) -> VideoConfig:
        """Set VideoConfig and DreamConfig fields by name: the adaptive controller's way in (its
        rungs, config.QUALITY_LADDERS). Validated like any config; atomic."""
        dream_fields = {f.name for f in dataclasses.fields(DreamConfig)}
        with self._lock:
            cfg = self._cfg
            dream = {k: v for k, v in fields.items() if k in dream_fields}
            video = {k: v for k, v in fields.items() if k not in dream_fields}
            cfg = cfg.replace(dream=cfg.dream.replace(**dream), **video)
            listeners = self._commit(cfg)
        for listener in listeners:
            listener(cfg)
        return cfg

    def _commit(self, cfg: VideoConfig) -> list[Callable[[VideoConfig], None]]:
        """Store `cfg` as the new config (holding the lock); the listeners to tell, after it."""
        self._cfg = cfg
        self.version += 1
        return list(self._listeners)

    def subscribe(self, listener: Callable[[VideoConfig], None]) -> None:
        with self._lock:
            self._listeners.append(listener)


def check_layer(cfg: VideoConfig) -> None:
    """ConfigError unless the layer exists in the network and the channel is in its range, so a
    bad value from a key or a request is refused here instead of stopping the running dream."""
    from livedream.models.layer_table import layer_table  # needs torch: imported when steered

    table = layer_table(cfg.dream.model)
    layer = cfg.dream.layers[0] if cfg.dream.layers else None
    try:
        count = table.channels(layer)
    except ValueError as e:  # ModelError included: an unknown layer, with the valid names
        raise ConfigError(str(e)) from None
    check_channel(cfg.dream.channel, table.canonical(layer), count)


def _default_layer(model: str) -> str:
    """The layer `model` dreams when none is given, in its canonical form."""
    from livedream.models import model_spec  # needs torch: imported when asked

    return _canonical(model, model_spec(model).default_layer)


def _canonical(model: str, layer: str) -> str:
    """`layer`'s canonical name (see LayerTable); ConfigError with the valid names if unknown."""
    from livedream.models.layer_table import layer_table

    try:
        return layer_table(model).canonical(layer)
    except ValueError as e:
        raise ConfigError(str(e)) from None
