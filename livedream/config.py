"""The dream configuration and its presets: the one place where defaults are decided."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass

from livedream.errors import LivedreamError

__all__ = ["DreamConfig", "PRESETS", "ConfigError", "preset", "load_presets"]


class ConfigError(LivedreamError, ValueError):
    """A parameter out of range or a preset that does not exist."""


@dataclass(frozen=True)
class DreamConfig:
    """Everything the engine needs to dream a batch; nothing about files, queues or devices' I/O."""

    model: str = "effnet-lite0"  # network name, see livedream.models.MODELS
    weights: str | None = None  # state-dict path; None: the model's bundled / cached weights
    layers: tuple[str, ...] = ()  # friendly names or dotted paths; () = the model's default layer
    layer_weights: tuple[float, ...] = ()  # one weight per layer for a mixed objective; () = all 1
    channel: int | None = None  # maximise one channel of the first layer (the app's "Filter")
    iters: int = 10  # gradient steps per octave (the app's "Level")
    octaves: int = 4  # pyramid levels (the app's "Detail")
    octave_scale: float = 1.4  # size ratio between pyramid levels
    step: float = 1.5  # step size in 0..255 pixel units, on a gradient normalised to mean |g| = 1
    jitter: int = 32  # random roll, in pixels, undone after each step
    tile: int = 512  # gradients in tiles of this many pixels above it (bounded memory); 0 = never
    precision: str = "auto"  # auto | fp32 | bf16 | fp16; auto = the faster on this model and device
    device: str = "cpu"  # cpu | cuda | cuda:N
    seed: int | None = 0  # same seed and input -> same pixels; None = random

    def __post_init__(self) -> None:
        checks = [
            (self.iters >= 0, f"iters must be >= 0, got {self.iters}"),
            (self.octaves >= 1, f"octaves must be >= 1, got {self.octaves}"),
            (self.octave_scale > 1.0, f"octave scale must be > 1, got {self.octave_scale}"),
            (self.step > 0, f"step must be > 0, got {self.step}"),
            (self.jitter >= 0, f"jitter must be >= 0, got {self.jitter}"),
            (self.tile == 0 or self.tile >= 64, f"tile must be 0 or >= 64, got {self.tile}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.channel is None or self.channel >= 0, f"channel must be >= 0, got {self.channel}"),
            (
                not self.layer_weights or len(self.layer_weights) == len(self.layers),
                f"{len(self.layer_weights)} layer weights for {len(self.layers)} layers",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def replace(self, **changes: object) -> DreamConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# Named parameter sets. `classic` is the 2017 hackathon's (and the original notebook's) setting.
PRESETS: dict[str, dict[str, object]] = {
    "classic": dict(iters=10, step=1.5, octaves=4, octave_scale=1.4),
    "quick": dict(iters=5, step=1.5, octaves=1),
}


def preset(name: str, base: DreamConfig | None = None, **overrides: object) -> DreamConfig:
    """`base` (or the defaults) with preset `name` applied, then `overrides` that are not None."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    values = dict(PRESETS[name])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return (base or DreamConfig()).replace(**values)


def load_presets(path: str) -> dict[str, dict[str, object]]:
    """User presets from a TOML file: one table per preset, keys named like DreamConfig fields."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read presets {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"presets {path} is not valid TOML: {e}") from e
    return {str(k): dict(v) for k, v in data.items() if isinstance(v, dict)}
