"""Adaptive quality: the controller climbs when the dream has time to spare, steps down when the
output falls behind, and does not keep retrying a rung that failed. A fake clock and made-up
costs: no dreaming here."""

from __future__ import annotations

import pytest

from livedream.adaptive import QualityController, ladder_for
from livedream.config import QUALITY_LADDERS, video_preset
from livedream.control import Control


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Run:
    """A pipeline in miniature: each rung costs `costs[rung]` dream seconds per frame, two workers,
    a source at `pace` fps; frames come out at min(pace, what the workers manage)."""

    def __init__(self, kind: str, costs: list[float], pace: float = 30.0) -> None:
        self.clock, self.pace, self.costs = Clock(), pace, costs
        self.control = Control(video_preset("realtime"))
        self.ctl = QualityController(self.control, kind, lambda: self.pace, workers=2, clock=self.clock)
        self.frames, self.dream, self.made = 0, 0.0, 0.0

    def seconds(self, n: float) -> None:
        for _ in range(int(n * 10)):  # in steps of 0.1 s
            cost = self.costs[self.ctl.level]
            fps = min(self.pace, 2 / cost)
            self.clock.now += 0.1
            self.made += fps * 0.1
            done = int(self.made) - self.frames  # whole frames out
            self.frames += done
            self.dream += done * cost
            self.ctl.observe(self.frames, self.dream)


def test_the_ladders_go_from_cheap_to_rich():
    for kind in QUALITY_LADDERS:
        rungs, start = ladder_for(kind)
        assert 0 <= start < len(rungs) >= 5
    student = ladder_for("student")[0]
    assert student[0]["student_scale"] < student[-1]["student_scale"] == 1.0
    assert student[-1]["refine_iters"] > 0 == student[0]["refine_iters"]
    gradient = ladder_for("gradient")[0]
    widths = [r["dream_width"] or 10_000 for r in gradient]
    assert widths == sorted(widths)


def test_climbs_while_there_is_time_to_spare_and_settles():
    costs = [0.005, 0.008, 0.012, 0.02, 0.03, 0.055, 0.09]  # 2 workers at 30 fps: 0.066 s per frame fits
    run = Run("student", costs)
    start = run.ctl.level
    assert run.control.version == 0  # nothing changes before it has measured
    run.seconds(40)
    assert run.ctl.level > start
    assert costs[run.ctl.level] * 30 / 2 <= 1.0  # keeps the pace where it settled
    assert run.control.config.student_scale == ladder_for("student")[0][run.ctl.level]["student_scale"]
    settled = run.ctl.level
    run.seconds(60)
    assert abs(run.ctl.level - settled) <= 1  # no runaway


def test_steps_down_when_the_output_falls_behind():
    costs = [0.01, 0.02, 0.03, 0.2, 0.3, 0.4, 0.5]
    run = Run("student", costs)
    run.ctl._apply(5)  # noqa: SLF001 - start far too high: 0.4 s per frame, 5 fps out of 30
    run.seconds(20)
    assert run.ctl.level <= 2
    state = run.ctl.state()
    assert state["changes"] >= 3 and state["level"] == run.ctl.level
    assert "quality" in run.ctl.line()


def test_a_slower_source_leaves_room_for_more_work():
    costs = [0.01, 0.015, 0.03, 0.05, 0.08, 0.12, 0.2]
    fast, slow = Run("gradient", costs, pace=30), Run("gradient", costs, pace=10)
    fast.seconds(60)
    slow.seconds(60)
    assert slow.ctl.level > fast.ctl.level
    assert slow.control.config.dream_width is None or (
        fast.control.config.dream_width is not None
        and slow.control.config.dream_width >= fast.control.config.dream_width)


@pytest.mark.parametrize("kind", ["student", "gradient"])
def test_every_rung_is_a_valid_config(kind):
    control = Control(video_preset("realtime"))
    for rung in ladder_for(kind)[0]:
        control.set_quality(**rung)
