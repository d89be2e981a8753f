"""Adaptive quality: keep a video's pace and spend whatever time is left on a stronger dream.

Like a game's dynamic resolution: the controller watches the frames coming out of the pipeline
and moves along a ladder of settings (config.QUALITY_LADDERS: dream size, iterations, octaves;
for a student, the scale it sees and gradient steps on top), one rung at a time, applied through
the run's `Control` so the next batch uses them.

- The pace: the source's frame rate (live) or `--fps-target` (files, which otherwise have none).
- Falling behind (frames out below the pace for a window): one rung down.
- Time to spare (the dream workers idle enough that the next rung, at its measured or guessed
  cost, still keeps the pace): one rung up. A rung that was tried and fell behind is not tried
  again for a while, so the setting settles instead of oscillating.

Decisions depend on timing: a file run with a target is not reproducible (see the README).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livedream.config import QUALITY_LADDERS
from livedream.control import Control

__all__ = ["QualityController", "Window", "ladder_for"]

_UP_COST = 1.6  # the cost of an untried rung, relative to the one below (the rungs are spaced so)
_UP_MARGIN = 0.85  # climb only if the next rung would use at most this share of the time
_DOWN_PACE = 0.93  # step down when frames come out slower than this share of the pace
_RETRY_AFTER = 30.0  # seconds before a rung that fell behind is tried again


@dataclass
class Window:
    """What the controller saw in one look: frames out and dream seconds over `seconds`."""

    seconds: float
    frames: int
    dream_seconds: float  # all workers together
    workers: int
    pace: float  # frames per second to keep

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def busy(self) -> float:
        """Share of the workers' time spent dreaming."""
        return self.dream_seconds / (self.workers * self.seconds) if self.seconds > 0 else 1.0


def nearest_rung(rungs: list[dict[str, object]], control: Control) -> int:
    """The rung most like the run's settings now (the most fields equal; the lower on a tie):
    the controller starts there without changing anything until it has measured."""
    cfg = control.config
    def value(name: str) -> object:
        return getattr(cfg.dream, name) if hasattr(cfg.dream, name) else getattr(cfg, name)

    matches = [sum(value(k) == v for k, v in rung.items()) for rung in rungs]
    return max(range(len(rungs)), key=lambda i: (matches[i], -i))


def ladder_for(kind: str) -> tuple[list[dict[str, object]], int]:
    """(rungs, starting rung) for a dream source of `kind` ("student" or "gradient")."""
    ladder = QUALITY_LADDERS[kind]
    rungs: list[dict[str, object]] = list(ladder["rungs"])  # type: ignore[call-overload]
    return rungs, int(ladder["start"])  # type: ignore[call-overload]


@dataclass
class _State:
    level: int
    cost: dict[int, float] = field(default_factory=dict)  # rung -> dream seconds per frame
    failed_at: dict[int, float] = field(default_factory=dict)  # rung -> when it fell behind
    changes: int = 0
    history: list[tuple[float, int]] = field(default_factory=list)  # (seconds, rung)


class QualityController:
    """Moves `control`'s settings along `kind`'s ladder to keep `pace()` frames per second.

    Call `observe(frames, dream_seconds)` with running totals (frames out, dream seconds of all
    workers), as often as you like; a decision is taken every `period` seconds.
    """

    def __init__(self, control: Control, kind: str, pace: Callable[[], float | None], workers: int,
                 *, period: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.control, self.kind, self.pace, self.workers = control, kind, pace, max(1, workers)
        self.period, self.clock = period, clock
        self.rungs, _ = ladder_for(kind)
        self._state = _State(level=nearest_rung(self.rungs, control))
        self._lock = threading.Lock()
        self._began = clock()
        self._mark: tuple[float, int, float] | None = None  # (time, frames, dream seconds)

    @property
    def level(self) -> int:
        return self._state.level

    def switch(self, kind: str) -> None:
        """Another kind of dream source took over (a layer with or without a student): its
        ladder, from its start."""
        with self._lock:
            self.kind = kind
            self.rungs, start = ladder_for(kind)
            self._state = _State(level=start)
            self._mark = None
        self._apply(start)

    def follow(self, pipeline: Any, kind: str) -> None:
        """`observe` a running pipeline (its frames out and dream time so far): call it per frame."""
        if kind != self.kind:
            self.switch(kind)
        self.observe(pipeline.report.frames_out, pipeline.dream_seconds())

    def observe(self, frames: int, dream_seconds: float) -> int | None:
        """Record the running totals; the new rung when this call changed it, else None."""
        now = self.clock()
        with self._lock:
            if self._mark is None:
                self._mark = (now, frames, dream_seconds)
                return None
            then, frames0, dream0 = self._mark
            if now - then < self.period:
                return None
            pace = self.pace()
            self._mark = (now, frames, dream_seconds)
            if not pace:
                return None
            window = Window(now - then, frames - frames0, dream_seconds - dream0, self.workers, pace)
            new = self._decide(window, now)
        if new is not None:
            self._apply(new)
        return new

    def _decide(self, w: Window, now: float) -> int | None:
        s = self._state
        if w.frames > 0:
            cost = w.dream_seconds / w.frames
            s.cost[s.level] = cost if s.level not in s.cost else 0.5 * (s.cost[s.level] + cost)
        if w.fps < _DOWN_PACE * w.pace and (w.busy > 0.5 or w.frames == 0):  # behind, the dream is why
            s.failed_at[s.level] = now
            return s.level - 1 if s.level > 0 else None
        up = s.level + 1
        if up >= len(self.rungs) or now - s.failed_at.get(up, -1e9) < _RETRY_AFTER:
            return None
        if s.level not in s.cost:
            return None
        next_cost = s.cost.get(up, s.cost[s.level] * _UP_COST)
        busy_then = w.pace * next_cost / self.workers  # share of the workers' time at the pace
        return up if busy_then <= _UP_MARGIN else None

    def _apply(self, level: int) -> None:
        with self._lock:
            s = self._state
            if level != s.level:
                s.changes += 1
            s.level = level
            s.history.append((round(self.clock() - self._began, 1), level))
            del s.history[:-200]
        self.control.set_quality(**self.rungs[level])

    def state(self) -> dict[str, Any]:
        """For reports and the overlay: the rung, its settings, the measured costs."""
        with self._lock:
            s = self._state
            return {
                "kind": self.kind, "level": s.level, "levels": len(self.rungs),
                "setting": dict(self.rungs[s.level]), "pace_fps": self.pace(),
                "ms_per_frame": {str(k): round(1000 * v, 1) for k, v in sorted(s.cost.items())},
                "changes": s.changes, "history": list(s.history),
            }

    def line(self) -> str:
        """One line for the window's overlay."""
        s = self.state()
        setting = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s["setting"].items())
        return f"quality {s['level'] + 1}/{s['levels']}: {setting}"
