"""Video: fps per preset and dream width (end to end and the dream stage alone), strength and
flicker per preset on the same frames, `realtime` vs `classic`, live latency with a paced
source, fps vs iterations per frame, and `livedream video` file to file as a whole process.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import TypedDict

import cv2
import numpy as np
import torch

from livedream.bench.common import (
    SAMPLES,
    Clip,
    Plan,
    RunReport,
    Target,
    limited,
    load_clip,
    log,
    replay,
    run_report,
    summary,
    verdict,
)
from livedream.config import DreamConfig, VideoConfig, video_preset
from livedream.dream import Dreamer, to_tensor
from livedream.frame import Frame, dream_size
from livedream.io.sinks import NullSink
from livedream.io.sources import SyntheticSource
from livedream.pipeline import DreamSource, Pipeline, Sink, build_dreamers
from livedream.student import student_for
from livedream.temporal import WarmStart, warping_error

__all__ = ["bench_video", "dream_alone", "same_frames_of", "WindowSink", "GRADIENT"]

FILE_FPS = Target("issue 3, realtime file to file", 20.0, "fps", higher=True)
FILE_FPS_LIVE_RATE = Target("issue 11, realtime file to file, whole process", 25.0, "fps", higher=True)
FILE_TARGETS = [FILE_FPS, FILE_FPS_LIVE_RATE]
NULL_FPS = Target("issue 3's file-to-file figure, here without the encode", 20.0, "fps", higher=True)
RATIO_FPS = Target("issue 3, realtime / classic fps", 20.0, "x", higher=True)
RATIO_STRENGTH = Target("issue 3, realtime / classic strength", 0.8, "x", higher=True)
FLICKER = Target("issue 3, realtime flicker / input's", 1.5, "x")


class WindowSink:
    """Keeps, for the frames with lo <= index < hi, what strength and flicker need."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (rgb, out, small)
        self.count = 0

    def write(self, frame: Frame) -> None:
        self.count += 1
        if self.lo <= frame.index < self.hi:
            small = frame.small if frame.small is not None else frame.rgb
            assert frame.out is not None  # the pipeline composes every frame before its sinks
            self.kept.append((frame.rgb, frame.out, small))

    def close(self) -> None:
        pass


GRADIENT = "realtime-gradient"  # realtime by gradient ascent (`--student none`): the bench's name


def bench_config(name: str) -> VideoConfig:
    """A preset as the bench compares it: fixed settings (adaptive quality has its own section).
    `realtime-gradient` is realtime dreamed by gradient ascent (`--student none`), as it was
    before a student shipped; `realtime` itself dreams with the shipped student."""
    if name == GRADIENT:
        return video_preset("realtime", adaptive=False).replace(student=None)
    return video_preset(name).replace(adaptive=False)


def measured_presets(plan: Plan) -> list[str]:
    """The plan's presets that have something to measure: `realtime-gradient` only where a
    student ships for realtime's layer (else `realtime` is gradient ascent already)."""
    return [n for n in plan.presets if n != GRADIENT or student_for(bench_config("realtime")) is not None]


class Replicas:
    """The model replicas (one per device, as the product builds them) of each dream source the
    bench runs, built once: gradient ascent's, the student's."""

    def __init__(self) -> None:
        self._built: dict[str | None, list[DreamSource]] = {}

    def __call__(self, cfg: VideoConfig) -> list[DreamSource]:
        student = student_for(cfg)
        key = None if student is None else student.path
        if key not in self._built:
            self._built[key] = build_dreamers(cfg)
        return self._built[key]


def dream_alone(dreamer: DreamSource, cfg: VideoConfig, smalls: list[np.ndarray],
                seconds: float = float("inf"), min_frames: int = 2) -> list[float]:
    """Seconds per frame of the dream stage by itself (warm start and dream, as the pipeline's
    dream worker does, batch 1) on frames already at the dream size; the first is cold. Stops
    after `seconds` once `min_frames` are done."""
    assert isinstance(dreamer, Dreamer), "the dream stage alone is measured for gradient ascent"
    warm = WarmStart(decay=cfg.decay)
    times: list[float] = []
    began = time.perf_counter()
    for i, small in enumerate(smalls):
        if len(times) >= min_frames and time.perf_counter() - began > seconds:
            break
        t = time.perf_counter()
        x0 = small.astype(np.float32)  # (h, w, 3)
        start = warm.start_for(i, small) if cfg.warm else None
        residual = start.residual if start is not None else None
        cold = residual is None
        if residual is not None:
            x0 = np.clip(x0 + residual, 0.0, 255.0)
        iters = max(cfg.cold_iters, cfg.dream.iters) if (cold and cfg.warm) else cfg.dream.iters
        y = dreamer.dream(torch.from_numpy(x0[None]).permute(0, 3, 1, 2), cfg.dream.replace(iters=iters))
        if cfg.warm:
            warm.update(i, small, y[0].permute(1, 2, 0).numpy() - small)
        times.append(time.perf_counter() - t)
    return times


def _strength(judge: Dreamer, outs: list[np.ndarray], ins: list[np.ndarray],
              size: tuple[int, int] | None = None) -> float:
    """Mean over frames of the target layer's energy on the output over the input; both resized
    to `size` (w, h) first when given."""
    if size is not None:
        outs, ins = ([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in fs] for fs in (outs, ins))
    gains = [float(judge.energy(to_tensor(o))[0] / judge.energy(to_tensor(i))[0])
             for o, i in zip(outs, ins, strict=True)]
    return float(np.mean(gains))


def _run(frames: Iterator[Frame], cfg: VideoConfig, dreamers: Sequence[DreamSource], sink: Sink,
         live: bool = False) -> RunReport:
    return run_report(Pipeline(frames, [sink], cfg, dreamers, live=live).run())


def _share(report: RunReport) -> dict[str, float]:
    """Busy seconds per stage as a share of the wall time (the stage-by-stage profile)."""
    wall = float(report["wall_seconds"]) or 1.0
    return {k: round(v / wall, 2) for k, v in report["busy_seconds"].items()}


# -- the pieces -----------------------------------------------------------------------------------
def _end_to_end(plan: Plan, clip: Clip, cfg: VideoConfig, dreamers: Sequence[DreamSource],
                slow: bool) -> list[RunReport]:
    """Pipeline reports of repeated runs over the clip (decoded frames .. NullSink), each bounded
    by `plan.run_frames` / `plan.run_seconds`; a slow preset stops repeating past a third of the
    budget."""
    min_frames = plan.min_frames if slow else max(plan.min_frames, 8)
    reports: list[RunReport] = []
    for _ in range(plan.repeats):
        frames = limited(replay(clip), plan.run_frames, plan.run_seconds, min_frames)
        reports.append(_run(frames, cfg, dreamers, NullSink()))
        if slow and float(reports[-1]["wall_seconds"]) > plan.budget / 3:
            break
    return reports


def _smalls(clip: Clip, size: tuple[int, int], n: int) -> list[np.ndarray]:
    """The clip's first n frames at the dream size, as the preprocess stage makes them."""
    frames = [rgb for *_, rgb in clip.frames[:n]]
    if size == clip.size:
        return frames
    return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]


def by_width(plan: Plan, clip: Clip, replicas: Replicas) -> dict[str, dict[str, object]]:
    """fps of each whole-frame gradient-ascent preset (not a student's, not detail's tiles) at
    each dream width: end to end (decoded frames .. NullSink) and the dream stage alone."""
    out: dict[str, dict[str, object]] = {}
    scaled = [n for n in measured_presets(plan)
              if bench_config(n).tiles == 0 and student_for(bench_config(n)) is None]
    for name, width in itertools.product(scaled, plan.widths):
        cfg = bench_config(name).replace(dream_width=width)
        dreamers = replicas(cfg)
        reports = _end_to_end(plan, clip, cfg, dreamers, slow=not cfg.warm)
        size = dream_size(*clip.size, width)
        smalls = _smalls(clip, size, plan.alone_frames if cfg.warm else plan.min_frames)
        alone = dream_alone(dreamers[0], cfg, smalls, plan.run_seconds, plan.min_frames)
        warm = alone[1:] if cfg.warm and len(alone) > 1 else alone  # the first frame starts cold
        e2e, per_frame = summary([float(r["fps"]) for r in reports]), summary(warm)
        targets = [NULL_FPS] if name in ("realtime", GRADIENT) and width == 320 else []
        row = {
            "dream_size": list(size), "end_to_end_fps": e2e["median"], "end_to_end_spread": e2e["spread"],
            "runs": e2e["runs"], "frames": [r["frames"] for r in reports],
            "dream_fps": round(1.0 / float(per_frame["median"]), 2),
            "dream_seconds_per_frame": per_frame["median"], "dream_spread": per_frame["spread"],
            "dream_frames": len(warm), "cold_seconds": round(alone[0], 3) if cfg.warm else None,
            "busy_seconds": reports[-1]["busy_seconds"], "busy_share": _share(reports[-1]),
            "wall_seconds": reports[-1]["wall_seconds"], "targets": [t.text() for t in targets],
            "status": verdict(float(e2e["median"]), targets, plan.judged),
        }
        out.setdefault(name, {})[str(width)] = row
        log(f"video {name} @{width}: end to end {row['end_to_end_fps']} fps, dream alone "
            f"{row['dream_fps']} fps {row['status']}")
    return out


class PresetRow(TypedDict):
    """One preset on the comparison window, as `same_frames` measures it."""

    fps: float
    frames: int
    window: list[int]
    dream_width: int | None
    dream_size: list[int]
    one_pass: bool  # a student dreamed it (dream_size: what it saw; iters and octaves unused)
    iters: int
    octaves: int
    strength: float
    strength_common_scale: float
    common_scale: list[int]
    flicker: float
    warping_error: float
    input_warping_error: float
    cold_starts: int
    busy_seconds: dict[str, float]
    busy_share: dict[str, float]
    wall_seconds: float


def same_frames(plan: Plan, clip: Clip, name: str, replicas: Replicas, judge: Dreamer) -> PresetRow:
    """One preset at its own dream width over the comparison window (warm presets run from frame
    0 so their warm start has built up; classic dreams only the window): fps, strength, flicker."""
    cfg = bench_config(name)
    return same_frames_of(plan, clip, cfg, f"video {name}", replicas(cfg), judge)


def same_frames_of(plan: Plan, clip: Clip, cfg: VideoConfig, label: str,
                   dreamers: Sequence[DreamSource], judge: Dreamer) -> PresetRow:
    """`same_frames` for any settings `cfg`; `label` starts its log line."""
    lo, hi = plan.window
    if not cfg.warm:
        frames = limited(replay(clip, lo), hi - lo, float("inf"))
    else:
        frames = limited(replay(clip), max(plan.run_frames, hi), plan.run_seconds, hi, stop_at=hi)
    sink = WindowSink(lo, hi)
    report = _run(frames, cfg, dreamers, sink)
    rgb, out, small = (list(v) for v in zip(*sink.kept, strict=True))
    common = dream_size(*clip.size, video_preset("realtime").dream_width)
    base = warping_error(rgb, rgb)
    flicker = warping_error(out, rgb)
    one_pass = student_for(cfg) is not None  # a student: the frame at its scale, no iterations
    size = ([round(clip.size[0] * cfg.student_scale), round(clip.size[1] * cfg.student_scale)] if one_pass
            else [small[0].shape[1], small[0].shape[0]])
    row: PresetRow = {
        "fps": report["fps"], "frames": report["frames"], "window": [lo, hi],
        "dream_width": cfg.dream_width, "dream_size": size, "one_pass": one_pass,
        "iters": cfg.dream.iters, "octaves": cfg.dream.octaves,
        "strength": round(_strength(judge, out, rgb), 3),
        "strength_common_scale": round(_strength(judge, out, rgb, common), 3), "common_scale": list(common),
        "flicker": round(flicker / base, 3), "warping_error": round(flicker, 3),
        "input_warping_error": round(base, 3),
        "cold_starts": report["cold_starts"],  # a scene cut in the window jumps the flicker
        "busy_seconds": report["busy_seconds"], "busy_share": _share(report),
        "wall_seconds": report["wall_seconds"],
    }
    log(f"{label} same frames {lo}..{hi - 1}: {row['fps']} fps, strength {row['strength']}x "
        f"(judged at {common[0]}x{common[1]}: {row['strength_common_scale']}x), "
        f"flicker {row['flicker']}x input")
    return row


def live(plan: Plan, name: str, replicas: Replicas) -> dict[str, object]:
    """A paced fake camera (30 fps) in live mode: latency capture -> sink, fps, frames dropped."""
    src = SyntheticSource(*plan.live_size, frames=int(plan.live_seconds * 30), fps=30.0, paced=True)
    cfg = bench_config(name)
    report = _run(iter(src), cfg, replicas(cfg), NullSink(), live=True)
    lat = report["latency_ms"]
    row = {"p50_ms": lat["p50"], "p95_ms": lat["p95"], "fps": report["fps"],
           "frames": report["frames"], "dropped": int(report["dropped"]) + src.skipped,
           "size": list(plan.live_size), "seconds": plan.live_seconds,
           "busy_seconds": report["busy_seconds"], "busy_share": _share(report)}
    log(f"live {name}: p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, {row['fps']} fps out, "
        f"{row['dropped']} dropped")
    return row


def iters_sweep(plan: Plan, clip: Clip, replicas: Replicas) -> list[dict[str, object]]:
    """Dream stage alone, `realtime` by gradient ascent at its width, 1..N iterations per frame."""
    rows = []
    base = bench_config(GRADIENT).replace(dream_width=plan.widths[0])
    dreamers = replicas(base)
    size = dream_size(*clip.size, base.dream_width)
    smalls = _smalls(clip, size, plan.alone_frames)
    for iters in plan.iters_sweep:
        cfg = base.replace(dream=base.dream.replace(iters=iters))
        stats = summary(dream_alone(dreamers[0], cfg, smalls, plan.run_seconds / 2, 3)[1:])
        rows.append({"iters": iters, "dream_fps": round(1.0 / float(stats["median"]), 2),
                     "seconds_per_frame": stats["median"], "spread": stats["spread"], "frames": stats["runs"],
                     "dream_size": list(size)})
    log("video fps vs iterations: " + ", ".join(f"{r['iters']}: {r['dream_fps']}" for r in rows))
    return rows


def file_to_file(plan: Plan, env: dict[str, str]) -> dict[str, object]:
    """`livedream video` on the sample clip, `realtime` (as a user runs it: the shipped student
    where there is one), as a whole process (start to finalized file): fps by the wall clock, the
    pipeline's own fps and its stage profile."""
    clip = SAMPLES / "box.mp4"
    if not clip.exists() or not plan.processes:
        why = f"no sample clip at {clip}" if plan.processes else "no separate processes in this plan"
        return {"fps": None, "skipped": why}
    runs: list[tuple[float, float]] = []
    report: RunReport  # the last run's JSON: the pipeline's report and the file's details
    with tempfile.TemporaryDirectory() as tmp:
        out, rep = os.path.join(tmp, "out.mp4"), os.path.join(tmp, "report.json")
        cmd = [sys.executable, "-m", "livedream", "video", str(clip), "-o", out, "--quiet", "--preset",
               "realtime", "--report", rep]
        if plan.file_seconds is not None:
            cmd += ["--duration", str(plan.file_seconds)]
        for _ in range(plan.repeats):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, capture_output=True)
            wall = time.perf_counter() - t
            with open(rep) as f:
                report = json.load(f)
            runs.append((report["frames"] / wall, float(report["fps"])))
    whole = summary([r[0] for r in runs])
    row = {"fps": whole["median"], "spread": whole["spread"], "runs": whole["runs"],
           "pipeline_fps": summary([r[1] for r in runs])["median"], "frames": report["frames"],
           "busy_seconds": report["busy_seconds"], "busy_share": _share(report),
           "wall_seconds": report["wall_seconds"], "targets": [t.text() for t in FILE_TARGETS],
           "status": verdict(float(whole["median"]), FILE_TARGETS, plan.judged)}
    log(f"video file to file (whole process): {row['fps']} fps, pipeline {row['pipeline_fps']} fps "
        f"{row['status']}")
    return row


# -- the section ----------------------------------------------------------------------------------
def bench_video(plan: Plan, env: dict[str, str]) -> dict[str, object]:
    """`video.presets.<name>.{fps, strength, flicker}`, `video.ratio_realtime_vs_classic`, ..."""
    # Every preset dreams this network (or its student), on the replicas the product would use by default.
    replicas = Replicas()
    judge = Dreamer(DreamConfig(precision="fp32"))  # the presets' layer, to measure strength
    clip = load_clip(plan.clip_size)
    w, h = clip.size
    result: dict[str, object] = {
        "clip": {"name": clip.name, "width": w, "height": h, "frames": len(clip.frames),
                 "decode_fps": round(len(clip.frames) / clip.decode_seconds, 1),
                 "note": "decoded once into memory; the runs below replay it (decode and encode are "
                         "in the file-to-file row)"},
        "strength": "target layer energy, output / input, on the full-size output frames "
                    "(strength_common_scale: the same with every preset's output and input resized "
                    "to realtime's dream size first, so all are judged at one scale)",
        "flicker": "warping error of the output / the input's own (flow and mask from the input)",
    }
    result["widths"] = by_width(plan, clip, replicas)
    presets = {name: same_frames(plan, clip, name, replicas, judge) for name in measured_presets(plan)}
    result["presets"] = presets
    if "realtime" in presets and "classic" in presets:
        rt, cl = presets["realtime"], presets["classic"]
        fps_ratio = float(rt["fps"]) / float(cl["fps"])
        strength_ratio = float(rt["strength"]) / float(cl["strength"])
        result["ratio_realtime_vs_classic"] = round(fps_ratio, 2)
        result["realtime_vs_classic"] = {
            "fps_ratio": _judged(fps_ratio, RATIO_FPS, plan),
            "strength_ratio": _judged(strength_ratio, RATIO_STRENGTH, plan),
            "strength_ratio_common_scale": round(
                float(rt["strength_common_scale"]) / float(cl["strength_common_scale"]), 3),
            "flicker_vs_input": _judged(float(rt["flicker"]), FLICKER, plan),
            "classic_flicker_vs_input": cl["flicker"], "window": list(plan.window),
        }
        log(f"video realtime vs classic: {fps_ratio:.1f}x fps, {strength_ratio:.2f}x strength")
    live_rows = {name: live(plan, name, replicas) for name in measured_presets(plan) if name != "classic"}
    result["live"] = live_rows
    live_rows["classic"] = {"skipped": "every frame from scratch at full size takes seconds: "
                                       "not a live preset"}
    result["iters"] = iters_sweep(plan, clip, replicas)
    result["file_to_file"] = file_to_file(plan, env)
    return result


def _judged(value: float, target: Target, plan: Plan) -> dict[str, object]:
    return {"value": round(value, 3), "target": target.text(),
            "status": verdict(value, [target], plan.judged)}
