"""uvicorn's HTTP/1.1 protocol (h11) with two rules against clients that hold connections hostage.

uvicorn answers 503 to everyone once `limit_concurrency` connections are open, and it has no
timeout for a request's headers: ~260 connections that send a request line and then stall
locked every route out, `/healthz` included, for as long as they stayed. So:

- a request's headers must be complete within `HEADER_TIMEOUT` seconds of the connection (or of
  the end of the previous response): a stalled one is closed;
- one client address holds at most `MAX_PER_CLIENT` connections; more are closed at once, so a
  single client cannot reach the server-wide limit.

(The request bodies have their own limits in the app: see `app._read_body`.) Why not another
server: hypercorn and granian have similar gaps for this load, and uvicorn's protocol class is a
supported extension point (`uvicorn.Config(http=...)`), so the rule lives in 60 lines here.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardedH11Protocol", "HEADER_TIMEOUT", "MAX_PER_CLIENT"]

HEADER_TIMEOUT = 10.0  # seconds for a request's headers to arrive
MAX_PER_CLIENT = 16  # open connections per client address (an MJPEG viewer holds one)


class GuardedH11Protocol(H11Protocol):
    header_timeout = HEADER_TIMEOUT
    max_per_client = MAX_PER_CLIENT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._host = self.client[0] if self.client else "?"
        counts = _counts(self.server_state)
        counts[self._host] += 1
        if counts[self._host] > self.max_per_client:
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        counts = _counts(self.server_state)
        counts[self._host] -= 1
        if counts[self._host] <= 0:
            del counts[self._host]
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # (more of) a request's headers still to come
            self._arm()
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's headers have the same time

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def _counts(server_state: Any) -> collections.Counter[str]:
    """Open connections per client address, shared by every connection of one server."""
    counts = getattr(server_state, "livedream_per_client", None)
    if counts is None:
        counts = server_state.livedream_per_client = collections.Counter()
    return counts
