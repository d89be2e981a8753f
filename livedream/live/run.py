"""`run_live`: a live session in the foreground until the source ends, `seconds` pass, the window
is closed, `stop` is set or Ctrl-C (SIGINT / SIGTERM, when called from the main thread).

Shutdown is bounded (about 1.5 s even with a dream in flight): the pipeline is stopped, the
source closed, every sink closed, so a recording is finalized, and the report is written
(`report_path`, JSON) whatever ended the run. Stats are logged every `stats_every` seconds on
the "livedream.live" logger and shown in the window.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from livedream.config import VideoConfig
from livedream.control import Control
from livedream.frame import Frame
from livedream.io.images import atomic_write
from livedream.io.record import RecordSink
from livedream.io.window import WindowSink
from livedream.live.session import LiveSession, close_all
from livedream.live.stats import LiveStats
from livedream.pipeline import DreamSource, Sink, build_dreamers

__all__ = ["LiveResult", "run_live", "write_report", "SHUTDOWN_GRACE"]

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


def run_live(source: Iterable[Frame], sinks: list[Sink], cfg: VideoConfig | Control, *,
             dreamers: Sequence[DreamSource] | None = None, window: WindowSink | None = None,
             seconds: float | None = None, stop: threading.Event | None = None,
             report_path: str | None = None, stats_every: float = 5.0,
             info: dict[str, Any] | None = None,
             on_stats: Callable[[dict[str, Any]], None] | None = None) -> LiveResult:
    """Dream `source` live into `sinks` until it ends or is stopped; see the module docstring.

    Owns `source`, `sinks` and `window` from here on: all are closed before this returns.
    `window`: ticked from this (the calling) thread. `cfg`: a Control to steer the run by (the
    window's keys, the app). `stop`: set it from another thread to end the run. `info`: extra
    fields for the report. Raises a LivedreamError only before the run starts (e.g. a model that
    cannot load).
    """
    stop = stop or threading.Event()
    control = cfg if isinstance(cfg, Control) else Control(cfg)
    all_sinks: list[Any] = [*([window] if window is not None else []), *sinks]
    try:
        session = LiveSession(source, all_sinks, control, dreamers or build_dreamers(control.config))
    except BaseException:
        close_all([*all_sinks, source])
        raise
    if window is not None:
        window.on_quit = stop.set
        window.on_pause = session.gate.set_paused
        window.stats = session.stats.overlay
    stopped_by = "source ended"
    with _StopOnSignal(stop) as signals:
        session.start()
        stats = session.stats
        deadline = None if seconds is None else stats.start + seconds
        next_stats = stats.start + stats_every
        try:
            while session.running:
                if window is not None:
                    if not window.tick():
                        stopped_by = "window"
                        break
                else:
                    session.finished.wait(timeout=0.05)
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
        session.pipeline.report.interrupted = stopped_by == "interrupted"
        sink_errors = session.close(SHUTDOWN_GRACE)

    failure, message = session.failure, None
    if session.errors:
        stopped_by, message = "stage failed", failure
    elif failure is not None and stopped_by == "source ended":
        stopped_by, message = "source failed", failure
    report = {**session.pipeline.report.as_dict(), **stats.totals(), "stopped_by": stopped_by,
              "interrupted": stopped_by == "interrupted", "failure": message,
              "sink_errors": sink_errors, "parameters": control.params(),
              "quality": None if session.quality is None else session.quality.state(), **(info or {})}
    report["recording"] = _recording(all_sinks)
    if report_path:
        write_report(report_path, report)
    log.info("live: stopped (%s) after %.1f s: %s", stopped_by, report["seconds"], LiveStats.line(report))
    return LiveResult(report, stopped_by, message, sink_errors)


def _recording(sinks: list[Any]) -> dict[str, Any] | None:
    for sink in sinks:
        if isinstance(sink, RecordSink):
            return {"path": sink.path, "frames": sink.count, "dropped": sink.dropped,
                    "error": None if sink.error is None else str(sink.error)}
    return None


def write_report(path: str, report: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps(report, indent=2) + "\n").encode())
