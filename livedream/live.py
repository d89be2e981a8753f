"""Live mode: a source -> Pipeline(live=True) -> sinks, with stats, steering and a clean stop.

`run_live` runs until the source ends, `seconds` pass, the window is closed, `stop` is set or
Ctrl-C (SIGINT / SIGTERM, when called from the main thread). Shutdown is bounded (about 1.5 s
even with a dream in flight): the pipeline is stopped, the source closed, every sink closed, so a
recording is finalized, and the report is written (`report_path`, JSON) whatever ended the run.

Stats, logged every `stats_every` seconds on the "livedream.live" logger and shown in the
window: input fps (frames the source produced), output fps, dream ms per batch,
capture-to-sink latency p50 / p95, and frames dropped (by the source when nobody took them, and
by the pipeline's newest-only queues).
"""

from __future__ import annotations

import collections
import inspect
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import numpy as np

from livedream.config import VideoConfig
from livedream.control import Control
from livedream.dream import Dreamer
from livedream.errors import LivedreamError
from livedream.io.images import atomic_write
from livedream.io.live_sinks import RecordSink, WindowSink
from livedream.pipeline import Frame, Pipeline, StageError, build_dreamers

__all__ = ["LiveResult", "LiveStats", "run_live", "write_report"]

log = logging.getLogger("livedream.live")

SHUTDOWN_GRACE = 1.0  # seconds the pipeline gets to finish the frame in flight after a stop


@dataclass
class LiveResult:
    report: dict[str, Any]  # what `--report` holds
    stopped_by: str  # "source ended", "source failed", "seconds", "window", "stop", "interrupted",
    #                  "stage failed"
    failure: str | None = None  # one line, when the source or a stage failed
    sink_errors: list[str] = field(default_factory=list)  # a sink that could not close (recording)

    @property
    def interrupted(self) -> bool:
        return self.stopped_by == "interrupted"


class _Tap:
    """The source as the pipeline sees it: counts frames and the sequence numbers skipped
    (frames the source dropped); while paused, passes nothing on (and counts nothing)."""

    def __init__(self, source: Iterable[Frame]) -> None:
        self.source = source
        self.paused = False
        self.seen = 0  # frames that came out of the source
        self.gaps = 0  # sequence numbers skipped: frames dropped before they came out
        self._last: int | None = None

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        set_source = getattr(self.source, "set_paused", None)
        if set_source is not None:
            set_source(paused)

    @property
    def captured(self) -> int:
        return self.seen + self.gaps

    def __iter__(self) -> Iterator[Frame]:
        for frame in self.source:
            self.seen += 1
            if self.paused:
                self._last = None  # no gap counted across a pause
                continue
            if self._last is not None and frame.index > self._last + 1:
                self.gaps += frame.index - self._last - 1
            self._last = frame.index
            yield frame


class _LivePipeline(Pipeline):
    """Pipeline(live=True) that also keeps the newest dream batch durations for the live stats."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, live=True, **kwargs)
        self.dream_ms: collections.deque[float] = collections.deque(maxlen=2000)
        self.dreams = 0  # dream batches so far (the deque stops growing at its length)
        self.finished = False

    def _account(self, stage: str, seconds: float) -> None:
        super()._account(stage, seconds)
        if stage == "dream":
            self.dream_ms.append(1000 * seconds)
            self.dreams += 1

    def dropped(self) -> int:
        """Frames the pipeline dropped so far (its report adds the queues' only at the end)."""
        if self.finished:
            return self.report.dropped
        queues = [self.q_pre, *self.q_dream, self.q_post, self.q_sink]
        return self.report.dropped + sum(q.dropped for q in queues)


def _percentiles(values: Iterable[float]) -> dict[str, float]:
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
    """Rates and latencies of a live run: whole-run (`totals`) and since the previous `interval()`
    of the same reader (the log lines and the window's overlay each keep their own mark)."""

    def __init__(self, pipeline: _LivePipeline, tap: _Tap) -> None:
        self.pipeline, self.tap = pipeline, tap
        self.start = time.monotonic()
        self.end: float | None = None  # set when the run stops: the whole-run rates end there
        self._marks: dict[str, tuple[float, int, int, int]] = {}  # reader -> (time, captured, out, dreams)
        self._newest: dict[str, dict[str, Any]] = {}

    def totals(self) -> dict[str, Any]:
        p, seconds = self.pipeline, max(1e-9, (self.end or time.monotonic()) - self.start)
        source_drops, pipeline_drops = self.tap.gaps, p.dropped()
        return {
            "seconds": round(seconds, 2),
            "frames_captured": self.tap.captured, "frames_in": p.report.frames_in,
            "frames": p.report.frames_out,
            "fps_in": round(self.tap.captured / seconds, 2),
            "fps_out": round(p.report.frames_out / seconds, 2),
            "dream_ms": _percentiles(_tail(p.dream_ms, len(p.dream_ms))),
            "latency_ms": _percentiles(_tail(p.report.latencies_ms, len(p.report.latencies_ms))),
            "dropped": source_drops + pipeline_drops,
            "dropped_source": source_drops, "dropped_pipeline": pipeline_drops,
            "cold_starts": p.report.cold_starts,
        }

    def interval(self, reader: str = "log") -> dict[str, Any]:
        """Rates since `reader`'s previous call (since the start for its first)."""
        now, p = time.monotonic(), self.pipeline
        then, captured0, out0, dreams0 = self._marks.get(reader, (self.start, 0, 0, 0))
        captured, out, dreams = self.tap.captured, p.report.frames_out, p.dreams
        dt = max(1e-9, now - then)
        self._marks[reader] = (now, captured, out, dreams)
        newest = self._newest[reader] = {
            "fps_in": (captured - captured0) / dt, "fps_out": (out - out0) / dt,
            "dream_ms": _percentiles(_tail(p.dream_ms, min(dreams - dreams0, len(p.dream_ms))))["p50"],
            "latency_ms": _percentiles(_tail(p.report.latencies_ms, out - out0)),
            "dropped": self.tap.gaps + p.dropped(),
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
        return [
            f"in {s['fps_in']:.1f} / out {s['fps_out']:.1f} fps   dream {s['dream_ms']:.0f} ms",
            f"latency p50 {lat['p50']:.0f} / p95 {lat['p95']:.0f} ms   dropped {s['dropped']}",
            f"layer {params['layer'] or 'default'}  iters {params['iters']}  "
            f"strength {params['strength']:.1f}",
        ]


class _StopOnSignal:
    """While active (main thread only), SIGINT / SIGTERM set `event` instead of raising, so the
    shutdown runs to its end (a recording is finalized); a second one only says to wait. A signal
    the process inherited as ignored stays ignored."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.signalled: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:  # e.g. `cmd &` in a script: left ignored
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signalled is None:
            self.signalled = signum
            self.event.set()
        else:
            log.warning("stopping, please wait (finishing the outputs)")

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def run_live(source: Iterable[Frame], sinks: list[Any], cfg: VideoConfig, *,
             dreamers: list[Dreamer] | None = None, control: Control | None = None,
             window: WindowSink | None = None, seconds: float | None = None,
             stop: threading.Event | None = None, report_path: str | None = None,
             stats_every: float = 5.0, info: dict[str, Any] | None = None,
             on_stats: Callable[[dict[str, Any]], None] | None = None) -> LiveResult:
    """Dream `source` live into `sinks` until it ends or is stopped; see the module docstring.

    Owns `source`, `sinks` and `window` from here on: all are closed before this returns.
    `window`: a WindowSink, ticked from this (the calling) thread; its keys steer `control`.
    `stop`: set it from another thread to end the run. `info`: extra fields for the report.
    Raises a LivedreamError only before the run starts (e.g. a model that cannot load).
    """
    stop = stop or threading.Event()
    control = control or Control(cfg)
    tap = _Tap(source)
    all_sinks = [*([window] if window is not None else []), *sinks]
    # A generator's close() fails while another thread runs it: it just stops being iterated.
    close_source = None if inspect.isgenerator(source) else getattr(source, "close", None)
    try:
        dreamers = dreamers or build_dreamers(control.config)
        pipeline = _LivePipeline(tap, all_sinks, control.config, dreamers, control=control)
    except BaseException:
        _close_all(all_sinks)
        if close_source is not None:
            close_source()
        raise
    stats = LiveStats(pipeline, tap)
    if window is not None:
        window.on_quit = stop.set
        window.on_pause = tap.set_paused
        window.stats = stats.overlay
    errors: list[StageError] = []

    def run() -> None:
        try:
            pipeline.run()
        except StageError as e:
            errors.append(e)
        finally:
            pipeline.finished = True

    runner = threading.Thread(target=run, name="livedream-live", daemon=True)
    stopped_by = "source ended"
    with _StopOnSignal(stop) as signals:
        runner.start()
        deadline = None if seconds is None else stats.start + seconds
        next_stats = stats.start + stats_every
        try:
            while runner.is_alive():
                if window is not None:
                    if not window.tick():
                        stopped_by = "window"
                        break
                else:
                    runner.join(timeout=0.05)
                now = time.monotonic()
                if stop.is_set():
                    stopped_by = "interrupted" if signals.signalled else "stop"
                    break
                if deadline is not None and now >= deadline:
                    stopped_by = "seconds"
                    break
                if now >= next_stats:
                    next_stats = now + stats_every
                    s = stats.interval()
                    log.info("live: %s", stats.line(s))
                    if on_stats is not None:
                        on_stats(s)
        except KeyboardInterrupt:  # a Ctrl-C that came before the handler was installed
            stopped_by = "interrupted"
        stats.end = time.monotonic()
        # -- shutdown: bounded, whatever ended the run ------------------------------------------
        pipeline.stop()
        if close_source is not None:
            close_source()  # a source blocked waiting on a device returns now
        runner.join(timeout=SHUTDOWN_GRACE)
        if runner.is_alive():
            log.warning("a dream was still running at shutdown; not waiting for it")
        pipeline.report.interrupted = stopped_by == "interrupted"
        sink_errors = _close_all(all_sinks)

    failure = getattr(source, "failure", None)
    message = None
    if errors:
        stopped_by, message = "stage failed", str(errors[0])
    elif failure is not None and stopped_by == "source ended":
        stopped_by, message = "source failed", str(failure)
    report = {**pipeline.report.as_dict(), **stats.totals(), "stopped_by": stopped_by,
              "interrupted": stopped_by == "interrupted", "failure": message,
              "sink_errors": sink_errors, "parameters": control.params(), **(info or {})}
    report["recording"] = _recording(all_sinks)
    if report_path:
        write_report(report_path, report)
    log.info("live: stopped (%s) after %.1f s: %s", stopped_by, report["seconds"],
             LiveStats.line(report))
    return LiveResult(report, stopped_by, message, sink_errors)


def _close_all(closables: list[Any]) -> list[str]:
    """Close each (the recording is finalized here); one line per failure."""
    errors = []
    for item in closables:
        close = getattr(item, "close", None)
        if close is None:
            continue
        try:
            close()
        except LivedreamError as e:
            errors.append(str(e))
        except Exception as e:  # noqa: BLE001 - a sink's failure to close must not hide the others
            errors.append(f"{type(item).__name__}: {e}")
    return errors


def _recording(sinks: list[Any]) -> dict[str, Any] | None:
    for sink in sinks:
        if isinstance(sink, RecordSink):
            return {"path": sink.path, "frames": sink.count, "dropped": sink.dropped,
                    "error": None if sink.error is None else str(sink.error)}
    return None


def write_report(path: str, report: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps(report, indent=2) + "\n").encode())
