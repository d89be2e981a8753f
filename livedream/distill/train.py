"""Training a student on teacher pairs: steps, validation, checkpoints, resume.

Each step takes `batch` pairs from the training views, cuts the same random square from a view
and its dream (with room for the stability loss's shifted twin), runs the student and scores it
with `livedream.student.losses` through the teacher's own network. Every `val_every` steps the
student dreams the held-back views at full size (pictures it never trains on) and its
*strength* is measured: how much of the teacher's gain in the objective it reaches (1.0: as much
as the teacher). The checkpoint (student, optimiser, step, random state, history) is written
atomically every few minutes and when the run stops, so a run that is killed or interrupted
resumes where its last checkpoint was.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from livedream.distill.data import PairStore, View
from livedream.dream import Dreamer
from livedream.io.images import atomic_write
from livedream.student.losses import (
    LossWeights,
    objective_shortfall,
    shift_pair,
    size_loss,
    stability_loss,
    texture_loss,
    tone_loss,
)
from livedream.student.net import StudentNet, StudentSpec

__all__ = ["TrainConfig", "Trainer", "TEXTURE_LAYERS"]

# Layers whose textures (Gram matrices) the student matches, where the network has them: up to
# the deepest objective layer (the teacher's network is cut after it).
TEXTURE_LAYERS = ("block2", "block4", "block7", "block9", "block11")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 30_000
    batch: int = 6  # crops per step
    crop: int = 192  # side of a training crop, pixels of a 640x480 frame
    lr: float = 1e-3  # Adam, cosine decay to 1/20 from step `schedule_from` to `steps`
    schedule_from: int = 0  # a later step starts the cosine again there (fine-tuning a run)
    seed: int = 0
    val_every: int = 250  # steps between validations
    val_views: int = 8  # held-back views dreamed at full size per validation
    margin: int = 16  # pixels at each crop's border the losses ignore (the student's own padding
    #                   there must not become a pattern that scores: it would frame every video)
    checkpoint_seconds: float = 300.0
    weights: LossWeights = field(default_factory=LossWeights)


@dataclass
class Record:
    step: int
    seconds: float  # training time so far (resumed runs included)
    loss: float
    parts: dict[str, float]
    strength: float | None = None  # validation: share of the teacher's objective gain reached
    gain: float | None = None  # validation: the student's objective on its output / on the input


@dataclass(frozen=True)
class Draw:
    """One step's batch: two views of the crops shifted by `shift` (the stability loss compares
    their dreams), the teacher's dream of the first, and the roll applied before the features."""

    xa: torch.Tensor
    xb: torch.Tensor
    shift: tuple[int, int]
    ta: torch.Tensor
    roll: tuple[int, int]


class Trainer:
    """Trains `student` to dream like `teacher` on the pairs of `store`."""

    def __init__(self, teacher: Dreamer, store: PairStore, views: Sequence[View], config: TrainConfig,
                 spec: StudentSpec | None = None, checkpoint: str | None = None) -> None:
        self.teacher, self.store, self.config = teacher, store, config
        self.train_views = [v for v in views if not v.source.holdout]
        self.val_views = [v for v in views if v.source.holdout]
        self.checkpoint = checkpoint
        self.spec_wanted = spec or StudentSpec()
        self.student = StudentNet(self.spec_wanted)
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=config.lr)
        self.step = 0
        self.seconds = 0.0
        self.history: list[Record] = []
        self.generator = torch.Generator().manual_seed(config.seed)
        net_paths = set(teacher.paths)
        self.texture_paths = [p for p in (_resolve(teacher, n) for n in TEXTURE_LAYERS)
                              if p is not None] or list(teacher.paths)
        self.feature_paths = sorted(net_paths | set(self.texture_paths))
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # -- checkpoints ----------------------------------------------------------------------------
    def state(self) -> dict[str, object]:
        return {
            "student": self.student.state_dict(), "spec": self.student.spec.as_dict(),
            "optimizer": self.optimizer.state_dict(), "step": self.step, "seconds": self.seconds,
            "generator": self.generator.get_state(), "history": [asdict(r) for r in self.history],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from `state()`'s dict (as torch.load gives it back)."""
        self.student = StudentNet(StudentSpec.from_dict(state["spec"]))
        self.student.load_state_dict(state["student"])
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=self.config.lr)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self.generator.set_state(state["generator"])
        self.history = [Record(**r) for r in state["history"]]

    def save(self) -> None:
        if self.checkpoint is None:
            return
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        atomic_write(self.checkpoint, buf.getvalue())

    # -- training -------------------------------------------------------------------------------
    def available(self) -> list[View]:
        return [v for v in self.train_views if self.store.has(v.index)]

    def run(self, until: int, on_record: Callable[[Record], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> None:
        """Train up to step `until` (or until `should_stop()`), validating and checkpointing."""
        last_save = time.monotonic()
        while self.step < until and not should_stop():
            began = time.perf_counter()
            loss, parts = self.train_step()
            self.seconds += time.perf_counter() - began
            self.step += 1
            record = Record(self.step, round(self.seconds, 1), loss, parts)
            if self.step % self.config.val_every == 0 or self.step == until:
                record.strength, record.gain = self.validate()
                self.history.append(record)
            if on_record is not None:
                on_record(record)
            if time.monotonic() - last_save > self.config.checkpoint_seconds:
                self.save()
                last_save = time.monotonic()
        self.save()

    def train_step(self, draw: Draw | None = None) -> tuple[float, dict[str, float]]:
        """One optimiser step on `draw` (default: a fresh random batch): (loss, its parts)."""
        for group in self.optimizer.param_groups:
            group["lr"] = _cosine(self.config.lr, self.step - self.config.schedule_from,
                                  self.config.steps - self.config.schedule_from)
        loss, parts = self.loss(self.draw() if draw is None else draw)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.student.parameters(), 1.0)
        self.optimizer.step()
        return float(loss.detach()), {k: round(float(v.detach().mean()), 4) for k, v in parts.items()}

    def draw(self) -> Draw:
        """A training batch and its random moves (everything random about a step)."""
        x, t = self._batch()  # (B, 3, S + 16, S + 16) each
        xa, xb, shift = shift_pair(x, self.config.crop, self.generator)
        oy, ox = (int(v) for v in torch.randint(-8, 9, (2,), generator=self.generator))
        return Draw(xa, xb, shift, t[..., :self.config.crop, :self.config.crop], (oy, ox))

    def loss(self, draw: Draw) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The student's loss on `draw` (with its graph) and the parts it sums."""
        cfg, w = self.config, self.config.weights
        xa, xb, shift, ta, (oy, ox) = draw.xa, draw.xb, draw.shift, draw.ta, draw.roll
        self.student.train()
        ra, rb = self.student(torch.cat([xa, xb])).chunk(2)
        m = cfg.margin
        inner = (slice(None), slice(None), slice(m, cfg.crop - m), slice(m, cfg.crop - m))
        xa, ta, ra = xa[inner], ta[inner], ra[inner]
        ya = xa + ra
        roll = lambda v: torch.roll(v, (oy, ox), (2, 3)).contiguous(memory_format=torch.channels_last)  # noqa: E731
        feats_y = self.teacher.net.features(roll(ya), self.feature_paths)
        with torch.no_grad():
            feats_t = self.teacher.net.features(roll(ta), self.feature_paths)
            obj_t = self.teacher.objective(feats_t, self.teacher.cfg)
            obj_x = self.teacher.objective(self.teacher.net.features(roll(xa), self.teacher.paths),
                                           self.teacher.cfg)
        obj_y = self.teacher.objective(feats_y, self.teacher.cfg)
        parts = {
            "objective": objective_shortfall(obj_y, obj_t, obj_x),
            "texture": texture_loss({p: feats_y[p] for p in self.texture_paths},
                                    {p: feats_t[p] for p in self.texture_paths}),
            "tone": tone_loss(ya, ta),
            "size": size_loss(ra, xa, ta),
            "stability": stability_loss(ra, rb[inner], shift, margin=0),
            "range": ((F.relu(ya - 255.0) + F.relu(-ya)) / 10.0).pow(2).mean(dim=(1, 2, 3)),
        }
        scale = asdict(w) | {"range": 1.0}
        return torch.stack([scale[k] * v.mean() for k, v in parts.items()]).sum(), parts

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        views = self.available()
        if not views:
            raise RuntimeError("no teacher pairs to train on yet")
        side = self.config.crop + 16
        xs, ts = [], []
        for _ in range(self.config.batch):
            view = views[int(torch.randint(0, len(views), (1,), generator=self.generator))]
            x, t = self._pair(view.index)
            h, w = x.shape[:2]
            y0 = int(torch.randint(0, h - side + 1, (1,), generator=self.generator))
            x0 = int(torch.randint(0, w - side + 1, (1,), generator=self.generator))
            xs.append(x[y0:y0 + side, x0:x0 + side])
            ts.append(t[y0:y0 + side, x0:x0 + side])
        to = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float()  # noqa: E731
        return to(xs), to(ts)

    def _pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in self._cache:
            self._cache[index] = self.store.get(index)
        return self._cache[index]

    # -- validation -----------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> tuple[float | None, float | None]:
        """(strength, gain) over the held-back views that have pairs; (None, None) if none."""
        views = [v for v in self.val_views if self.store.has(v.index)][: self.config.val_views]
        if not views:
            return None, None
        self.student.eval()
        shares, gains = [], []
        for view in views:
            x, t = (torch.from_numpy(a).permute(2, 0, 1)[None].float() for a in self._pair(view.index))
            y = (x + self.student(x)).clamp(0, 255).round()
            e_x, e_y, e_t = (float(self.teacher.energy(v)[0]) for v in (x, y, t))
            shares.append((e_y - e_x) / (e_t - e_x) if e_t != e_x else 0.0)
            gains.append(e_y / e_x if e_x > 0 else float("nan"))
        return round(float(np.mean(shares)), 4), round(float(np.mean(gains)), 4)


def _cosine(lr: float, step: int, steps: int) -> float:
    progress = min(1.0, max(0, step) / max(1, steps))
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _resolve(dreamer: Dreamer, layer: str) -> str | None:
    """`layer`'s path if the dreamer's (truncated) network has it, else None."""
    try:
        path = dreamer.net.resolve(layer)
    except ValueError:
        return None
    return path if dreamer.net.stage_of(path) is not None else None
