"""One live session: a source, through a gate, into `Pipeline(live=True)`, out to the sinks, on a
thread of its own; steered by a `Control`, measured by `LiveStats`. `livedream live` and
`livedream serve` both run their live dream as a `LiveSession`.

The gate passes the source's frames on while it is open: not paused (the window's space key) and,
for a session that needs viewers (the app's stream), watched by someone. A source that can pause
(cameras, files played like a camera) is paused meanwhile, so a camera is drained and a file's
clock stops; any other source is simply not read.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from livedream.adaptive import QualityController
from livedream.config import VideoConfig
from livedream.control import Control
from livedream.frame import Frame
from livedream.live.stats import LiveStats
from livedream.pipeline import DreamSource, Pipeline, Sink, StageError, dreamer_for

__all__ = ["Gate", "LiveSession"]

log = logging.getLogger("livedream.live")


class Gate:
    """The source as the pipeline sees it; counts the frames that came out of the source and the
    sequence numbers it skipped (frames it dropped)."""

    def __init__(self, source: Iterable[Frame], *, need_viewers: bool = False) -> None:
        self.source = source
        self.need_viewers = need_viewers
        self.paused = False
        self.viewers = 0
        self.seen = 0  # frames that came out of the source
        self.gaps = 0  # sequence numbers skipped: frames dropped before they came out
        self._last: int | None = None
        self._pausable = callable(getattr(source, "set_paused", None))
        self._cond = threading.Condition()
        self._closed = False
        self._apply()

    @property
    def captured(self) -> int:
        return self.seen + self.gaps

    @property
    def open(self) -> bool:
        return not self.paused and (self.viewers > 0 or not self.need_viewers)

    def set_paused(self, paused: bool) -> None:
        with self._cond:
            self.paused = paused
            self._cond.notify_all()
        self._apply()

    def add_viewers(self, n: int) -> None:
        with self._cond:
            self.viewers += n
            self._cond.notify_all()
        self._apply()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _apply(self) -> None:
        if self._pausable:
            self.source.set_paused(not self.open)  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[Frame]:
        it = iter(self.source)
        while True:
            if not self._pausable:
                with self._cond:
                    self._cond.wait_for(lambda: self.open or self._closed)
            if self._closed:
                return
            frame = next(it, None)
            if frame is None or self._closed:
                return
            self.seen += 1
            if not self.open:  # a paused camera still hands over what it had
                self._last = None  # no gap counted across a pause
                continue
            if self._last is not None and frame.index > self._last + 1:
                self.gaps += frame.index - self._last - 1
            self._last = frame.index
            yield frame


class LiveSession:
    """See the module docstring. `start()`, then `stop()`; `close()` also closes the source and the
    sinks (a recording is finalized there). `failure`: one line, once the source or a stage failed."""

    def __init__(self, source: Iterable[Frame], sinks: list[Sink], control: Control,
                 dreamers: Sequence[DreamSource], *, need_viewers: bool = False,
                 on_frame: Callable[[Frame], None] | None = None,
                 on_end: Callable[[], None] | None = None,
                 dreamer_for: Callable[[VideoConfig, str], DreamSource] = dreamer_for) -> None:
        self.source, self.sinks, self.control = source, sinks, control
        self.gate = Gate(source, need_viewers=need_viewers)
        self._on_frame = on_frame
        self._on_end = on_end  # called once the run has ended (the source ended, or failed)
        self.pipeline = Pipeline(self.gate, sinks, control, dreamers, live=True, on_frame=self._frame_out,
                                 dreamer_for=dreamer_for)
        # Adaptive quality keeps pace with the source: the frames it delivers per second.
        self.quality: QualityController | None = None
        if control.config.adaptive:
            self.quality = QualityController(control, self.pipeline.source_kind(), self._source_fps,
                                             workers=len(self.pipeline.dreamers))
        extra = None if self.quality is None else (lambda q=self.quality: [q.line()])
        self.stats = LiveStats(self.pipeline, self.gate, extra)
        self.errors: list[StageError] = []
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="livedream-live", daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def failure(self) -> str | None:
        if self.errors:
            return str(self.errors[0])
        failure = getattr(self.source, "failure", None)
        return None if failure is None else str(failure)

    def start(self) -> LiveSession:
        self.stats.start = time.monotonic()
        self._thread.start()
        return self

    def stop(self, grace: float = 1.0) -> bool:
        """Stop the pipeline and the source; wait up to `grace` s for the frame in flight. True
        when the pipeline has ended."""
        self.pipeline.stop()
        self.gate.close()
        close = None if inspect.isgenerator(self.source) else getattr(self.source, "close", None)
        if close is not None:
            close()  # a source blocked waiting on a device returns now
        self._thread.join(timeout=grace)
        return not self._thread.is_alive()

    def close(self, grace: float = 1.0) -> list[str]:
        """`stop()`, then close every sink; one line per sink that failed to close."""
        if not self.stop(grace):
            log.warning("a dream was still running at shutdown; not waiting for it")
        return close_all(self.sinks)

    def _frame_out(self, frame: Frame) -> None:
        if self.quality is not None:
            self.quality.follow(self.pipeline, self.pipeline.source_kind())
        if self._on_frame is not None:
            self._on_frame(frame)

    def _source_fps(self) -> float | None:
        """The rate the source delivers frames at: its nominal one if it has one, else measured."""
        nominal = getattr(self.source, "fps", None)
        if nominal:
            return float(nominal)
        seconds = time.monotonic() - self.stats.start
        return self.gate.captured / seconds if seconds > 1 else None

    def _run(self) -> None:
        try:
            self.pipeline.run()
        except StageError as e:
            self.errors.append(e)
            log.error("live: %s", e)
        finally:
            self.finished.set()
            if self._on_end is not None:
                self._on_end()


def close_all(closables: Iterable[Any]) -> list[str]:
    """Close each (a recording is finalized here); one line per failure."""
    from livedream.errors import LivedreamError

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
