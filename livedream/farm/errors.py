"""The farm's errors: one line each; the CLI prints them and exits with code 2 (or names the
failed files in its summary and exits with 1)."""

from __future__ import annotations

from livedream.errors import LivedreamError

__all__ = ["FarmError", "ChunkError", "ExecutorUnavailable"]


class FarmError(LivedreamError):
    """Something about a batch job that the user can fix or should know about."""


class ChunkError(FarmError):
    """A chunk could not be dreamed. `retryable` is False when trying again cannot help
    (the input itself is bad), True for failures that may pass (a crash, a full disk)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ExecutorUnavailable(FarmError):
    """The executor asked for cannot run here (e.g. Ray is not installed)."""
