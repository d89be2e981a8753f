"""The MJPEG stream over HTTP, for `livedream serve` and `livedream live --mjpeg` alike.

A `MjpegStream` is a live session's sink (`write`: the newest frame becomes JPEG bytes, once, and
only while someone watches) and the route behind `GET /stream.mjpg`: a `FrameHub` carries the
newest JPEG into the event loop, so any number of clients wait on an asyncio event instead of a
thread each; a slow client skips frames (it always gets the newest) and never holds anyone else
back. `on_viewers(+1 / -1)` hears of each client that comes and goes (the app's session dreams
only while someone watches).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from livedream.frame import Frame
from livedream.io.broadcast import Broadcast
from livedream.server.uploads import HTTPProblem

__all__ = ["FrameHub", "MjpegStream", "mjpeg_part", "BOUNDARY"]

BOUNDARY = "frame"


def mjpeg_part(jpeg: bytes) -> bytes:
    """One part of a multipart/x-mixed-replace stream."""
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return head.encode() + jpeg + b"\r\n"


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


class MjpegStream:
    """The stream's sink and its routes."""

    def __init__(self, *, quality: int = 85, max_viewers: int = 16,
                 on_viewers: Callable[[int], None] | None = None) -> None:
        self.broadcast = Broadcast(quality=quality)
        self.hub = FrameHub(self.broadcast)
        self.max_viewers = max_viewers
        self.on_viewers = on_viewers
        self.viewers = 0  # clients streaming now
        self.stopped: str | None = None  # why the stream stopped, once it has

    # -- sink side -----------------------------------------------------------------------------
    def write(self, frame: Frame) -> None:
        self.broadcast.write(frame)

    def close(self) -> None:
        """End every client's stream; safe to call twice."""
        self.hub.close()

    # -- HTTP side -----------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.hub.start(loop)

    def _watch(self, n: int) -> None:
        self.viewers += n  # on the event loop only
        if self.on_viewers is not None:
            self.on_viewers(n)

    async def respond(self, request: Request) -> Response:
        """`GET /stream.mjpg`: multipart JPEGs until the client leaves or the stream ends."""
        if self.stopped is not None or self.hub.closed:
            raise HTTPProblem(503, f"the live stream has stopped: {self.stopped or 'the source ended'}")
        if self.viewers >= self.max_viewers:
            raise HTTPProblem(503, f"{self.max_viewers} viewers already", {"Retry-After": "10"})
        self._watch(1)

        async def parts() -> AsyncIterator[bytes]:
            seq = 0
            try:
                while (got := await self.hub.next(seq)) is not None:
                    seq, jpeg = got
                    yield mjpeg_part(jpeg)
            finally:
                self._watch(-1)

        return StreamingResponse(parts(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def snapshot(self, request: Request) -> Response:
        """`GET /snapshot.jpg`: the newest frame (503 before the first)."""
        _, jpeg = self.broadcast.latest()
        if jpeg is None:
            raise HTTPProblem(503, "no frame yet: open /stream.mjpg first (the dream runs while watched)",
                              {"Retry-After": "1"})
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
