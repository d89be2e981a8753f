"""The student and adaptive quality: how fast a student dreams, how strong its dream is on
footage it never saw, what the app's photo costs through it, how its validation strength grew
with training time; and where adaptive quality settles live.

Sections `student` and `adaptive` of `livedream bench`.
"""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np
import torch

from livedream.bench.common import Plan, Target, load_clip, log, photo, summary, verdict
from livedream.bench.video import GRADIENT
from livedream.config import DreamConfig, video_preset
from livedream.control import Control
from livedream.dream import Dreamer, to_tensor
from livedream.frame import Frame, compose
from livedream.io.sinks import ListSink
from livedream.student import student_for
from livedream.student.dreamer import StudentDreamer
from livedream.student.weights import Student

__all__ = ["bench_student", "bench_adaptive", "PHOTO", "STRENGTH", "LIVE_FPS", "LIVE_P95"]

PHOTO = Target("issue 11, the app's 640x480 photo through the student", 0.2)
STRENGTH = Target("issue 11, the shipped student on a photo it never saw", 1.5, "x", higher=True)
LIVE_FPS = Target("issue 11, live 640x480 30 fps, frames out", 24.0, "fps", higher=True)
LIVE_P95 = Target("issue 11, live latency p95", 120.0, "ms")


def _shipped() -> Student | None:
    return student_for(video_preset("realtime").replace(student="auto"))


def bench_student(plan: Plan) -> dict[str, Any]:
    """`student.{inference, photo, unseen, curve}`; skipped without a shipped student."""
    student = _shipped()
    if student is None:
        return {"skipped": "no student ships for effnet-lite0 block9 (livedream/student/shipped/)"}
    w, h = plan.live_size
    x = photo(w, h)  # (1, 3, H, W)
    rows: dict[str, Any] = {"weights": student.path, "training": {
        k: v for k, v in student.training.items() if k not in ("history",)}}
    before = torch.get_num_threads()
    inference = {}
    try:
        for threads in (1, before):
            torch.set_num_threads(threads)
            dreamer = StudentDreamer(student)
            for scale in (1.0, 0.5):
                xs = x if scale == 1.0 else torch.nn.functional.interpolate(
                    x, scale_factor=scale, mode="bilinear", antialias=True)
                dreamer.residual(xs)  # warm-up
                times = []
                for _ in range(plan.repeats * 3):
                    t = time.perf_counter()
                    dreamer.residual(xs)
                    times.append(time.perf_counter() - t)
                inference[f"{threads} thread{'s' * (threads > 1)}, scale {scale}"] = summary(times)
    finally:
        torch.set_num_threads(before)
    rows["inference"] = {"size": [w, h], **inference}
    log("student inference at " + f"{w}x{h}: " + ", ".join(
        f"{k} {1000 * v['median']:.0f} ms" for k, v in inference.items()))
    rows["photo"] = _photo(plan, student)
    rows["unseen"] = _unseen(plan, student)
    history = student.training.get("history")
    rows["curve"] = history if isinstance(history, list) else []
    return rows


def _photo(plan: Plan, student: Student) -> dict[str, Any]:
    """The app's photo path through the student: decode a 640x480 JPEG, dream, encode."""
    from livedream.io.images import decode_image, encode_image

    rgb = cv2.resize(photo(*plan.live_size)[0].permute(1, 2, 0).numpy().astype(np.uint8), plan.live_size)
    data = encode_image(rgb, ".jpg")
    dreamer = StudentDreamer(student)

    def once() -> None:
        img = decode_image(data)
        out = compose(img, dreamer.residual(to_tensor(img))[0].permute(1, 2, 0).numpy())
        encode_image(out, ".jpg")

    once()
    times = []
    for _ in range(plan.repeats * 3):
        t = time.perf_counter()
        once()
        times.append(time.perf_counter() - t)
    s = summary(times)
    row = {"seconds": s["median"], "spread": s["spread"], "size": list(plan.live_size),
           "target": PHOTO.text(), "status": verdict(s["median"], [PHOTO], plan.judged)}
    log(f"student photo {plan.live_size[0]}x{plan.live_size[1]}: {row['seconds']} s {row['status']}")
    return row


def _unseen(plan: Plan, student: Student) -> dict[str, Any]:
    """Energy gain on the sample clip's frames (never trained on): the student alone, and
    classic on the same frames."""
    clip = load_clip(plan.clip_size)
    frames = [rgb for *_, rgb in clip.frames[plan.window[0]:plan.window[1]:3]]
    judge = Dreamer(DreamConfig(precision="fp32"))
    classic = Dreamer(video_preset("classic").dream.replace(precision="fp32"))
    dreamer = StudentDreamer(student)
    gains: list[float] = []
    classic_gains: list[float] = []
    for rgb in frames:
        x = to_tensor(rgb)
        e0 = float(judge.energy(x)[0])
        y = compose(rgb, dreamer.residual(x)[0].permute(1, 2, 0).numpy())
        gains.append(float(judge.energy(to_tensor(y))[0]) / e0)
        if plan.judged or len(classic_gains) < 1:
            classic_gains.append(float(judge.energy(classic.dream(x))[0]) / e0)
    gain, cgain = float(np.mean(gains)), float(np.mean(classic_gains))
    row = {"frames": len(frames), "student_gain": round(gain, 3), "classic_gain": round(cgain, 3),
           "ratio": round(gain / cgain, 3), "target": STRENGTH.text(),
           "status": verdict(gain, [STRENGTH], plan.judged)}
    log(f"student on unseen frames: gain {row['student_gain']}x (classic {row['classic_gain']}x, "
        f"ratio {row['ratio']}) {row['status']}")
    return row


def bench_adaptive(plan: Plan) -> dict[str, Any]:
    """`adaptive["live <run>"]`: a paced 30 fps source (the sample clip, looped) dreamed live with
    adaptive quality, by `realtime` as a user runs it (the shipped student, where one ships) and,
    beside it, by gradient ascent (`realtime-gradient`)."""
    from livedream.io.sources import SyntheticSource
    from livedream.live.session import LiveSession
    from livedream.pipeline import build_dreamers

    rows: dict[str, Any] = {}
    clip = load_clip(plan.live_size if plan.clip_size is None else plan.clip_size)
    fps = 30.0

    class Paced(SyntheticSource):  # the clip's frames at 30 fps, looped, as a camera would give
        def frame(self, i: int) -> np.ndarray:
            return clip.frames[i % len(clip.frames)][3]

    w, h = clip.size
    runs = {"realtime": video_preset("realtime")}  # as a user runs it: the shipped student if there is one
    if student_for(runs["realtime"]) is not None:
        runs[GRADIENT] = runs["realtime"].replace(student=None)
    for name, cfg in runs.items():
        control = Control(cfg)
        source = Paced(w, h, frames=int(plan.live_seconds * fps), fps=fps, paced=True)
        sink = ListSink()
        session = LiveSession(source, [_Keep(sink, 30)], control, build_dreamers(cfg))
        session.start()
        session.finished.wait(plan.live_seconds + 30)
        session.close()
        totals = session.stats.totals()
        quality = session.quality.state() if session.quality is not None else None
        lat = totals["latency_ms"]
        row = {"fps_out": totals["fps_out"], "p50_ms": lat["p50"], "p95_ms": lat["p95"],
               "dropped": totals["dropped"], "quality": quality, "size": [w, h],
               "targets": [LIVE_FPS.text(), LIVE_P95.text()],
               "status": "; ".join(verdict(v, [t], plan.judged) for v, t in
                                   ((totals["fps_out"], LIVE_FPS), (lat["p95"], LIVE_P95)))}
        if sink.frames:
            judge = Dreamer(DreamConfig(precision="fp32"))
            gains = [float(judge.energy(to_tensor(f.image))[0]) / float(judge.energy(to_tensor(f.rgb))[0])
                     for f in sink.frames[-6:]]
            row["strength"] = round(float(np.mean(gains)), 3)
        rows[f"live {name}"] = row
        log(f"adaptive live {name}: {row['fps_out']} fps out, p95 {row['p95_ms']} ms, "
            f"rung {None if quality is None else quality['level']}, strength {row.get('strength')} "
            f"{row['status']}")
    return rows


class _Keep:
    """A sink keeping the newest `n` frames (for their strength)."""

    def __init__(self, sink: ListSink, n: int) -> None:
        self.sink, self.n = sink, n

    def write(self, frame: Frame) -> None:
        self.sink.frames.append(frame)
        del self.sink.frames[:-self.n]

    def close(self) -> None:
        pass
