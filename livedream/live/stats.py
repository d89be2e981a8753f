"""Rates and latencies of a live run: the whole run (`totals`) and since a reader's previous look
(`interval`: the log lines, the window's overlay and the app each keep their own mark)."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np

from livedream.pipeline import Pipeline

__all__ = ["LiveStats", "percentiles"]


class _Counted(Protocol):
    @property
    def captured(self) -> int: ...  # frames the source produced (taken or dropped)

    @property
    def gaps(self) -> int: ...  # frames the source dropped before anyone took them


def percentiles(values: Iterable[float]) -> dict[str, float]:
    arr = np.fromiter(values, dtype=np.float64)
    if arr.size == 0:
        return {"p50": 0.0, "p95": 0.0}
    return {"p50": round(float(np.percentile(arr, 50)), 1), "p95": round(float(np.percentile(arr, 95)), 1)}


def _tail(values: collections.deque[float], n: int) -> list[float]:
    """The newest `n` values of a deque another thread appends to."""
    for _ in range(3):
        try:
            items = list(values)
            return items[-n:] if n > 0 else []
        except RuntimeError:  # mutated while copied (only without the GIL): try again
            continue
    return []


class LiveStats:
    def __init__(self, pipeline: Pipeline, source: _Counted,
                 extra: Any = None) -> None:
        self.pipeline, self.source = pipeline, source
        self.extra = extra  # a callable -> lines for the overlay (the adaptive controller's state)
        self.start = time.monotonic()
        self.end: float | None = None  # set when the run stops: the whole-run rates end there
        self._marks: dict[str, tuple[float, int, int, int]] = {}  # reader -> (time, captured, out, dreams)
        self._newest: dict[str, dict[str, Any]] = {}

    def totals(self) -> dict[str, Any]:
        p, seconds = self.pipeline, max(1e-9, (self.end or time.monotonic()) - self.start)
        source_drops, pipeline_drops = self.source.gaps, p.dropped()
        return {
            "seconds": round(seconds, 2),
            "frames_captured": self.source.captured, "frames_in": p.report.frames_in,
            "frames": p.report.frames_out,
            "fps_in": round(self.source.captured / seconds, 2),
            "fps_out": round(p.report.frames_out / seconds, 2),
            "dream_ms": percentiles(_tail(p.dream_ms, len(p.dream_ms))),
            "latency_ms": percentiles(_tail(p.report.latencies_ms, len(p.report.latencies_ms))),
            "dropped": source_drops + pipeline_drops,
            "dropped_source": source_drops, "dropped_pipeline": pipeline_drops,
            "cold_starts": p.report.cold_starts,
        }

    def interval(self, reader: str = "log") -> dict[str, Any]:
        """Rates since `reader`'s previous call (since the start for its first)."""
        now, p = time.monotonic(), self.pipeline
        then, captured0, out0, dreams0 = self._marks.get(reader, (self.start, 0, 0, 0))
        captured, out, dreams = self.source.captured, p.report.frames_out, p.dreams
        dt = max(1e-9, now - then)
        self._marks[reader] = (now, captured, out, dreams)
        newest = self._newest[reader] = {
            "fps_in": (captured - captured0) / dt, "fps_out": (out - out0) / dt,
            "dream_ms": percentiles(_tail(p.dream_ms, min(dreams - dreams0, len(p.dream_ms))))["p50"],
            "latency_ms": percentiles(_tail(p.report.latencies_ms, out - out0)),
            "dropped": self.source.gaps + p.dropped(),
        }
        return newest

    @staticmethod
    def line(s: dict[str, Any]) -> str:
        lat, dream = s["latency_ms"], s["dream_ms"]
        dream = dream["p50"] if isinstance(dream, dict) else dream
        return (f"in {s['fps_in']:.1f} fps, out {s['fps_out']:.1f} fps, dream {dream:.0f} ms, "
                f"latency p50 {lat['p50']:.0f} / p95 {lat['p95']:.0f} ms, dropped {s['dropped']}")

    def overlay(self) -> list[str]:
        """Lines for the window: the numbers of the last second or so, the steerable parameters."""
        mark = self._marks.get("overlay")
        s = self._newest["overlay"] if mark and time.monotonic() - mark[0] < 1.0 else self.interval("overlay")
        params = self.pipeline.control.params()
        lat = s["latency_ms"]
        lines = [
            f"in {s['fps_in']:.1f} / out {s['fps_out']:.1f} fps   dream {s['dream_ms']:.0f} ms",
            f"latency p50 {lat['p50']:.0f} / p95 {lat['p95']:.0f} ms   dropped {s['dropped']}",
            f"layer {params['layer'] or 'default'}  iters {params['iters']}  "
            f"strength {params['strength']:.1f}",
        ]
        return lines + (list(self.extra()) if self.extra is not None else [])
