"""Frame sinks: each takes dreamed `Frame`s in order with `write()`. `NullSink` is the shipped fake."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from livedream.frame import Frame
from livedream.io.video import VideoWriter

__all__ = ["Closing", "NullSink", "ListSink", "VideoFileSink"]


class Closing:
    """The context manager protocol for a class with an idempotent `close()`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class NullSink:
    """Counts frames and throws them away (benchmarks, tests)."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, frame: Frame) -> None:
        self.count += 1

    def close(self) -> None:
        pass


class ListSink:
    """Keeps every frame (tests, small clips)."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def write(self, frame: Frame) -> None:
        self.frames.append(frame)

    def close(self) -> None:
        pass


class VideoFileSink:
    """Encodes the dreamed frames with an open `livedream.io.video.VideoWriter`, timestamps kept."""

    def __init__(self, writer: VideoWriter) -> None:
        self.writer = writer
        self.count = 0

    def write(self, frame: Frame) -> None:
        assert frame.out is not None, f"frame {frame.index} reached the sink undreamed"
        self.writer.write(frame)
        self.count += 1

    def close(self) -> None:
        pass
