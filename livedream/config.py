"""The dream configuration and its presets: the one place where defaults are decided."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass

from livedream.errors import LivedreamError

__all__ = [
    "DreamConfig", "VideoConfig", "PRESETS", "VIDEO_PRESETS", "ConfigError", "preset", "video_preset",
    "load_presets",
]


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


def check_channel(channel: int | None, layer: str, count: int, name: str = "channel") -> None:
    """ConfigError unless `channel` is None or one of the `count` channels of `layer`."""
    if channel is not None and not 0 <= channel < count:
        raise ConfigError(f"{name} {channel} out of range: layer {layer} has {count} channels "
                          f"(0..{count - 1})")


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


@dataclass(frozen=True)
class VideoConfig:
    """How a stream of frames is dreamed: the engine's config plus the temporal settings."""

    dream: DreamConfig = DreamConfig()
    dream_width: int | None = 320  # dream at this width (height keeps the aspect); None = full size
    warm: bool = True  # start each frame from the previous dream, warped by optical flow
    decay: float = 0.9  # the warped residual is multiplied by this, so feedback cannot run away
    cold_iters: int = 4  # iterations per octave at the first frame and after a scene cut
    cold_step: float = 1.5  # step size there: the first frame is dreamed like an image
    batch: int = 1  # frames dreamed together per device
    # One model replica per device, frames dealt in turn; "auto": see devices.resolve_devices.
    devices: tuple[str, ...] = ("auto",)
    strength: float = 1.0  # the dream residual is scaled by this when added to the frame
    # Gradient ascent only: dream one of this many tiles of the frame per frame, in turn (each
    # at the dream size, with context), the rest carried by the warm start: full-size detail at
    # a tile's cost. 0: the whole frame every frame.
    tiles: int = 0
    # A student dreams instead of gradient ascent: None (never), "auto" (the shipped one for
    # the layer, where there is one) or a weights file from `livedream distill`.
    student: str | None = None
    # Student only: the share of the previous frame's dream, moved by optical flow, kept in this
    # frame's where the flow holds (the rest is the student's new dream): less flicker, less
    # quick to follow new content.
    blend: float = 0.6
    student_scale: float = 1.0  # student only: it sees the frame at this scale (<1: cheaper)
    refine_iters: int = 0  # student only: gradient steps on top of its dream (0: none)
    refine_width: int | None = 320  # ... at this width (None: the frame's own)
    # Adaptive quality (see livedream.adaptive): keep up with the source (live) or `fps_target`
    # (files; without it a file has no pace to keep) by moving along QUALITY_LADDERS.
    adaptive: bool = False
    fps_target: float | None = None

    def __post_init__(self) -> None:
        checks = [
            (0.0 <= self.blend < 1.0, f"blend must be in 0..1 (1 excluded), got {self.blend}"),
            (0.1 <= self.student_scale <= 1.0, f"student scale must be in 0.1..1, got {self.student_scale}"),
            (self.refine_iters >= 0, f"refine iterations must be >= 0, got {self.refine_iters}"),
            (self.tiles == 0 or self.tiles >= 2, f"tiles must be 0 or >= 2, got {self.tiles}"),
            (self.refine_width is None or self.refine_width >= 32,
             f"refine width must be >= 32, got {self.refine_width}"),
            (self.fps_target is None or 0 < self.fps_target <= 1000,
             f"fps target must be in 0..1000, got {self.fps_target}"),
            (self.dream_width is None or self.dream_width >= 32,
             f"dream width must be >= 32, got {self.dream_width}"),
            (0.0 <= self.decay <= 1.0, f"decay must be in 0..1, got {self.decay}"),
            (self.cold_iters >= 0, f"cold iterations must be >= 0, got {self.cold_iters}"),
            (self.cold_step > 0, f"cold step must be > 0, got {self.cold_step}"),
            (self.batch >= 1, f"batch must be >= 1, got {self.batch}"),
            (len(self.devices) >= 1, "at least one device is needed"),
            (0.0 <= self.strength <= 4.0, f"strength must be in 0..4, got {self.strength}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def replace(self, **changes: object) -> VideoConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


_VIDEO_FIELDS = {f.name for f in dataclasses.fields(VideoConfig)} - {"dream"}
_DREAM_FIELDS = {f.name for f in dataclasses.fields(DreamConfig)}

# Video presets: DreamConfig and VideoConfig fields together. `classic` is the old way, kept as
# the baseline: every frame from scratch, full size, the classic image parameters.
VIDEO_PRESETS: dict[str, dict[str, object]] = {
    # realtime: the shipped student where one exists for the layer (one pass at full size,
    # blended with the previous frame's dream along the flow), else gradient ascent, said once
    # (`--student none` asks for it): a small step with a slow decay keeps the change per frame
    # (flicker) small while the dream still builds up. Measured on samples/box.mp4, frames
    # 24..35 (`livedream bench --sections video`, 2026-12-01 03:32, 2-core Xeon with AMX): the
    # student 1.42x strength at 1.50x flicker, 39.9 fps (bf16; 1.47x flicker since the student
    # reflects the picture's edges, measured after that run); the gradient step 1.38x at 1.37x,
    # 31.4 fps (step 0.5: flicker 1.40-1.57x; the strength saturates: step 0.8 gives 1.38x at 2.2x).
    "realtime": dict(student="auto", dream_width=320, iters=1, octaves=1, step=0.35, jitter=4,
                     decay=0.99, cold_iters=6, adaptive=True),
    "balanced": dict(dream_width=480, iters=2, octaves=2, step=1.5, jitter=8, decay=0.9,
                     cold_iters=8),
    "quality": dict(dream_width=640, iters=3, octaves=3, step=1.5, jitter=16, decay=0.9,
                    cold_iters=10),
    # detail: full-size dreams at a quarter of the cost, one tile of four per frame; sharper than
    # realtime (no upsampling), more flicker (measured before it shipped: 0.65-0.68x classic's
    # strength at 1.36-1.57x the input's flicker, on box.mp4 with 2 CPU replicas).
    "detail": dict(dream_width=None, tiles=4, iters=1, octaves=1, step=0.6, jitter=4, decay=0.99,
                   cold_iters=4),
    "classic": dict(PRESETS["classic"], dream_width=None, warm=False),
}


# Adaptive quality: settings from the cheapest to the richest, per dream source. The controller
# (livedream.adaptive) starts at `start` and climbs while there is time to spare, steps down
# when the output falls behind. Each rung changes only the fields listed (so every field a rung
# sets, the others set too). What each rung buys: `livedream bench --sections ladder` (block9's
# energy out/in and flicker x the input's, on frames 24..35 of samples/box.mp4, 640x480;
# `classic`: 3.44x); the figures below are its 2026-12-01 run on a 2-core Xeon.
QUALITY_LADDERS: dict[str, dict[str, object]] = {
    # The student's own dream does not grow with time to spare; gradient steps on top do, carried
    # from frame to frame in its chain, and with more of the chain kept (blend 0.9) they build up
    # steadily: scale 1 1.42x at 1.50x flicker; one step on top at 480 px 1.73x (1.49x), at full
    # size 2.08x (1.60x), two 2.64x (1.73x). (Before: one step at 320 px gained nothing, and
    # steps not carried in the chain flickered, 2.1x for 1.55x.)
    "student": dict(start=2, rungs=[
        dict(student_scale=0.5, refine_iters=0, blend=0.6),
        dict(student_scale=0.75, refine_iters=0, blend=0.6),
        dict(student_scale=1.0, refine_iters=0, blend=0.6),
        dict(student_scale=1.0, refine_iters=1, refine_width=480, step=0.35, octaves=1, blend=0.9),
        dict(student_scale=1.0, refine_iters=1, refine_width=None, step=0.35, octaves=1, blend=0.9),
        dict(student_scale=1.0, refine_iters=2, refine_width=None, step=0.35, octaves=1, blend=0.9),
    ]),
    # One step per frame on a wider dream buys more than more steps or octaves on a narrow one:
    # 320 px 1.38x (1.37x flicker), 400 1.61x (1.41x), 480 2.00x (1.41x), 640 2.42x (1.51x);
    # then 640 px with 2 steps 2.92x (1.73x), full size with 2 steps and 2 octaves 3.66x (1.86x),
    # 4 and 3 3.91x (2.28x). (480 px with 2 steps and 2 octaves, the old rung 4: 2.36x at 1.59x.)
    "gradient": dict(start=2, rungs=[
        dict(dream_width=192, iters=1, octaves=1),
        dict(dream_width=256, iters=1, octaves=1),
        dict(dream_width=320, iters=1, octaves=1),
        dict(dream_width=400, iters=1, octaves=1),
        dict(dream_width=480, iters=1, octaves=1),
        dict(dream_width=640, iters=1, octaves=1),
        dict(dream_width=640, iters=2, octaves=1),
        dict(dream_width=None, iters=2, octaves=2),
        dict(dream_width=None, iters=4, octaves=3),
    ]),
}


def video_preset(name: str, extra: dict[str, dict[str, object]] | None = None,
                 **overrides: object) -> VideoConfig:
    """Preset `name` (built in, or from `extra`, e.g. a user's TOML) with `overrides` not None."""
    table = VIDEO_PRESETS | (extra or {})
    if name not in table:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(table)}")
    values = dict(table[name]) | {k: v for k, v in overrides.items() if v is not None}
    unknown = set(values) - _VIDEO_FIELDS - _DREAM_FIELDS
    if unknown:
        raise ConfigError(f"unknown parameter(s) in preset {name!r}: {', '.join(sorted(unknown))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}  # from TOML
    if isinstance(values.get("devices"), str):
        values["devices"] = tuple(d.strip() for d in str(values["devices"]).split(","))
    dream = DreamConfig(**{k: v for k, v in values.items() if k in _DREAM_FIELDS})  # type: ignore[arg-type]
    return VideoConfig(dream=dream, **{k: v for k, v in values.items() if k in _VIDEO_FIELDS})  # type: ignore[arg-type]
