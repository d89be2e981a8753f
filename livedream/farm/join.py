"""Join a file's chunk files into its output without re-encoding, with the source's sound.

The chunks' video packets are copied in order into one stream (the bytes unchanged), each at the
source pts its chunk recorded, and the source's audio is muxed once, alongside, exactly as
`livedream video` copies it (same code: `livedream.io.video`'s audio copy). The output is
written to a temporary name and renamed, so the final name never holds a half-written file.

Why timestamps are re-anchored: an .mp4 whose first frame is not at 0 stores that delay as an
edit list in milliseconds, so reading a chunk back can shift all its times by a fraction of a
millisecond. Each chunk's first frame is put back at the pts the worker wrote it at (recorded
in the manifest); the times inside a chunk are exact.

The writer's helpers (audio copy, temporary name, opening the container with its metadata, error
text) are shared on purpose: a joined file is written exactly as `livedream video` writes one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av

from livedream.errors import OutputError
from livedream.farm.errors import FarmError
from livedream.io.video import AudioCopy, open_output, os_reason, reserve_temp

__all__ = ["Part", "JoinResult", "join_chunks"]


@dataclass(frozen=True)
class Part:
    """One chunk file and the source pts of its first frame."""

    path: str
    first_pts: int  # in the source's video time base


@dataclass(frozen=True)
class JoinResult:
    output: str
    frames: int  # video packets copied (one frame each)
    duration: float  # where the video ends, in seconds (the last frame's end)


def _signature(stream: av.video.stream.VideoStream) -> tuple[object, ...]:
    ctx = stream.codec_context
    return (ctx.name, ctx.width, ctx.height, ctx.format.name if ctx.format else None,
            bytes(ctx.extradata or b""), stream.time_base)


def _timing(path: str, first_pts: int, end: Fraction | None, time_base: Fraction
            ) -> tuple[int, dict[int, int]]:
    """(smallest pts, pts -> duration) of a chunk file's video, in its stream's time base.

    Durations are the gaps between frames in display order, as the writer meant them: an .mp4
    stores decode-order gaps instead, which differ from them with B-frames and irregular timing,
    and would end the video elsewhere. The last frame lasts until `end` (source seconds: where
    the next chunk begins, or the source's end; the chunk's first frame is at `first_pts` in
    `time_base`, the source's): the file's own stream duration is a decode-time sum, which can
    fall short of its last frame. Without `end`, a typical frame's length.
    """
    with av.open(path) as container:
        stream = container.streams.video[0]
        times = sorted(p.pts for p in container.demux(stream) if p.size and p.pts is not None)
        own = cast(Fraction, stream.time_base)  # a demuxed stream always has one
    if not times:
        raise FarmError(f"chunk file {os.path.basename(path)} holds no video packet")
    if end is not None:
        last = max(times[-1] + 1, times[0] + round((end - first_pts * time_base) / own))
    else:
        gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
        last = times[-1] + (gaps[len(gaps) // 2] if gaps else 1)
    return times[0], {t: after - t for t, after in zip(times, [*times[1:], last], strict=True)}


def _end_at(last: av.Packet, end: Fraction, first_dts: int) -> None:
    """Make the video end at `end` seconds: an .mp4 keeps no display time per frame, its video
    lasts from the first decode time to the last one plus the last packet's (in decode order)
    duration, so that duration says where the video ends, whichever frame the encoder put last."""
    assert last.dts is not None
    last.duration = max(1, round(end / last.time_base) - last.dts + first_dts)


def join_chunks(parts: Sequence[Part], dst: str | os.PathLike[str], *, source: str,
                time_base: Fraction, end: float | None = None,
                metadata: dict[str, str] | None = None) -> JoinResult:
    """Concatenate `parts` (in time order) into `dst`, muxing `source`'s audio once.

    `time_base`: the source's video time base (the output stream keeps it, as the writer does).
    `end`: where the source's video ends (seconds, from its headers, as `livedream video` ends
    its output), the last frame lasting until then; None: one typical frame after it starts.
    Raises FarmError when the chunks were encoded differently (they cannot be joined without
    re-encoding) and OutputError when `dst` cannot be written.
    """
    if not parts:
        raise FarmError(f"nothing to join into {os.fspath(dst)}")
    path = Path(dst)
    temp = reserve_temp(path)
    output: av.container.OutputContainer | None = None
    audio: AudioCopy | None = None
    try:
        output = open_output(temp, path, metadata or {})
        with av.open(parts[0].path) as first:
            template = first.streams.video[0]
            signature = _signature(template)
            video = output.add_stream_from_template(template)
        video.time_base = time_base
        with av.open(source) as probe:
            has_audio = bool(probe.streams.audio)
        if has_audio:
            audio = AudioCopy(Path(source), output, None, None)
        frames, video_end, last_dts = 0, 0.0, None
        first_dts: int | None = None
        held: av.Packet | None = None  # the newest packet, muxed when the next one comes
        # Each chunk ends where the next begins; the last where the source does.
        ends: list[Fraction | None] = [Fraction(p.first_pts) * time_base for p in parts[1:]]
        ends.append(None if end is None else Fraction(end))
        for k, part in enumerate(parts):
            low, durations = _timing(part.path, part.first_pts, ends[k], time_base)
            with av.open(part.path) as chunk:
                stream = chunk.streams.video[0]
                if _signature(stream) != signature:
                    raise FarmError(f"chunk {k} of {path.name} was encoded differently from chunk 0:"
                                    " cannot join without re-encoding")
                stream_time_base = cast(Fraction, stream.time_base)  # a demuxed stream always has one
                shift = round(Fraction(part.first_pts) * time_base / stream_time_base) - low
                for packet in chunk.demux(stream):
                    if packet.size == 0 or (packet.pts is None and packet.dts is None):
                        continue  # flush packets
                    if packet.pts is not None:
                        packet.duration = durations.get(packet.pts, packet.duration)
                        packet.pts += shift
                    if packet.dts is not None:
                        packet.dts += shift
                        # B-frame delay differs between chunks of irregular timing: keep the
                        # decode times increasing (they must stay <= pts, checked by the muxer).
                        if last_dts is not None and packet.dts <= last_dts:
                            packet.dts = last_dts + 1
                        last_dts = packet.dts
                    pts = packet.pts if packet.pts is not None else packet.dts
                    assert pts is not None  # untimed packets were skipped above
                    video_end = max(video_end, float((pts + (packet.duration or 0)) * packet.time_base))
                    if audio is not None:
                        audio.mux_until(float(pts * packet.time_base))
                    packet.stream = video
                    if first_dts is None:
                        first_dts = packet.dts
                    if held is not None:
                        output.mux(held)
                    held = packet
                    frames += 1
        if held is not None:
            if end is not None and held.dts is not None and first_dts is not None:
                _end_at(held, Fraction(end), first_dts)
                video_end = float(end)
            output.mux(held)
        if audio is not None:
            audio.finish(video_end)
            audio = None
        output.close()
        output = None
        os.replace(temp, path)
    except BaseException as error:
        for closable in (audio, output):
            if closable is not None:
                try:
                    closable.close()
                except (av.FFmpegError, OSError):
                    pass  # being deleted anyway
        temp.unlink(missing_ok=True)
        if isinstance(error, (av.FFmpegError, OSError)):
            raise OutputError(f"cannot write {path.name} ({os_reason(error)})") from error
        raise
    return JoinResult(str(path), frames, video_end)
