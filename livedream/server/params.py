"""Request parameters, checked: the fields of `POST /api/dream` and the body of `PUT /api/params`.

Every bad value is an HTTPProblem(400) whose message names the field, what was sent and what is
allowed. Names follow the 2017 app: Filter = a channel of the layer, Level = iterations per octave,
Detail = octaves; the live parameters accept both those names and the engine's (channel, iters,
octaves).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from livedream.config import PRESETS, VIDEO_PRESETS, ConfigError, DreamConfig, check_channel
from livedream.models.layer_table import LayerTable
from livedream.server.settings import ServerSettings
from livedream.server.uploads import HTTPProblem

__all__ = ["DreamRequest", "DREAM_FIELDS", "INSTANT", "parse_dream_fields", "parse_live_changes"]

DREAM_FIELDS = ("filter", "level", "detail", "layer", "strength", "preset", "format")
INSTANT = "instant"  # the photo preset that dreams with the layer's student, in one pass
_NONE = ("", "none", "all", "-1")  # "no filter": the whole layer's energy
_INT = re.compile(r"[+-]?\d{1,9}")
_MAX_STEP = 10.0
_ALIASES = {"filter": "channel", "level": "iters", "detail": "octaves"}
_LIVE_FIELDS = ("layer", "channel", "iters", "octaves", "step", "strength", "decay", "preset")


@dataclass(frozen=True)
class DreamRequest:
    """One image dream, checked. `layer`: the canonical name of a layer of the served model."""

    layer: str
    channel: int | None  # None: the whole layer
    iters: int
    octaves: int
    step: float
    octave_scale: float
    strength: float  # the dream residual is scaled by this when added to the photo
    fmt: str  # "jpeg" | "png"
    instant: bool = False  # dreamed in one pass by the layer's student (preset=instant)

    def config(self, base: DreamConfig) -> DreamConfig:
        """`base` (a Dreamer's config, so its network fields match) with this request's values."""
        return base.replace(channel=self.channel, iters=self.iters, octaves=self.octaves,
                            step=self.step, octave_scale=self.octave_scale)

    def describe(self, layers: LayerTable) -> dict[str, str]:
        channel = "all" if self.channel is None else str(self.channel)
        if self.instant:
            return {"layer": self.layer, "filter": channel, "preset": INSTANT, "strength": str(self.strength)}
        return {"layer": self.layer, "filter": channel,
                "level": str(self.iters), "detail": str(self.octaves), "step": str(self.step),
                "strength": str(self.strength)}


def parse_dream_fields(fields: Mapping[str, str], settings: ServerSettings,
                       layers: LayerTable) -> DreamRequest:
    """`fields` (query and form, as text) -> a DreamRequest; HTTPProblem(400) naming a bad field."""
    unknown = sorted(set(fields) - set(DREAM_FIELDS) - {"token", "image", "file"})
    if unknown:
        raise HTTPProblem(400, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(DREAM_FIELDS)}")
    values: dict[str, float] = {"iters": settings.level, "octaves": settings.detail,
                                "step": settings.step, "octave_scale": DreamConfig.octave_scale}
    name = fields.get("preset", "").strip()
    if name and name != INSTANT:
        if name not in PRESETS:
            raise HTTPProblem(400, f"unknown preset {name!r}; available: {', '.join([*PRESETS, INSTANT])}")
        values.update({k: v for k, v in PRESETS[name].items() if k in values})  # type: ignore[misc]
    if fields.get("level", "").strip():
        values["iters"] = _int("level", fields["level"], 0, settings.max_level)
    if fields.get("detail", "").strip():
        values["octaves"] = _int("detail", fields["detail"], 1, settings.max_detail)
    if not 0 <= values["iters"] <= settings.max_level or not 1 <= values["octaves"] <= settings.max_detail:
        raise HTTPProblem(400, f"preset {name!r} exceeds this server's limits")
    layer = _layer(fields.get("layer") or settings.layer, layers)
    channel = _channel("filter", fields.get("filter", ""), layer, layers)
    strength = _float("strength", fields["strength"], 0.0, 4.0) if fields.get("strength", "").strip() else 1.0
    fmt = fields.get("format", "jpeg").strip().lower() or "jpeg"
    if fmt not in ("jpeg", "jpg", "png"):
        raise HTTPProblem(400, f"format must be jpeg or png, got {fmt[:20]!r}")
    return DreamRequest(layer=layer, channel=channel, iters=int(values["iters"]),
                        octaves=int(values["octaves"]), step=float(values["step"]),
                        octave_scale=float(values["octave_scale"]), strength=strength,
                        fmt="png" if fmt == "png" else "jpeg", instant=name == INSTANT)


def parse_live_changes(body: object, settings: ServerSettings, layers: LayerTable,
                       current: Mapping[str, object]) -> dict[str, object]:
    """A JSON object of live parameters -> keyword arguments for `Control.update`, checked.

    `current`: `Control.params()`, to check a channel against the layer it will apply to.
    """
    if not isinstance(body, dict) or not body:
        raise HTTPProblem(400, f"expected a JSON object with some of: {', '.join(_LIVE_FIELDS)} "
                               f"(or filter, level, detail)")
    changes: dict[str, object] = {}
    for key, value in body.items():
        name = _ALIASES.get(key, key)
        if name not in _LIVE_FIELDS:
            raise HTTPProblem(400, f"cannot set {str(key)[:40]!r}; settable: {', '.join(_LIVE_FIELDS)} "
                                   f"(or filter, level, detail)")
        if name in changes:
            raise HTTPProblem(400, f"{key} given twice (under two names)")
        changes[name] = value
    out: dict[str, object] = {}
    if "preset" in changes:
        if not isinstance(changes["preset"], str) or changes["preset"] not in VIDEO_PRESETS:
            raise HTTPProblem(400, f"preset must be one of {', '.join(VIDEO_PRESETS)}, "
                                   f"got {_show(changes['preset'])}")
        out["preset"] = changes["preset"]
    if "layer" in changes:
        if not isinstance(changes["layer"], str) or not changes["layer"].strip():
            raise HTTPProblem(400, f"layer must be a name like {layers.default!r}, "
                                   f"got {_show(changes['layer'])}")
        out["layer"] = _layer(changes["layer"], layers)
    for name, low, high in (("iters", 0, settings.max_level), ("octaves", 1, settings.max_detail)):
        if name in changes:
            out[name] = _json_int(name, changes[name], low, high)
    for name, lo, hi in (("step", 0.0, _MAX_STEP), ("strength", 0.0, 4.0), ("decay", 0.0, 1.0)):
        if name in changes:
            value = changes[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise HTTPProblem(400, f"{name} must be a number in {lo}..{hi}, got {_show(value)}")
            out[name] = float(_range(name, value, lo, hi))
    layer = str(out.get("layer") or current.get("layer") or settings.layer or layers.default)
    if "channel" in changes:
        value = changes["channel"]
        if value is None or value == -1:
            out["channel"] = None
        else:
            out["channel"] = _channel_value("channel", _json_int("channel", value, 0, 1 << 20), layer, layers)
    elif "layer" in out and current.get("channel") is not None:
        _channel_value("channel", int(current["channel"]), layer, layers)  # type: ignore[call-overload]
    return out


# -- helpers ----------------------------------------------------------------------------------------
def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int(name: str, text: str, lo: int, hi: int) -> int:
    text = text.strip()
    if not _INT.fullmatch(text):
        raise HTTPProblem(400, f"{name} must be an integer in {lo}..{hi}, got {_show(text)}")
    return int(_range(name, int(text), lo, hi))


def _json_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise HTTPProblem(400, f"{name} must be an integer in {lo}..{hi}, got {_show(value)}")
    return int(_range(name, value, lo, hi))


def _float(name: str, text: str, lo: float, hi: float) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise HTTPProblem(400, f"{name} must be a number in {lo}..{hi}, got {_show(text)}") from None
    return float(_range(name, value, lo, hi))


def _range(name: str, value: float, lo: float, hi: float) -> float:
    # An int is compared as it is: a 400-digit one is out of range, not an overflow in float().
    finite = isinstance(value, int) or math.isfinite(value)
    if not (finite and lo <= value <= hi) or (name == "step" and value == 0):
        low = f"{lo} (exclusive)" if name == "step" else f"{lo}"
        raise HTTPProblem(400, f"{name} must be in {low}..{hi}, got {_show(value)}")
    return value


def _layer(layer: str | None, layers: LayerTable) -> str:
    """The canonical name of `layer` (None: the server's default); 400 if the model lacks it."""
    try:
        return layers.canonical(layer.strip() if layer else None)
    except ValueError as e:
        raise HTTPProblem(400, str(e)) from None


def _channel(name: str, text: str, layer: str, layers: LayerTable) -> int | None:
    if text.strip().lower() in _NONE:
        return None
    return _channel_value(name, _int(name, text, 0, 1 << 20), layer, layers)


def _channel_value(name: str, channel: int, layer: str, layers: LayerTable) -> int:
    try:
        count = layers.channels(layer)
    except ValueError as e:
        raise HTTPProblem(400, str(e)) from None
    try:
        check_channel(channel, layer, count, name)
    except ConfigError as e:
        raise HTTPProblem(400, str(e)) from None
    return channel
