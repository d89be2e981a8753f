"""Dream one chunk of a file into a video-only chunk file, timestamps exactly the source's.

The chunk is decoded from its warm-up start (`Chunk.warm`), dreamed through the usual pipeline
(so its warm start is settled when the first kept frame comes), and only the frames with
`begin <= pts < end` are written, each at its source pts; the last one lasts until `end`, where
the next chunk begins (or until the file's end). From `Chunk.fade` on, the frames cross-fade
linearly into the next chunk's own dream, dreamed here a second time (see livedream.farm.plan),
so the seam shows no jump from one dream to another. The chunk file appears atomically
(`VideoWriter`), so a chunk file that exists is whole.

Runs in worker processes: the model is built once per process and config (`cached_dreamers`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from livedream.config import VideoConfig
from livedream.errors import InputError, LivedreamError, OutputError
from livedream.farm.errors import ChunkError
from livedream.farm.faults import Fault
from livedream.farm.plan import Chunk
from livedream.frame import Frame, compose
from livedream.io.video import VideoReader, VideoWriter
from livedream.pipeline import DreamSource, Pipeline, StageError, build_dreamers

__all__ = ["ChunkTask", "ChunkResult", "dream_chunk", "cached_dreamers", "model_loads"]

_lock = threading.Lock()
_dreamers: dict[tuple[object, ...], list[DreamSource]] = {}
_loads = 0  # models built in this process, see model_loads()


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to dream one chunk; pickles (sent to worker processes)."""

    output: str  # the final output's file name, the job's key for this file, e.g. "clip.mp4"
    src: str  # input path, readable from the worker
    chunk: Chunk
    time_base: Fraction  # the source's video time base: unit of the chunk's pts
    fps: float  # nominal frame rate
    path: str  # where to write the chunk file (.mp4), readable by whoever joins
    cfg: VideoConfig
    threads: int | None = None  # intra-op threads in the worker (torch, OpenCV); None: as is
    crf: int = 18  # x264 quality of the chunk file, hence of the output (the writer's default)
    fault: Fault | None = None  # injected failure (tests, drills)

    @property
    def name(self) -> str:
        return f"chunk {self.chunk.index} of {self.output}"


@dataclass(frozen=True)
class ChunkResult:
    output: str
    index: int
    path: str  # the chunk file
    frames: int  # frames written
    first_pts: int  # pts of the first frame written (source time base)
    warmup: int  # frames dreamed before the first kept one
    faded: int  # frames cross-faded into the next chunk's dream
    stopped_early: str | None  # the decoder's reason when the input ended early
    seconds: float  # wall time in the worker
    pid: int  # the worker process
    model_loads: int  # models built in that process so far


def model_loads() -> int:
    """How many models this process has built for chunks (1 per config once warm)."""
    return _loads


def cached_dreamers(cfg: VideoConfig) -> list[DreamSource]:
    """One dream source per device of `cfg`, built on first use and kept for this process's life."""
    global _loads
    key = (cfg.dream, cfg.devices, cfg.student)  # a student, or gradient ascent on the same layer
    with _lock:
        if key not in _dreamers:
            _dreamers[key] = build_dreamers(cfg)
            _loads += len(_dreamers[key])
        return _dreamers[key]


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


class _Collect:
    """Keeps each frame's dream residual by pts: (h, w, 3) float32 at dream size."""

    def __init__(self) -> None:
        self.residuals: dict[int, np.ndarray] = {}

    def write(self, frame: Frame) -> None:
        assert frame.residual is not None and frame.pts is not None, f"frame {frame.index} undreamed"
        self.residuals[frame.pts] = frame.residual


class _ChunkSink:
    """Writes the frames at or after `begin` to the writer, at their source pts, cross-faded
    into `fade_to` (pts -> the next chunk's dream residual) where it has them; drops the
    warm-up frames."""

    def __init__(self, task: ChunkTask, writer: VideoWriter, fade_to: dict[int, np.ndarray]) -> None:
        self.task, self.writer = task, writer
        self.begin = task.chunk.begin
        self.fade_to = fade_to
        self.fade_step = {pts: j for j, pts in enumerate(sorted(fade_to))}
        self.count = 0
        self.skipped = 0
        self.faded = 0
        self.first_pts: int | None = None

    def write(self, frame: Frame) -> None:
        assert frame.out is not None and frame.pts is not None, f"frame {frame.index} undreamed"
        if self.begin is not None and frame.pts < self.begin:
            self.skipped += 1
            return
        if self.first_pts is None:
            self.first_pts = frame.pts
        out = frame.out
        other = self.fade_to.get(frame.pts)
        if other is not None and frame.residual is not None:
            # weights 1/n ... n/n: the last frame holds the next chunk's dream alone
            weight = (self.fade_step[frame.pts] + 1) / len(self.fade_to)
            residual = cv2.addWeighted(frame.residual, 1.0 - weight, other, weight, 0.0)
            out = compose(frame.rgb, residual, self.task.cfg.strength)
            self.faded += 1
        self.writer.write(Frame(index=self.count, time=frame.time, rgb=frame.rgb, pts=frame.pts, out=out))
        self.count += 1
        if self.task.fault is not None:
            self.task.fault.check(self.task.output, self.task.chunk.index, self.count)


def _frames(reader: VideoReader, task: ChunkTask, cut: bool, first: int | None
            ) -> Iterator[Frame]:
    """The reader's frames from pts `first` (None: all) up to the chunk's end, with their source
    pts back (a cut rebases them, and gives its first frame the cut's start: that frame comes
    before `first`, see plan.Chunk.seek, and is not kept)."""
    tb = task.time_base
    origin = round(reader.start / tb) if cut else 0  # as VideoReader._generate computes it
    end = task.chunk.end
    for vf in reader.frames():
        assert vf.pts is not None  # VideoReader's frames always have one
        pts = vf.pts + origin
        if end is not None and pts >= end:
            return
        if first is None or pts >= first:
            vf.pts, vf.time = pts, float(pts * tb)
            yield vf


def _open(task: ChunkTask, seek: int | None) -> VideoReader:
    return VideoReader(task.src, start=None if seek is None else float(seek * task.time_base))


def _next_dream(task: ChunkTask, dreamers: Sequence[DreamSource]) -> dict[int, np.ndarray]:
    """The next chunk's warm-up dream (pts -> residual), from `fade` to this chunk's end, as that
    chunk dreams it: decoded from the same point, dreamed from the same cold start."""
    chunk = task.chunk
    with _open(task, chunk.fade_seek) as reader:
        sink = _Collect()
        frames = _frames(reader, task, chunk.fade_seek is not None, chunk.fade)
        report = Pipeline(frames, [sink], task.cfg, dreamers).run()
    if report.interrupted:
        raise KeyboardInterrupt
    return sink.residuals


def dream_chunk(task: ChunkTask) -> ChunkResult:
    """Dream `task.chunk` into `task.path`. ChunkError (with `retryable`) when it cannot."""
    began = time.monotonic()
    try:
        _set_threads(task.threads)
        dreamers = cached_dreamers(task.cfg)
        chunk = task.chunk
        fade_to = _next_dream(task, dreamers) if chunk.fade is not None else {}
        with _open(task, chunk.seek) as reader:
            info = reader.info
            writer = VideoWriter(task.path, width=info.width, height=info.height,
                                 time_base=task.time_base, rate=task.fps, crf=task.crf)
            try:
                sink = _ChunkSink(task, writer, fade_to)
                frames = _frames(reader, task, chunk.seek is not None, chunk.warm)
                report = Pipeline(frames, [sink], task.cfg, dreamers).run()
                if report.interrupted:
                    raise KeyboardInterrupt
                _check(task, sink, reader)
                writer.end_time = _end_time(task, reader)
            except BaseException:
                writer.abort()
                raise
            writer.close()
    except StageError as error:
        retryable = not isinstance(error.__cause__, InputError)
        raise ChunkError(f"{task.name}: {error}", retryable=retryable) from error
    except InputError as error:
        raise ChunkError(f"{task.name}: {error}", retryable=False) from error
    except ChunkError:
        raise
    except LivedreamError as error:  # a config or model error: no; a full disk: may pass
        raise ChunkError(f"{task.name}: {error}", retryable=isinstance(error, OutputError)
                         ) from error
    assert sink.first_pts is not None  # _check
    return ChunkResult(task.output, chunk.index, task.path, sink.count, sink.first_pts,
                       sink.skipped, sink.faded, reader.stopped_early,
                       time.monotonic() - began, os.getpid(), _loads)


def _check(task: ChunkTask, sink: _ChunkSink, reader: VideoReader) -> None:
    if sink.count == 0 or sink.first_pts is None:
        reason = reader.stopped_early or "no frame in its range"
        raise ChunkError(f"{task.name}: nothing to dream ({reason})", retryable=False)
    begin = task.chunk.begin
    if begin is not None and sink.first_pts != begin:  # the seek landed late: frames lost
        raise ChunkError(f"{task.name}: its first frame is at pts {sink.first_pts}, expected "
                         f"{begin} (seeking in this file is not exact: dream it whole)", retryable=False)


def _end_time(task: ChunkTask, reader: VideoReader) -> float | None:
    """Where the chunk's last frame ends, in source seconds; None: one nominal frame (the input
    stopped early, or its end is unknown)."""
    if task.chunk.end is not None:
        return float(task.chunk.end * task.time_base)
    if reader.stopped_early is not None or reader.end_time is None:
        return None
    return reader.end_time + reader.start  # end_time counts from a cut's start
