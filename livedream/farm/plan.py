"""Units of work: a whole file, or a long file cut into chunks at keyframes.

Planning reads packet headers only (PyAV demux, nothing decoded), so it takes a second even for
an hour of footage. Times are integer ticks of the source's video time base ("pts"), the
timestamps the reader yields and the writer keeps, so chunk ranges are exact: chunk k holds the
frames with `begin <= pts < end` and the ranges of a file's chunks tile its whole timeline; no
frame can fall between two chunks or into both.

Boundaries sit on keyframes (a chunk's decode starts cleanly there), at the keyframe nearest each
multiple of `chunk_seconds`. Each chunk after the first also has a warm-up start `warm`, the
frame `warmup` frames before `begin`: the chunk is dreamed from there (decoded from `seek`, a
little before the keyframe that frame needs), and the warm-up frames are dropped, so the warm
start (see livedream.temporal) has settled at the seam.

Settled, but not the same: warm-started dreams feed back on themselves, so two runs that started
at different frames keep different patterns (measured: a steady ~1.5 levels apart after 80 frames,
whatever the warm-up). So each chunk also cross-fades, over its last frames, into the next
chunk's dream: from `fade` (= the next chunk's `warm`) it dreams the next chunk's warm-up a second
time, exactly as the next chunk will (same frames, same cold start: same pixels), and blends into
it; at the seam the output continues that one dream.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
from dataclasses import dataclass
from fractions import Fraction

import av

from livedream.errors import InputError
from livedream.io.video import VideoReader

__all__ = ["Chunk", "FilePlan", "plan_file", "packet_times"]

# Decoding starts this many seconds before the keyframe a chunk needs: seeking in some formats
# (MPEG-TS) lands near, not on, the time asked for. The frames in between are decoded, not dreamed.
_SEEK_MARGIN = 1


@dataclass(frozen=True)
class Chunk:
    """One unit of work: the frames of a file with `begin <= pts < end`."""

    index: int  # 0, 1, 2 ... in time order
    begin: int | None  # first frame's pts (a keyframe); None: from the file's first frame
    end: int | None  # pts where the next chunk begins; None: to the file's end
    warm: int | None  # pts to start dreaming at; None: from the file's first frame
    seek: int | None  # pts to seek to before decoding up to `warm`; None: from the file's start
    fade: int | None  # pts where the cross-fade into the next chunk's dream starts; None: none
    fade_seek: int | None  # the next chunk's `seek`, to dream its warm-up the same way
    frames: int  # frames planned from the packet headers (an estimate: some packets decode to none)


@dataclass(frozen=True)
class FilePlan:
    """How one input file is cut; everything a worker needs besides the dream config."""

    src: str  # absolute path of the input
    time_base: Fraction  # unit of every pts here
    fps: float  # nominal frame rate (the writer's rate)
    duration: float  # seconds of video, from the headers
    width: int
    height: int
    has_audio: bool
    chunks: tuple[Chunk, ...]
    end: float | None = None  # where the video ends, source seconds, from the headers (None: unknown)

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.chunks)


def packet_times(path: str | os.PathLike[str]) -> tuple[list[int], list[int]]:
    """(sorted pts of every video packet that holds a frame, sorted pts of the keyframes).

    Packets are read, not decoded. Empty packets (AVI's "repeat the previous frame"), flush
    packets and packets without any timestamp are left out.
    """
    frames: list[int] = []
    keys: list[int] = []
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                pts = packet.pts if packet.pts is not None else packet.dts
                if packet.size == 0 or pts is None:
                    continue
                frames.append(pts)
                if packet.is_keyframe:
                    keys.append(pts)
    except (av.FFmpegError, IndexError, OSError) as error:
        raise InputError(f"cannot read the packets of {os.path.basename(path)} ({error})") from error
    frames.sort()
    keys.sort()
    return frames, keys


def plan_file(src: str | os.PathLike[str], *, chunk_seconds: float | None = 30.0,
              warmup: int = 16) -> FilePlan:
    """Check `src` (InputError when it is no readable video) and cut it into chunks.

    `chunk_seconds`: cut files longer than 1.5x this at keyframes; None or 0: one chunk.
    `warmup`: frames dreamed before each chunk's first one and dropped, and cross-faded at the
    end of the chunk before; 0: none (each chunk starts cold at its keyframe).
    """
    if chunk_seconds is not None and chunk_seconds < 0:
        raise InputError(f"chunk seconds must be >= 0, got {chunk_seconds:g}")
    if warmup < 0:
        raise InputError(f"warm-up must be >= 0 frames, got {warmup}")
    path = os.path.abspath(src)
    with VideoReader(path) as reader:  # opens, probes and decodes one frame: a bad file fails here
        info = reader.info
        video_end = None if reader.end_time is None else reader.end_time + reader.start
    times, keys = packet_times(path)
    boundaries: list[int] = []
    if chunk_seconds and times and info.duration > 1.5 * chunk_seconds:
        boundaries = _boundaries(times, keys, round(Fraction(chunk_seconds) / info.time_base))
    margin = round(Fraction(_SEEK_MARGIN) / info.time_base)
    edges: list[int | None] = [None, *boundaries, None]
    chunks = []
    for k in range(len(edges) - 1):
        begin, end = edges[k], edges[k + 1]
        lo = 0 if begin is None else bisect.bisect_left(times, begin)
        hi = len(times) if end is None else bisect.bisect_left(times, end)
        warm_index = max(0, lo - warmup)
        warm = None if begin is None or warm_index == 0 else times[warm_index]
        seek = None
        if warm is not None:  # well before the keyframe that decoding `warm` needs
            key = keys[max(0, bisect.bisect_right(keys, warm) - 1)] if keys else warm
            seek = min(key, warm) - margin
            seek = None if seek <= times[0] else seek
        chunks.append(Chunk(k, begin, end, warm, seek, None, None, hi - lo))
    for k in range(len(chunks) - 1):  # fade into the next one's dream, unless it is this one's
        this, after = chunks[k], chunks[k + 1]
        if after.warm is not None and after.warm != this.warm and after.warm != after.begin:
            chunks[k] = dataclasses.replace(this, fade=after.warm, fade_seek=after.seek)
    return FilePlan(path, info.time_base, info.fps, info.duration, info.width, info.height,
                    info.has_audio, tuple(chunks), video_end)


def _boundaries(times: list[int], keys: list[int], step: int) -> list[int]:
    """The keyframe nearest each multiple of `step` after the first frame, increasing, without
    repeats; never the first frame itself, never past the last."""
    first, last = times[0], times[-1]
    inner = [k for k in keys if first < k <= last]
    if not inner or step <= 0:
        return []
    found: list[int] = []
    target = first + step
    while target < last:
        i = bisect.bisect_left(inner, target)
        near = [inner[j] for j in (i - 1, i) if 0 <= j < len(inner)]
        best = min(near, key=lambda k: (abs(k - target), k))
        if not found or best > found[-1]:
            found.append(best)
        target += step
    return found
