"""The student: a small network that dreams in one pass what the engine dreams by gradient ascent.

`StudentNet` (net.py) is the network, `losses.py` what it is trained on, `weights.py` its file,
`dreamer.py` a student as a dream source; training lives in `livedream.distill`. `student_for`
decides, for a video config, which student dreams (or none: gradient ascent).
"""

from __future__ import annotations

import functools
import logging
import os

from livedream.config import ConfigError, VideoConfig
from livedream.models import model_spec
from livedream.student.weights import Student, find_shipped, load_student

__all__ = ["student_for", "AUTO"]

AUTO = "auto"  # VideoConfig.student: the shipped student for the dream's layer, if there is one

log = logging.getLogger("livedream")


def student_for(cfg: VideoConfig) -> Student | None:
    """The student that dreams `cfg`, or None for gradient ascent. `cfg.student`: None, "auto"
    (the shipped student for the model, layer and channel, if one exists; else gradient ascent,
    said once) or a weights file, which must have learned this very dream (ConfigError)."""
    if cfg.student is None:
        return None
    dream = cfg.dream
    default = model_spec(dream.model).default_layer
    if cfg.student == AUTO:
        path = find_shipped(dream.model, dream.layers, dream.channel, default)
        if path is None:
            _say_once(f"no student for {dream.model} {','.join(dream.layers) or default}"
                      + ("" if dream.channel is None else f" channel {dream.channel}")
                      + ": dreaming by gradient ascent")
            return None
        return _load(str(path), os.path.getmtime(path))
    student = _load(cfg.student, os.path.getmtime(cfg.student) if os.path.exists(cfg.student) else 0.0)
    wanted = (dream.model, tuple(dream.layers) or (default,), dream.channel)
    if (student.model, student.layers or (default,), student.channel) != wanted:
        asked = f"{dream.model} {','.join(wanted[1])}" + (
            "" if dream.channel is None else f" channel {dream.channel}")
        raise ConfigError(f"student {cfg.student} dreams {student.describe()}, not {asked}")
    return student


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> Student:
    return load_student(path)


@functools.cache
def _say_once(message: str) -> None:
    log.warning("%s", message)
