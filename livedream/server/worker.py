"""The dream worker: one thread, a bounded queue of jobs in front of it, futures for the answers.

`submit` never blocks: when the queue is full it raises `Busy` with a Retry-After estimate, so
the backlog is bounded by `queue_size` and an HTTP handler can answer 503 at once. The worker
never touches a socket: a slow client only delays its own answer.
"""

from __future__ import annotations

import collections
import math
import queue
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["Busy", "DreamWorker"]


class Busy(Exception):
    """The queue is full; try again in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"busy: try again in {retry_after} s")
        self.retry_after = retry_after


class DreamWorker:
    """Runs submitted callables one at a time, in order, on its own thread. A context manager."""

    def __init__(self, queue_size: int = 4, name: str = "livedream-dream-worker") -> None:
        self.capacity = queue_size
        self._q: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._durations: collections.deque[float] = collections.deque(maxlen=50)
        self._lock = threading.Lock()
        self.running = False
        self.counts = {"done": 0, "failed": 0, "rejected": 0, "cancelled": 0}

    def __enter__(self) -> DreamWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def close(self) -> None:
        """Stop after the running job; jobs still queued are cancelled. Safe to call twice."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        while True:
            try:
                _, fut = self._q.get_nowait()
            except queue.Empty:
                break
            fut.cancel()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def queued(self) -> int:
        return self._q.qsize()

    def check_room(self) -> None:
        """Raise Busy (counted) when a job submitted now would be refused."""
        if self._q.full():
            with self._lock:
                self.counts["rejected"] += 1
            raise Busy(self.retry_after())

    def retry_after(self) -> int:
        """Seconds until the queue has probably drained: queued jobs x the median job time."""
        with self._lock:
            typical = statistics.median(self._durations) if self._durations else 1.0
        return max(1, min(60, math.ceil((self.queued + 1) * typical)))

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Queue `fn`; its Future gets the result or the exception. Raises Busy when full."""
        fut: Future[Any] = Future()
        if self._stop.is_set():
            raise Busy(5)
        try:
            self._q.put_nowait((fn, fut))
        except queue.Full:
            with self._lock:
                self.counts["rejected"] += 1
            raise Busy(self.retry_after()) from None
        return fut

    def stats(self) -> dict[str, object]:
        with self._lock:
            times = list(self._durations)
            counts = dict(self.counts)
        return {
            **counts, "queued": self.queued, "capacity": self.capacity, "running": self.running,
            "ms_p50": round(1000 * statistics.median(times), 1) if times else None,
            "ms_last": round(1000 * times[-1], 1) if times else None,
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                fn, fut = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            if not fut.set_running_or_notify_cancel():  # the client went away while queued
                with self._lock:
                    self.counts["cancelled"] += 1
                continue
            self.running = True
            t = time.perf_counter()
            try:
                result = fn()
            except BaseException as e:  # noqa: BLE001 - handed to the waiting request
                fut.set_exception(e)
                outcome = "failed"
            else:
                fut.set_result(result)
                outcome = "done"
            finally:
                self.running = False
            with self._lock:
                self.counts[outcome] += 1
                if outcome == "done":
                    self._durations.append(time.perf_counter() - t)
