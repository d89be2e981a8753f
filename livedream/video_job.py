"""One video file dreamed into another: reader -> pipeline -> writer, sound kept.

The output is written to a temp file and renamed at the end; an interrupted or failed run
still finalizes what was dreamed into a playable file, and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from livedream.adaptive import QualityController
from livedream.config import VideoConfig
from livedream.control import Control
from livedream.errors import InputError
from livedream.frame import Frame
from livedream.io.sinks import VideoFileSink
from livedream.io.sources import VideoFileSource
from livedream.io.video import VideoInfo, VideoReader, VideoWriter
from livedream.pipeline import DreamSource, Pipeline, PipelineReport, StageError
from livedream.progress import progress_bar

__all__ = ["VideoResult", "dream_video"]


@dataclass
class VideoResult:
    output: str
    info: VideoInfo
    frames: int  # frames written
    report: PipelineReport
    stopped_early: str | None = None  # the input ended before its end (truncated, decode error)
    interrupted: bool = False  # Ctrl-C: the output holds what was dreamed until then
    failed: StageError | None = None  # a stage failed: the output holds what was dreamed
    quality: dict[str, object] | None = None  # the adaptive controller's state (with --fps-target)


def dream_video(src: str, dst: str, cfg: VideoConfig, dreamers: Sequence[DreamSource], *,
                start: float | None = None, duration: float | None = None,
                metadata: dict[str, str] | None = None, progress: bool = True,
                stop_hook: Callable[[Pipeline], None] | None = None) -> VideoResult:
    """Dream `src` into `dst`. Raises InputError when nothing can be made; else a VideoResult."""
    with VideoReader(src, start=start, duration=duration) as reader:
        info = reader.info
        audio_end = None if duration is None else (start or 0.0) + duration
        # An exception anywhere in the block (a Ctrl-C or SIGTERM outside pipeline.run(), which
        # catches them) still finalizes what was written, or removes the temp file (__exit__).
        with VideoWriter(
            dst, width=info.width, height=info.height, time_base=info.time_base, rate=info.fps,
            audio_source=src if info.has_audio else None, audio_start=start, audio_end=audio_end,
            metadata=metadata, end_time=reader.end_time,
        ) as writer:
            sink = VideoFileSink(writer)
            expected = info.frames
            if reader.end_time is not None and info.fps > 0:  # a cut: about end_time * fps frames
                expected = round(reader.end_time * info.fps)
            bar = progress_bar(expected, "frames", enabled=progress)
            control = Control(cfg)
            quality: QualityController | None = None

            def frame_out(_frame: Frame) -> None:
                bar.update()
                if quality is not None:
                    quality.follow(pipeline, pipeline.source_kind())

            pipeline = Pipeline(VideoFileSource(reader), [sink], control, dreamers, on_frame=frame_out)
            if cfg.adaptive and cfg.fps_target:  # a file has no pace of its own: only with a target
                target = cfg.fps_target
                quality = QualityController(control, pipeline.source_kind(), lambda: target,
                                            workers=len(pipeline.dreamers))
            if stop_hook is not None:
                stop_hook(pipeline)
            failed: StageError | None = None
            try:
                report = pipeline.run()
            except StageError as e:
                failed, report = e, pipeline.report
            finally:
                bar.close()
            if sink.count == 0:
                writer.abort()
                if failed is not None:
                    raise failed
                reason = reader.stopped_early or "no frame could be decoded"
                raise InputError(f"nothing to dream in {src}: {reason}")
            complete = failed is None and not report.interrupted and reader.stopped_early is None
            if not complete:
                writer.end_time = None  # the last frame lasts one frame, the audio stops there
            writer.close()
            return VideoResult(dst, info, sink.count, report, reader.stopped_early, report.interrupted,
                               failed, None if quality is None else quality.state())
