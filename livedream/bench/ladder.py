"""What each rung of the adaptive quality ladders buys: `livedream bench --sections ladder`.

Every rung of `config.QUALITY_LADDERS` (gradient ascent's, and the student's where one ships)
dreamed over the same frames of the sample clip as the video section's presets: fps on this
machine, strength (block9's energy, output / input) and flicker (x the input's). The numbers
behind the ladders' order; a rung slower than `plan.ladder_min_fps` ends its ladder (the rest
would only be slower).
"""

from __future__ import annotations

from typing import Any

from livedream.adaptive import ladder_for
from livedream.bench.common import Plan, load_clip, log
from livedream.bench.video import same_frames_of
from livedream.config import DreamConfig, video_preset
from livedream.control import Control
from livedream.dream import Dreamer
from livedream.pipeline import build_dreamers
from livedream.student import student_for

__all__ = ["bench_ladder"]


def bench_ladder(plan: Plan) -> dict[str, Any]:
    """`ladder.<kind>: [row per rung]`, each row the rung's fields and its fps, strength, flicker."""
    judge = Dreamer(DreamConfig(precision="fp32"))
    clip = load_clip(plan.clip_size)
    base = video_preset("realtime", adaptive=False)
    kinds = {"gradient": base.replace(student=None), "student": base.replace(student="auto")}
    result: dict[str, Any] = {}
    for kind, cfg in kinds.items():
        if kind == "student" and student_for(cfg) is None:
            result[kind] = {"skipped": "no student ships for realtime's layer"}
            continue
        dreamers = build_dreamers(cfg)
        rows = []
        rungs, _ = ladder_for(kind)
        for level, rung in enumerate(rungs[:plan.ladder_rungs]):
            control = Control(cfg)
            rung_cfg = control.set_quality(**rung)
            row = same_frames_of(plan, clip, rung_cfg, f"ladder {kind} rung {level}", dreamers, judge)
            rows.append({"rung": level, "settings": rung, "fps": row["fps"], "strength": row["strength"],
                         "flicker": row["flicker"], "dream_size": row["dream_size"]})
            if float(row["fps"]) < plan.ladder_min_fps:
                log(f"ladder {kind}: rung {level} ran {row['fps']} fps, below {plan.ladder_min_fps}: "
                    "the rungs above are not measured")
                break
        result[kind] = rows
    return result
