"""`livedream distill` as a library call: teacher pairs, then training, then the weights file.

Everything lives in a work folder beside the output (`student.pt` -> `student.work/`): the teacher
pairs (`pairs/`), the checkpoint and the training curve (`curve.json`: step, seconds, loss,
validation strength). A run that is stopped (Ctrl-C, SIGTERM, a crash) loses at most the last
few minutes; the same command resumes it. The weights file appears only at the end, written
atomically, so an output that exists is a whole student.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch

from livedream.config import DreamConfig
from livedream.distill.data import (
    FRAME_SIZE,
    PairStore,
    find_sources,
    make_pairs,
    plan_views,
    teacher_params,
)
from livedream.distill.train import Record, TrainConfig, Trainer
from livedream.dream import Dreamer, to_image, to_tensor
from livedream.errors import InputError
from livedream.io.images import atomic_write, read_image
from livedream.progress import progress_bar
from livedream.student.net import StudentSpec
from livedream.student.weights import save_student

__all__ = ["DistillPlan", "DistillResult", "distill", "work_folder"]

log = logging.getLogger("livedream")


@dataclass(frozen=True)
class DistillPlan:
    """What to learn, from what, for how long."""

    data: tuple[str, ...]  # folders or files of images and videos
    output: str  # the weights file
    teacher: DreamConfig  # the dream to learn (classic parameters by default)
    guide: str | None = None  # an image steering the teacher's dream
    work: str | None = None  # the work folder; None: beside the output
    views_per_image: int = 16
    frames_per_video: int = 24
    view_size: tuple[int, int] = FRAME_SIZE
    train: TrainConfig = TrainConfig()
    spec: StudentSpec = StudentSpec()
    progress: bool = True
    command: str = ""  # how it was started, recorded in the weights file


@dataclass
class DistillResult:
    output: str | None  # None when interrupted before the end
    steps: int
    seconds: float  # training time, resumed runs included
    pairs: int
    strength: float | None  # the last validation strength (share of the teacher's gain)
    interrupted: bool = False


def work_folder(plan: DistillPlan) -> str:
    if plan.work:
        return plan.work
    out = Path(plan.output)
    return str(out.with_name(out.stem + ".work"))


def distill(plan: DistillPlan, stop: threading.Event | None = None) -> DistillResult:
    """Make the teacher pairs still missing, train up to `plan.train.steps`, write the weights.
    `stop` (or SIGINT / SIGTERM, from the main thread) ends it at the next pair or step, with
    everything done so far kept for a resume."""
    stop = stop or threading.Event()
    sources = find_sources(plan.data)
    views = plan_views(sources, plan.views_per_image, plan.frames_per_video, plan.train.seed)
    if not any(v.source.holdout for v in views) or all(v.source.holdout for v in views):
        log.info("distill: fewer than two sources: validating on the training views")
    teacher = Dreamer(plan.teacher)
    if plan.guide is not None:
        teacher.set_guide(to_tensor(read_image(plan.guide)))
    w, h = plan.view_size
    params = teacher_params(plan.teacher, plan.guide) | {"view_size": f"{w}x{h}"}
    folder = work_folder(plan)
    store = PairStore(folder, params)
    with _StopOnSignal(stop):
        made = _make_pairs(plan, views, store, teacher, stop)
        trainer = Trainer(teacher, store, views, plan.train, plan.spec,
                          checkpoint=os.path.join(folder, "checkpoint.pt"))
        _resume(trainer, folder)
        if not stop.is_set():
            _train(plan, trainer, folder, stop)
    interrupted = stop.is_set()
    last = next((r for r in reversed(trainer.history) if r.strength is not None), None)
    result = DistillResult(None, trainer.step, trainer.seconds, made, last.strength if last else None,
                           interrupted)
    if not interrupted:
        training: dict[str, object] = {
            "steps": trainer.step, "seconds": round(trainer.seconds, 1), "pairs": made,
            "sources": len(sources), "holdout": sum(s.holdout for s in sources),
            "strength": result.strength, "gain": last.gain if last else None,
            "config": dataclasses.asdict(plan.train),
            "command": plan.command,
            # how the validation strength grew with training time (the curve in BENCHMARKS.md)
            "history": [{"step": r.step, "seconds": r.seconds, "strength": r.strength, "gain": r.gain}
                        for r in trainer.history if r.strength is not None],
        }
        atomic_write(plan.output, save_student(trainer.student, params, training))
        result.output = plan.output
    return result


def _make_pairs(plan: DistillPlan, views: Sequence[Any], store: PairStore, teacher: Dreamer,
                stop: threading.Event) -> int:
    """Dream the views not yet in the store (until `stop`); how many pairs there are."""
    missing = [v for v in views if not store.has(v.index)]
    if missing:
        log.info("distill: %d teacher pairs to dream (%d done) in %s", len(missing),
                 len(views) - len(missing), store.folder)
        bar = progress_bar(len(missing), "pairs", enabled=plan.progress, label="teacher")

        def dream(rgb: np.ndarray) -> np.ndarray:
            return to_image(teacher.dream(to_tensor(rgb)))[0]

        for _ in make_pairs(missing, store, dream, size=plan.view_size):
            bar.update()
            if stop.is_set():
                break
        bar.close()
    return sum(store.has(v.index) for v in views)


def _resume(trainer: Trainer, folder: str) -> None:
    path = os.path.join(folder, "checkpoint.pt")
    if not os.path.exists(path):
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        trainer.load_state(state)
    except Exception as e:  # noqa: BLE001 - a damaged checkpoint: say so, do not guess
        raise InputError(f"cannot resume from {path} ({type(e).__name__}); delete it to start the "
                         "training over (the teacher pairs are kept)") from None
    if dataclasses.asdict(trainer.student.spec) != dataclasses.asdict(trainer.spec_wanted):
        raise InputError(f"{path} holds a student of another architecture; use another --work folder")
    log.info("distill: resuming at step %d (%.0f min of training so far)", trainer.step,
             trainer.seconds / 60)


def _train(plan: DistillPlan, trainer: Trainer, folder: str, stop: threading.Event) -> None:
    steps = plan.train.steps
    bar = progress_bar(steps, "steps", enabled=plan.progress, label="training")
    bar.update(trainer.step)
    curve = os.path.join(folder, "curve.json")

    def on_record(record: Record) -> None:
        bar.update()
        if record.strength is not None:
            bar.set_postfix_str(f"loss {record.loss:.3f} strength {record.strength:.2f}", refresh=False)
            atomic_write(curve, json.dumps([dataclasses.asdict(r) for r in trainer.history]).encode())

    try:
        trainer.run(steps, on_record=on_record, should_stop=stop.is_set)
    finally:
        bar.close()


class _StopOnSignal:
    """SIGINT / SIGTERM set `event` (main thread only): the run stops at the next pair or step."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.event.set()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
