"""What the job driver needs from an executor: run chunk tasks somewhere, report each as it ends.

Two executors: `LocalExecutor` (processes on this machine) and `RayExecutor` (a Ray cluster). The
driver (`livedream.farm.job`) keeps at most `capacity` tasks submitted, and handles retries,
the manifest and the joins the same way for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from livedream.errors import InputError
from livedream.farm.chunk import ChunkResult, ChunkTask
from livedream.farm.errors import ChunkError

__all__ = ["Executor", "ClosingExecutor", "Outcome", "describe"]


@dataclass(frozen=True)
class Outcome:
    """How one submitted task ended: `result`, or `error` (one line) and whether to retry."""

    task: ChunkTask
    result: ChunkResult | None = None
    error: str | None = None
    retryable: bool = True


class Executor(Protocol):
    name: str
    capacity: int  # tasks to keep submitted

    def submit(self, task: ChunkTask) -> None:
        """Start `task` (at most `capacity` at once)."""

    def next_outcome(self, timeout: float) -> Outcome | None:
        """The next task to end, waiting up to `timeout` s; None if none ended by then."""

    def close(self) -> None:
        """Stop everything (tasks still running are abandoned). Safe to call twice."""

    def __enter__(self) -> Executor: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class ClosingExecutor:
    """Base of the executors: `with executor:` closes it at the end, however the block ends."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def describe(error: BaseException) -> tuple[str, bool]:
    """(one-line message, retryable) for an exception raised by a chunk task."""
    if isinstance(error, ChunkError):
        return str(error), error.retryable
    text = str(error).splitlines()[0] if str(error) else ""
    if isinstance(error, InputError):
        return text, False
    return f"{type(error).__name__}: {text}" if text else type(error).__name__, True
