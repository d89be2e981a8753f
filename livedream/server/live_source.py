"""The live stream's source, from `--source`: `livedream.io.camera.open_source` when that module is
there (cameras, URLs, files played like a camera, synthetic), else a small fallback that knows
`synthetic[:WxH[@FPS]]` and a video file (looped, paced at its frame rate).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable, Iterator

from livedream.errors import InputError
from livedream.io.sources import SyntheticSource
from livedream.pipeline import Frame

__all__ = ["open_live_source", "LoopingFile"]

_SYNTHETIC = re.compile(r"synthetic(?::(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?)?")


def open_live_source(spec: str) -> Iterable[Frame]:
    """The frames for `spec`, endless where the source allows; InputError (one line) if unusable."""
    try:
        from livedream.io.camera import open_source
    except ImportError:
        return _fallback(spec)
    return open_source(spec, loop=True)


def _fallback(spec: str) -> Iterable[Frame]:
    text = spec.strip()
    m = _SYNTHETIC.fullmatch(text)
    if m is not None:
        w, h, fps = int(m[1] or 640), int(m[2] or 480), float(m[3] or 30)
        if not (16 <= w <= 8192 and 16 <= h <= 8192 and 0 < fps <= 1000):
            raise InputError(f"synthetic source {w}x{h}@{fps:g} out of range (16..8192 px, 0..1000 fps)")
        return SyntheticSource(w, h, frames=sys.maxsize, fps=fps, paced=True)
    if not os.path.isfile(text):
        raise InputError(f"source not found: {text} (expected synthetic[:WxH[@FPS]] or a video file)")
    return LoopingFile(text)


class LoopingFile:
    """A video file played like a camera: at its frame rate, from the start again at the end."""

    def __init__(self, path: str) -> None:
        import av

        try:
            with av.open(path) as container:
                stream = container.streams.video[0]
                self.fps = float(stream.average_rate or 30)
        except (av.FFmpegError, IndexError) as e:
            raise InputError(f"cannot play {path}: {e}") from None
        self.path = path

    def __iter__(self) -> Iterator[Frame]:
        import av

        index, start = 0, time.monotonic()
        while True:
            with av.open(self.path) as container:
                count = 0
                for vf in container.decode(video=0):
                    count += 1
                    due = start + index / self.fps
                    delay = due - time.monotonic()
                    if delay < -1.0:  # paused (nobody watched): restart the clock here
                        start, delay = time.monotonic() - index / self.fps, 0.0
                    if delay > 0:
                        time.sleep(delay)
                    elif delay < -1.0 / self.fps:  # a little late: skip, as a camera would
                        index += 1
                        continue
                    yield Frame(index=index, time=index / self.fps, rgb=vf.to_ndarray(format="rgb24"))
                    index += 1
                if count == 0:
                    return

    def close(self) -> None:
        pass
