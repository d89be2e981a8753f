"""The inline executor: runs each chunk task in the calling process, one at a time.

No worker processes, so no start-up cost and tracebacks stay local: for tests, debugging, and
small jobs from a notebook. Same outcomes as the other executors (a failing task is reported to
the driver, which retries it or not); Ctrl-C reaches the driver directly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from livedream.farm.chunk import ChunkTask, dream_chunk
from livedream.farm.executor import ClosingExecutor, Outcome, describe

__all__ = ["InlineExecutor"]


class InlineExecutor(ClosingExecutor):
    name = "inline"
    capacity = 1

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads  # intra-op threads for the tasks; None: leave the process's
        self._tasks: deque[ChunkTask] = deque()

    def submit(self, task: ChunkTask) -> None:
        self._tasks.append(task)

    def next_outcome(self, timeout: float) -> Outcome | None:
        if not self._tasks:
            return None
        task = self._tasks.popleft()
        sent = replace(task, threads=self.threads) if self.threads is not None else task
        try:
            return Outcome(task, result=dream_chunk(sent))
        except Exception as error:  # noqa: BLE001 - reported to the driver, which decides
            message, retryable = describe(error)
            return Outcome(task, error=message, retryable=retryable)

    def close(self) -> None:
        self._tasks.clear()

