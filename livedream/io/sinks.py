"""Frame sinks: each takes dreamed `Frame`s in order with `write()`. `NullSink` is the shipped fake."""

from __future__ import annotations

from livedream.pipeline import Frame

__all__ = ["NullSink", "ListSink", "VideoFileSink"]


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

    def __init__(self, writer: object) -> None:
        self.writer = writer
        self.count = 0

    def write(self, frame: Frame) -> None:
        from livedream.io.video import VideoFrame

        assert frame.out is not None, f"frame {frame.index} reached the sink undreamed"
        self.writer.write(VideoFrame(frame.index, frame.pts, frame.time, frame.out))  # type: ignore[attr-defined]
        self.count += 1

    def close(self) -> None:
        pass
