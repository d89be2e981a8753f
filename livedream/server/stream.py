"""The live stream behind `/stream.mjpg`: source -> Pipeline(live) -> Broadcast -> HTTP clients.

- The source only runs while someone watches (`ViewerGate`): no viewer, no dreaming, no CPU.
- `FrameHub` carries the newest JPEG from the Broadcast's thread into the event loop, so any
  number of clients wait on an asyncio event instead of a thread each; a slow client skips frames
  (it always gets the newest) and never holds anyone else back.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import statistics
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from livedream.config import VideoConfig
from livedream.control import Control
from livedream.io.broadcast import Broadcast
from livedream.pipeline import Frame, Pipeline

__all__ = ["ViewerGate", "FrameHub", "LiveStream", "mjpeg_part", "BOUNDARY"]

log = logging.getLogger("livedream.server")

BOUNDARY = "frame"


def mjpeg_part(jpeg: bytes) -> bytes:
    """One part of a multipart/x-mixed-replace stream."""
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return head.encode() + jpeg + b"\r\n"


class ViewerGate:
    """Passes the source's frames on only while `viewers` > 0.

    A source with `set_paused` (the live sources of livedream.io.camera) is paused instead, so a
    camera is drained and a file's clock stops; any other iterable is simply not read.
    """

    def __init__(self, source: Iterable[Frame]) -> None:
        self.source = source
        self.viewers = 0
        self._pausable = callable(getattr(source, "set_paused", None))
        self._cond = threading.Condition()
        self._closed = False
        if self._pausable:
            source.set_paused(True)  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[Frame]:
        it = iter(self.source)
        while True:
            if not self._pausable:
                with self._cond:
                    self._cond.wait_for(lambda: self.viewers > 0 or self._closed)
            if self._closed:
                return
            frame = next(it, None)
            if frame is None or self._closed:
                return
            yield frame

    def add(self, n: int) -> None:
        with self._cond:
            self.viewers += n
            watched = self.viewers > 0
            self._cond.notify_all()
        if self._pausable:
            self.source.set_paused(not watched)  # type: ignore[attr-defined]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class FrameHub:
    """The Broadcast's newest JPEG, handed to asyncio waiters by one pump thread."""

    def __init__(self, broadcast: Broadcast) -> None:
        self.broadcast = broadcast
        self.latest: tuple[int, bytes] | None = None
        self.closed = False
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._pump, name="livedream-frame-hub", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """End every waiting client's stream; safe to call twice, from any thread."""
        self.closed = True
        self.broadcast.close()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop has just closed
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    async def next(self, after: int) -> tuple[int, bytes] | None:
        """The newest frame with a sequence number above `after`; None once closed."""
        while True:
            if self.latest is not None and self.latest[0] > after:
                return self.latest
            if self.closed:
                return None
            await self._event.wait()

    def _pump(self) -> None:
        seq = 0
        while not self.closed:
            got = self.broadcast.wait_next(seq, timeout=0.5)
            if got is None or self._loop is None:
                continue
            seq = got[0]
            try:
                self._loop.call_soon_threadsafe(self._publish, got)
            except RuntimeError:  # the loop is closed: the server has stopped
                return

    def _publish(self, frame: tuple[int, bytes]) -> None:
        self.latest = frame
        self._wake()

    def _wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()


class LiveStream:
    """Runs the live pipeline on its own thread while the server runs. A context manager."""

    def __init__(self, source: Iterable[Frame], spec: str, control: Control, dreamers: list[Any], *,
                 quality: int = 85) -> None:
        self.spec = spec
        self.source = source
        self.control = control
        self.broadcast = Broadcast(quality=quality)
        self.gate = ViewerGate(source)
        cfg: VideoConfig = control.config
        self.pipeline = Pipeline(self.gate, [self.broadcast], cfg, dreamers, live=True, control=control,
                                 on_frame=self._on_frame)
        self.hub = FrameHub(self.broadcast)
        self.error: str | None = None
        self._recent: collections.deque[tuple[float, float]] = collections.deque(maxlen=60)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="livedream-live", daemon=True)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.hub.start(loop)
        self._thread.start()

    def close(self) -> None:
        """Stop the pipeline, end the clients' streams, close the source. Safe to call twice."""
        self.pipeline.stop()
        self.gate.close()
        self.hub.close()
        close = getattr(self.source, "close", None)
        if callable(close):
            close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> LiveStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def use_dreamer(self, dreamer: Any) -> None:
        """Dream the stream with `dreamer` from the next frame on (e.g. the engine's, for a new layer)."""
        self.pipeline.dreamers[0] = dreamer

    def stats(self) -> dict[str, object]:
        with self._lock:
            recent = list(self._recent)
        span = recent[-1][0] - recent[0][0] if len(recent) > 1 else 0.0
        report = self.pipeline.report
        return {
            "source": self.spec, "running": self.running, "error": self.error,
            "viewers": self.gate.viewers, "frames": report.frames_out,
            "fps": round((len(recent) - 1) / span, 2) if span > 0 else 0.0,
            "latency_ms_p50": round(statistics.median(r[1] for r in recent), 1) if recent else None,
            "dropped_by_source": getattr(self.source, "dropped", getattr(self.source, "skipped", 0)),
        }

    def _on_frame(self, frame: Frame) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent.append((now, 1000 * (now - frame.captured)))

    def _run(self) -> None:
        try:
            self.pipeline.run()
        except Exception as e:  # noqa: BLE001 - reported in /api/stats and /healthz
            self.error = str(e)
            log.error("live stream stopped: %s", e)
        failure = getattr(self.source, "failure", None)
        if failure is not None and self.error is None:
            self.error = str(failure)
        self.hub.close()
