"""`--record`: the dreamed frames of a live run encoded to a video file, in a thread of its own.

A pipeline sink (`write(frame)`, idempotent `close()`, a context manager) that never delays the
other outputs: if encoding falls behind, the oldest waiting frame is dropped (counted).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import weakref
from fractions import Fraction

import cv2
import numpy as np

from livedream.errors import LivedreamError, OutputError
from livedream.frame import Frame
from livedream.io.images import check_writable
from livedream.io.sinks import Closing
from livedream.io.video import VideoWriter

__all__ = ["RecordSink", "check_record_path", "RECORD_EXTENSIONS"]

log = logging.getLogger("livedream.live")

RECORD_EXTENSIONS = (".mp4", ".mkv", ".mov")

_END = object()


class RecordSink(Closing):
    """`--record`: the dreamed frames encoded to a video file (livedream.io.video.VideoWriter).

    Encoding runs in a thread of its own so it never delays the other outputs; if it falls behind,
    the oldest waiting frame is dropped (counted in `dropped`): frames keep their times, so the file
    stays in sync. `audio_source` (a file source) has its sound copied in; frame times are then
    the file's. Without it, times start at 0 with the first frame recorded. The file appears at
    `path` only when `close()` has finalized it (also after Ctrl-C).
    """

    def __init__(self, path: str, *, fps: float = 30.0, audio_source: str | None = None,
                 metadata: dict[str, str] | None = None, queue_size: int = 8) -> None:
        check_record_path(path)
        self.path, self.fps, self.audio_source, self.metadata = path, fps, audio_source, metadata
        self.count = 0  # frames encoded
        self.dropped = 0  # frames dropped because the encoder fell behind
        self.error: LivedreamError | None = None
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._writer: VideoWriter | None = None
        self._origin: float | None = None
        self._size: tuple[int, int] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="livedream-record", daemon=True)
        self._thread.start()
        _OPEN_RECORDINGS.add(self)  # finalized at exit even if nobody called close()

    def write(self, frame: Frame) -> None:
        if self.error is not None:
            raise self.error
        item = (frame.index, frame.time, frame.image)
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _work(self) -> None:
        """Encode until the end marker, then finish the file; a failure ends the thread (and is
        raised by the next `write` and by `close`)."""
        try:
            while (item := self._queue.get()) is not _END:
                self._encode(*item)  # type: ignore[misc]
            if self._writer is not None:
                self._writer.close()  # timestamps end at the last frame, plus one frame
        except LivedreamError as e:
            self.error = e
        except Exception as e:  # noqa: BLE001 - reported as a one-line OutputError
            self.error = OutputError(f"cannot record to {self.path}: {e}")
        if self.error is not None and self._writer is not None:
            self._writer.abort()

    def _encode(self, index: int, at: float, rgb: np.ndarray) -> None:
        if self._writer is None:
            height, width = rgb.shape[:2]
            self._size = (width, height)
            self._origin = 0.0 if self.audio_source else at
            self._writer = VideoWriter(self.path, width=width, height=height,
                                       time_base=Fraction(1, 1000), rate=self.fps,
                                       audio_source=self.audio_source, metadata=self.metadata)
        if (rgb.shape[1], rgb.shape[0]) != self._size:  # a camera that came back at another size
            rgb = cv2.resize(rgb, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(Frame(index=index, time=at - (self._origin or 0.0), rgb=rgb))
        self.count += 1

    def close(self) -> None:
        """Finish the file (waits for the frames queued); OutputError if it could not be written."""
        if not self._closed:
            self._closed = True
            if self._thread.is_alive():
                self._queue.put(_END)
            self._thread.join()
            _OPEN_RECORDINGS.discard(self)
            if self.error is not None:
                raise self.error


_OPEN_RECORDINGS: weakref.WeakSet[RecordSink] = weakref.WeakSet()


@atexit.register
def _finish_recordings() -> None:
    for sink in list(_OPEN_RECORDINGS):
        try:
            sink.close()
        except LivedreamError as e:
            log.error("%s", e)


def check_record_path(path: str) -> None:
    """OutputError (one line) when `path` cannot take a recording: extension, folder, rights."""
    if not path.lower().endswith(RECORD_EXTENSIONS):
        raise OutputError(f"cannot record to {path}: use a name ending in {', '.join(RECORD_EXTENSIONS)}")
    check_writable(path)
