"""Streaming video file decode and encode with PyAV: no subprocess, no temporary frame files.

`VideoReader` yields RGB frames with their timestamps; `VideoWriter` encodes them keeping those
timestamps (variable frame rate safe) and copies the source's audio alongside, so a dreamed file
has the timing, the duration and the sound of its input.

Time conventions, shared by both classes:

* Timing comes from timestamps, never from a frame count: some files (AVI "repeat the previous
  frame" packets, variable frame rate phones) hold far fewer frames than duration x rate.
* With a cut (`VideoReader(start=...)`), frames are rebased so the cut starts at 0; give the
  writer the same `audio_start` so the sound is rebased by the same amount and stays in sync.
* Frames come in display order with increasing timestamps, even from files whose container
  stores decode-order times (see `VideoReader._timed`); a frame without any timestamp gets one
  at the nominal rate, so `Frame.pts` from the reader is never None.
* Odd sizes: H.264 in 4:2:0 cannot store an odd width or height at all (its cropping works in
  2-pixel steps), so the writer pads the right / bottom edge by one replicated pixel. The output
  is then one pixel wider or taller than the input; frame count, timing and duration are kept.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import heapq
import itertools
import os
import warnings
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import cast

import av
import cv2
import numpy as np

from livedream.errors import InputError, OutputError
from livedream.frame import Frame
from livedream.io.files import create_temp

__all__ = ["VideoInfo", "VideoReader", "VideoWriter", "AudioCopy", "open_output",
           "reserve_temp", "os_reason"]

# Audio codecs that libavformat accepts in a container but that common players refuse there:
# FFmpeg muxes PCM into .mp4 (ISO "ipcm"), yet browsers, QuickTime and phones play no sound.
# Formats not listed here trust the muxer's own answer (avformat_query_codec).
_PLAYABLE_AUDIO = {"mp4": frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"})}

# Metadata keys that .mp4/.mov store natively (udta atoms); any other key needs the
# "use_metadata_tags" flag, or the muxer silently drops it.
_MOV_METADATA = frozenset({"title", "comment", "description", "artist", "album", "genre",
                           "copyright", "date", "composer", "encoder", "synopsis"})

# libavformat renders text files (.txt, .nfo, .diz...) as "ANSI art" video: not a video to us.
_TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})

# Timestamps are sorted over this many frames, see _timed(). Common encoders reorder by at
# most 2-4 frames (H.264 allows 16); each frame held costs a decoded picture of memory.
_REORDER = 8

# cv2.rotate codes for a counter-clockwise turn in degrees (VideoReader._upright).
_TURNS = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}

# Encoders that take a "crf" quality option; others keep their default rate control.
_CRF_ENCODERS = frozenset({"libx264", "libx264rgb", "libx265", "libvpx", "libvpx-vp9",
                           "libaom-av1", "libsvtav1"})


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, read from its headers (nothing decoded)."""

    width: int
    height: int
    fps: float  # average frame rate; nominal only, frames carry their own timestamps
    time_base: Fraction  # unit of Frame.pts
    duration: float  # seconds of video, from the container's timestamps, not from a frame count
    frames: int | None  # the container's frame (packet) count, or duration x fps; an estimate
    has_audio: bool
    codec: str  # e.g. "h264", "cinepak"
    # Degrees counter-clockwise (0, 90, 180, 270) that the reader turns frames by to show them
    # upright, from the stream's display matrix (a phone's portrait clip: 270, a quarter turn
    # clockwise); width and height are those of the upright frames.
    rotation: int = 0


# libav's log stays at PyAV's default (no Python callback). With a level set, PyAV routes every
# log line through a Python callback, and a frame-threaded decoder's worker logging while the main
# thread frees that decoder (holding the GIL) deadlocks the process: a test run hung here in
# avcodec_free_context. Errors still carry libav's error text ("Invalid data found ...").


def _reason(error: BaseException) -> str:
    """A one-line reason: libav's error text and its last error line, or the exception text.

    e.g. "Invalid argument; [aac] Unsupported channel layout"
    """
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    log = getattr(error, "log", None)  # (level, component, message) for libav errors
    if log and log[2].strip():
        text = f"{text}; [{log[1]}] {log[2].strip()}" if log[1] else f"{text}; {log[2]}"
    return " ".join(str(text).split())


def _tag_seconds(text: str | None) -> float | None:
    """Parse Matroska's per-stream "DURATION" tag ("00:00:29.600000000") into seconds."""
    try:
        hours, minutes, seconds = (text or "").split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


class VideoReader:
    """Decode the first video stream of a file, frame by frame, as RGB arrays.

    Opening checks the file (missing, empty, not a video, no decodable frame -> InputError) and
    decodes the first frame, so a bad input fails before any work is done. `frames()` then
    yields every frame of the selected range once.

    `start` / `duration` (seconds) select a range: the reader seeks to the keyframe before
    `start`, decodes up to it, and yields the frame showing at `start` with time 0, then the
    following frames rebased by `start`, up to `start + duration`.

    A decoding error or a truncated file ends the iteration early without raising: the frames
    decoded so far are kept and `stopped_early` says why and how far it got.

    Attributes: `info` (the whole file), `start` (source seconds that became time 0; 0.0 without
    a cut), `end_time` (where the selected video should end, in output seconds, for
    `VideoWriter(end_time=...)`; None if unknown), `stopped_early` (None, or a one-line reason
    once the iteration is over).
    """

    def __init__(self, path: str | os.PathLike[str], *, start: float | None = None,
                 duration: float | None = None) -> None:
        self.path = Path(path)
        self.stopped_early: str | None = None
        self._container = _open_input(self.path)
        self._frames: Generator[Frame] | None = None
        self._error: str | None = None  # libav's reason when decoding failed
        try:
            streams = self._container.streams.video
            if not streams:
                kinds: list[str] = sorted({s.type for s in self._container.streams}) or ["nothing"]
                raise InputError(
                    f"no video stream in {self.path.name} (found: {', '.join(kinds)})")
            self._stream = streams[0]
            if self._stream.codec_context.codec.canonical_name in _TEXT_CODECS:
                raise InputError(f"not a video file: {self.path.name} (text, not video)")
            self._stream.thread_type = "AUTO"  # decode on several cores
            self._file_start, self._file_end = self._extent()
            self.info = self._probe()
            self.start, self._cut_end = self._check_cut(start, duration)
            self._cut = start is not None
            # Where the selected video should end, from the headers or the cut, in output
            # seconds: give it to VideoWriter(end_time=). Only an explicit duration stops the
            # decoding there: some files' headers end before their last frame does.
            ends = [t for t in (self._file_end, self._cut_end) if t is not None]
            self.end_time: float | None = min(ends) - self.start if ends else None
            self._rotation = 0  # of the latest decoded frame, see _upright()
            self._frames = self._generate()
            first = next(self._frames, None)
            if first is None:
                reason = self.stopped_early or "the stream is empty"
                raise InputError(f"no video frame could be decoded from {self.path.name} "
                                 f"({reason})")
            if self._rotation:
                turned = self._rotation % 180 != 0
                self.info = dataclasses.replace(
                    self.info, rotation=self._rotation,
                    width=self.info.height if turned else self.info.width,
                    height=self.info.width if turned else self.info.height)
            self._first: Frame | None = first
        except BaseException:
            self.close()
            raise

    def _extent(self) -> tuple[float, float | None]:
        """(start, end) of the video stream in source seconds; end None when nobody knows it."""
        stream, container = self._stream, self._container
        time_base = cast(Fraction, stream.time_base)  # a demuxed stream always has one
        start = float(stream.start_time * time_base) if stream.start_time else 0.0
        if stream.duration:
            return start, start + float(stream.duration * time_base)
        tagged = _tag_seconds(stream.metadata.get("DURATION"))  # Matroska has no stream duration
        if tagged:
            return start, start + tagged
        if container.duration:  # may include a longer audio stream: the last resort
            first = (container.start_time or 0) / av.time_base
            return start, first + container.duration / av.time_base
        return start, None

    def _probe(self) -> VideoInfo:
        stream = self._stream
        time_base = cast(Fraction, stream.time_base)  # a demuxed stream always has one
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 30.0  # nothing known: a common rate, only used as nominal
        duration = 0.0 if self._file_end is None else self._file_end - self._file_start
        frames = stream.frames or (round(duration * fps) if duration else None)
        return VideoInfo(
            width=stream.codec_context.width, height=stream.codec_context.height, fps=fps,
            time_base=Fraction(time_base), duration=duration, frames=frames,
            has_audio=bool(self._container.streams.audio),
            codec=stream.codec_context.codec.canonical_name)

    def _check_cut(self, start: float | None, duration: float | None
                   ) -> tuple[float, float | None]:
        """Validate --start/--duration; return (start, end or None) in source seconds."""
        if start is not None and start < 0:
            raise InputError(f"start must be >= 0 s, got {start:g} s")
        if duration is not None and duration <= 0:
            raise InputError(f"duration must be > 0 s, got {duration:g} s")
        file_end = self._file_end
        if start is not None and file_end is not None and start >= file_end:
            raise InputError(f"start {start:.2f} s is past the end of {self.path.name} "
                             f"({file_end:.2f} s)")
        begin = start or 0.0
        return begin, None if duration is None else begin + duration

    def frames(self) -> Iterator[Frame]:
        """The frames of the selected range, in presentation order; can be iterated once."""
        if self._first is None or self._frames is None:
            raise RuntimeError("VideoReader.frames() can be iterated only once")
        first, self._first = self._first, None
        return itertools.chain([first], self._frames)

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """Raw decoded frames; a libav error ends the iteration and is kept in `self._error`."""
        if self._cut and self.start > 0:
            try:  # lands on the keyframe at or before start; frames() skips up to start
                offset = round(self.start / self.info.time_base)
                self._container.seek(offset, stream=self._stream, backward=True)
            except av.FFmpegError:
                pass  # unseekable file: decode from where it is and skip up to start
        try:
            for packet in self._container.demux(self._stream):
                yield from packet.decode()
        except av.FFmpegError as error:
            self._error = _reason(error)

    def _timed(self) -> Iterator[tuple[int, av.VideoFrame]]:
        """Decoded frames in display order, each with its presentation time in time_base units.

        Decoders output frames in display order, but some files carry decode-order times as pts
        (box.mp4 has B-frames and pts == dts), so the pts go back and forth. The n-th frame out
        of the decoder gets the n-th smallest timestamp, sorted over a window of _REORDER
        frames: for well-formed files this changes nothing.
        """
        nominal = max(1, round(1 / (self.info.fps * self.info.time_base)))
        times: list[int] = []  # a heap
        frames: deque[av.VideoFrame] = deque()
        last: int | None = None
        for frame in self._decoded():
            pts = frame.pts if frame.pts is not None else frame.dts
            if pts is None:  # no timestamp at all (raw streams): assume the nominal rate
                pts = 0 if last is None else last + nominal
            last = pts
            heapq.heappush(times, pts)
            frames.append(frame)
            if len(frames) > _REORDER:
                yield heapq.heappop(times), frames.popleft()
        while frames:
            yield heapq.heappop(times), frames.popleft()

    def _upright(self, frame: av.VideoFrame) -> np.ndarray:
        """The frame as RGB, turned as its display matrix says, as players (and FFmpeg's
        autorotate) show it: a phone's portrait clip is stored sideways with a -90 degree matrix.
        Only quarter turns; a mirroring matrix (rare) is not applied."""
        self._rotation = round(frame.rotation / 90) % 4 * 90  # counter-clockwise, 0..270
        rgb = frame.to_ndarray(format="rgb24")
        turn = _TURNS.get(self._rotation)
        return rgb if turn is None else cv2.rotate(rgb, turn)

    def _generate(self) -> Generator[Frame]:
        time_base = self.info.time_base
        half_frame = 0.5 / self.info.fps
        origin = round(self.start / time_base) if self._cut else 0  # in time_base units
        index, last_time = 0, None  # source seconds of the latest decoded frame
        pending: tuple[int, av.VideoFrame] | None = None
        reached_cut_end = False

        def make(pts: int, frame: av.VideoFrame) -> Frame:
            # The first frame of a cut starts it, even if it was decoded a little before or
            # after `start` (within half a frame, or the frame showing at `start`).
            pts = 0 if self._cut and index == 0 else pts - origin
            return Frame(index=index, time=float(pts * time_base), rgb=self._upright(frame),
                         pts=pts)

        for pts, frame in self._timed():
            time = float(pts * time_base)
            last_time = time
            # A frame belongs to the range when it shows there for more than half a frame.
            if self._cut_end is not None and time >= self._cut_end - half_frame:
                reached_cut_end = True
                break
            if self._cut and time < self.start + half_frame:
                pending = (pts, frame)  # the frame showing at start, so far
                continue
            if pending is not None:
                yield make(*pending)
                index += 1
                pending = None
            yield make(pts, frame)
            index += 1
        if pending is not None:
            yield make(*pending)
            index += 1

        at = f"{last_time:.2f} s" if last_time is not None else "the start"
        ends = [t for t in (self._file_end, self._cut_end) if t is not None]
        expected = min(ends) if ends else None
        if self._error is not None:
            self.stopped_early = (
                f"decoding stopped after {index} frames at {at} of {self.path.name}: "
                f"{self._error}")
        elif not reached_cut_end and expected is not None and last_time is not None:
            # A truncated file just ends early, without any error: compare with its headers.
            # Tolerance: audio or a long last frame may legitimately outlast the last frame.
            reached = last_time + 1 / self.info.fps
            if reached < expected - max(0.5, 2 / self.info.fps):
                self.stopped_early = (
                    f"{self.path.name} ends early: {index} frames up to {at}, its headers say "
                    f"{expected:.2f} s (truncated or damaged file?)")

    def close(self) -> None:
        """Release the file; safe to call more than once."""
        self._first = None
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _open_input(path: Path) -> av.container.InputContainer:
    """Open a media file for reading, or raise InputError with a one-line reason."""
    if not path.exists():
        raise InputError(f"input file not found: {path}")
    if not path.is_file():
        raise InputError(f"input is not a file: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"input file is empty: {path}")
    try:
        return av.open(str(path), metadata_errors="replace")
    except PermissionError:
        raise InputError(f"cannot read {path} (permission denied)") from None
    except av.FFmpegError as error:
        raise InputError(f"not a video file: {path.name} ({_reason(error)})") from error


class AudioCopy:
    """Carries the audio streams of a source file into the output while the video is written.

    Packets are copied unchanged when the output container holds their codec, and re-encoded to
    AAC (with a warning) when it does not. `[start, end)` (source seconds) cuts them, rebased so
    `start` becomes 0; `mux_until(t)` writes the packets that start before output time t.
    """

    def __init__(self, source: Path, output: av.container.OutputContainer,
                 start: float | None, end: float | None) -> None:
        self._input = _open_input(source)
        self._output = output
        self._start, self._end = start, end
        self._held: av.Packet[av.audio.AudioStream] | None = None
        self._tracks: dict[int, tuple[av.audio.AudioStream, bool]] = {}  # index -> (out, re-encode)
        self._done: set[int] = set()
        self._packets: Iterator[av.Packet[av.audio.AudioStream]] = iter(())
        try:
            for stream in self._input.streams.audio:
                track = self._add_track(stream, output, source.name)
                if track is not None:
                    self._tracks[stream.index] = track
        except BaseException:
            self.close()
            raise
        streams = [s for s in self._input.streams.audio if s.index in self._tracks]
        if streams:
            if start:
                try:  # the packet before start at the latest; earlier ones are skipped
                    self._input.seek(round(start * av.time_base), backward=True)
                except av.FFmpegError:
                    pass  # unseekable: read from the top, the cut still skips
            # audio streams only: their packets (PyAV types a demux of *streams as any stream's)
            self._packets = cast("Iterator[av.Packet[av.audio.AudioStream]]", self._input.demux(*streams))

    @staticmethod
    def _add_track(stream: av.audio.AudioStream, output: av.container.OutputContainer,
                   name: str) -> tuple[av.audio.AudioStream, bool] | None:
        codec = stream.codec_context.codec.canonical_name
        fits = _container_takes(output, codec)
        if fits:
            return output.add_stream_from_template(stream), False
        if not _container_takes(output, "aac"):
            warnings.warn(f"{codec} audio of {name} cannot go into a {output.format.name} file "
                          "and neither can AAC: the output has no sound", stacklevel=4)
            return None
        warnings.warn(f"{codec} audio of {name} does not play from a {output.format.name} file: "
                      "re-encoding it to AAC", stacklevel=4)
        # An unordered layout ("1 channels", from Matroska PCM) is not an encoder layout.
        layout = stream.layout.name
        if "channels" in layout:
            layout = "mono" if stream.layout.nb_channels == 1 else "stereo"
        return output.add_stream("aac", rate=stream.sample_rate, layout=layout), True

    def _next_packet(self) -> av.Packet[av.audio.AudioStream] | None:
        """The next audio packet inside the cut, or None at the end of the cut or of the file."""
        while len(self._done) < len(self._tracks):
            try:
                packet = next(self._packets, None)
            except av.FFmpegError:  # a damaged audio stream ends the sound, not the run
                packet = None
            if packet is None:
                return None
            if packet.size == 0 or (packet.pts is None and packet.dts is None):
                continue  # demuxer flush packets; untimed packets cannot be placed
            time = _seconds(packet)
            if self._start is not None and time < self._start:
                continue
            if self._end is not None and time >= self._end:
                self._done.add(packet.stream.index)
                continue
            return packet
        return None

    def mux_until(self, limit: float) -> None:
        """Write the packets that start before `limit` output seconds."""
        offset = self._start or 0.0
        while True:
            packet = self._held if self._held is not None else self._next_packet()
            self._held = None
            if packet is None:
                return
            if _seconds(packet) - offset >= limit:
                self._held = packet
                return
            self._write(packet, round(offset / packet.time_base))

    def _write(self, packet: av.Packet[av.audio.AudioStream], shift: int) -> None:
        out, reencode = self._tracks[packet.stream.index]
        if not reencode:
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = out
            self._output.mux(packet)
            return
        try:
            frames = packet.decode()
        except av.FFmpegError:
            return  # one damaged packet: a few ms of silence
        for frame in frames:
            if frame.pts is not None:
                frame.pts -= shift
            self._output.mux(out.encode(frame))

    def finish(self, limit: float) -> None:
        """Write what remains up to `limit` output seconds (the video's end) and flush."""
        self.mux_until(limit)
        for out, reencode in self._tracks.values():
            if reencode:
                self._output.mux(out.encode(None))
        self.close()

    def close(self) -> None:
        self._input.close()


def _seconds(packet: av.Packet) -> float:
    timestamp = packet.pts if packet.pts is not None else packet.dts
    assert timestamp is not None  # untimed packets are skipped (AudioCopy._next_packet)
    return float(timestamp * packet.time_base)


def _container_takes(output: av.container.OutputContainer, codec: str) -> bool:
    """Whether `codec` can be muxed into `output` and played from it (see _PLAYABLE_AUDIO)."""
    if codec not in output.supported_codecs:  # libavformat's answer (avformat_query_codec)
        return False
    playable = _PLAYABLE_AUDIO.get(output.format.name)
    return playable is None or codec in playable


def open_output(temp: Path, path: Path, metadata: dict[str, str]) -> av.container.OutputContainer:
    """Open `temp` (from `reserve_temp(path)`) for writing, in the format `path`'s extension
    names (the temp name keeps it), with `metadata` stored in a way the format keeps."""
    options = {}
    if path.suffix.lower() in (".mp4", ".m4v", ".mov") and set(metadata) - _MOV_METADATA:
        options["movflags"] = "use_metadata_tags"
    try:
        output = av.open(str(temp), "w", options=options)
    except ValueError:
        raise OutputError(f"unknown video format for {path.name}: use a name ending "
                          "in .mp4, .mkv or .mov") from None
    output.metadata.update(metadata)
    return output


def reserve_temp(path: Path) -> Path:
    """`files.create_temp(path)`, after checking the folder; OutputError saying why not."""
    folder = path.parent
    if path.is_dir():
        raise OutputError(f"output path is a folder, expected a file name: {path}")
    if not folder.exists():
        raise OutputError(f"output folder does not exist: {folder}")
    if not folder.is_dir():
        raise OutputError(f"output folder is not a folder: {folder}")
    try:
        return create_temp(path)
    except OSError as error:
        raise OutputError(f"cannot write in {folder} ({os_reason(error)})") from error


def os_reason(error: BaseException) -> str:
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    return _reason(error)


class VideoWriter:
    """Encode frames (`frame.image`: the dreamed picture, or the source's) to a video file,
    keeping their timestamps, with the source's audio.

    The file is written as `.<stem>.part-<host>-<pid>-<random><ext>` in the destination folder
    (see `files.create_temp`, which also removes those of killed writers) and renamed onto `path`
    by `close()`, so `path` never holds a half-written file; `abort()` (or any write error)
    removes it. `frame.pts` counts `time_base` units (give the reader's
    `info.time_base`); frames must come in presentation order.

    `end_time` (output seconds, e.g. `VideoReader.end_time`) is where the video ends: the last
    frame lasts until then. Set `writer.end_time = None` before `close()` when the run stopped
    early, so the last frame lasts one nominal frame; leaving the `with` block on an exception
    does that by itself (and keeps the partial file when at least one frame was written).
    """

    def __init__(self, path: str | os.PathLike[str], *, width: int, height: int,
                 time_base: Fraction, rate: Fraction | float, codec: str = "libx264",
                 pix_fmt: str = "yuv420p", crf: int = 18, speed: str = "veryfast",
                 audio_source: str | os.PathLike[str] | None = None,
                 audio_start: float | None = None, audio_end: float | None = None,
                 metadata: dict[str, str] | None = None, end_time: float | None = None) -> None:
        self.path = Path(path)
        self.width, self.height = width, height
        self.time_base = Fraction(time_base)
        self.end_time = end_time
        self.frames_written = 0
        self._rate = Fraction(rate).limit_denominator(1_000_000)
        self._closed = False
        self._pending: av.VideoFrame | None = None  # held back until its duration is known
        # pts -> duration, for the encoder's packets (looked up by their pts, optional in PyAV's types)
        self._durations: dict[int | None, int] = {}
        self._audio: AudioCopy | None = None
        self._output: av.container.OutputContainer | None = None
        self._temp = reserve_temp(self.path)
        try:
            self._open(codec, pix_fmt, crf, speed, metadata or {})
            if audio_source is not None:
                assert self._output is not None  # opened by _open()
                self._audio = AudioCopy(Path(audio_source), self._output, audio_start,
                                         audio_end)
        except BaseException as error:
            self.abort()
            if isinstance(error, (av.FFmpegError, OSError, ValueError)):
                raise OutputError(f"cannot write {self.path.name} ({os_reason(error)})"
                                  ) from error
            raise

    def _open(self, codec: str, pix_fmt: str, crf: int, speed: str,
              metadata: dict[str, str]) -> None:
        try:
            encoder = av.Codec(codec, "w")
        except ValueError:
            raise OutputError(f"no {codec!r} encoder in this FFmpeg build") from None
        if encoder.type != "video":
            raise OutputError(f"{codec!r} is a {encoder.type} encoder, expected a video one")
        self._output = open_output(self._temp, self.path, metadata)

        # Odd sizes: pad up to the chroma subsampling step (2 for yuv420p), see the module doc.
        video_format = av.VideoFormat(pix_fmt)
        step_w = 64 // video_format.chroma_width(64)
        step_h = 64 // video_format.chroma_height(64)
        self._pad = ((-self.height) % step_h, (-self.width) % step_w)
        self.encoded_size = (self.width + self._pad[1], self.height + self._pad[0])

        # x264's `veryfast` keeps encoding off the critical path of a real-time pipeline
        # (measured ~3x faster than `medium` here) at a somewhat larger file for the same crf.
        encoder_options = {"crf": str(crf)} if codec in _CRF_ENCODERS else {}
        if codec in ("libx264", "libx264rgb", "libx265"):
            encoder_options["preset"] = speed
        if codec in ("libx264", "libx264rgb") and _cpu_has_avx512():
            encoder_options["x264-params"] = "asm=AVX2"  # see _cpu_has_avx512
        # a video encoder (checked above) makes a video stream
        stream = cast("av.VideoStream",
                      self._output.add_stream(codec, rate=self._rate, options=encoder_options))
        stream.width, stream.height = self.encoded_size
        stream.pix_fmt = pix_fmt
        # Encode in the input's time base: output pts = input pts, rescaled only by the muxer.
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        self._video = stream

    def write(self, frame: Frame) -> None:
        """Encode `frame.image` at the frame's timestamp (and the audio up to it)."""
        if self._closed:
            raise RuntimeError("VideoWriter.write() after close() or abort()")
        rgb = frame.image
        expected = (self.height, self.width, 3)
        if rgb.shape != expected or rgb.dtype != np.uint8:
            raise ValueError(f"frame {frame.index} is {rgb.shape} {rgb.dtype}, "
                             f"expected {expected} uint8")
        pts = frame.pts if frame.pts is not None else round(frame.time / self.time_base)
        if self._pending is not None and pts <= _pts(self._pending):
            pts = _pts(self._pending) + 1  # encoders and muxers need strictly increasing pts
        if any(self._pad):
            rgb = np.pad(rgb, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        av_frame = _to_av_frame(np.ascontiguousarray(rgb), self._video.pix_fmt)
        av_frame.pts, av_frame.time_base = pts, self.time_base
        try:
            if self._pending is not None:
                self._encode(self._pending, pts - _pts(self._pending))
            self._pending = av_frame
            if self._audio is not None:
                self._audio.mux_until(float(pts * self.time_base))
        except (av.FFmpegError, OSError) as error:
            self._fail(error)
        self.frames_written += 1

    def _encode(self, frame: av.VideoFrame | None, duration: int = 0) -> None:
        """Encode `frame` (None: flush) and mux its packets with their real durations.

        libx264 drops frame durations and the muxers take the last packet's duration as the
        end of the stream, so each packet gets the gap to the next frame's pts, matched by pts
        (the encoder reorders frames).
        """
        assert self._output is not None  # opened in __init__
        if frame is not None:
            self._durations[_pts(frame)] = duration
        for packet in self._video.encode(frame):
            packet.duration = self._durations.pop(packet.pts, packet.duration)
            self._output.mux(packet)

    def _end_pts(self, last: int) -> int:
        if self.end_time is not None:
            end = round(self.end_time / self.time_base)
            if end > last:
                return end
        return last + max(1, round(1 / (self._rate * self.time_base)))  # one nominal frame

    def close(self) -> None:
        """Finish the file and move it onto `path`; OutputError if that fails."""
        if self._closed:
            return
        if self._pending is None:
            self.abort()
            raise OutputError(f"no video frame was written to {self.path.name}")
        try:
            last = _pts(self._pending)
            end = self._end_pts(last)
            self._encode(self._pending, end - last)
            self._pending = None
            self._encode(None)
            if self._audio is not None:
                self._audio.finish(float(end * self.time_base))
            assert self._output is not None  # opened in __init__
            self._output.close()
            os.replace(self._temp, self.path)
        except (av.FFmpegError, OSError) as error:
            self._fail(error)
        self._closed = True

    def _fail(self, error: BaseException) -> None:
        self.abort()
        raise OutputError(f"cannot write {self.path.name} ({os_reason(error)})") from error

    def abort(self) -> None:
        """Drop the output: close everything and delete the temporary file. Safe to repeat."""
        self._closed = True
        self._pending = None
        for closable in (self._audio, self._output):
            if closable is not None:
                try:
                    closable.close()
                except (av.FFmpegError, OSError):
                    pass  # the file is being deleted anyway
        self._temp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._closed:
            return
        if exc_type is None:
            self.close()
        elif self.frames_written:  # interrupted: keep what was made, ending at the last frame
            self.end_time = None
            try:
                self.close()
            except OutputError:
                pass  # already cleaned up; the original exception is the one to report
        else:
            self.abort()


@functools.cache
def _cpu_has_avx512() -> bool:
    """True on CPUs with AVX-512, where libx264 must be kept to its AVX2 code.

    Its AVX-512 code makes the output differ from run to run: the same frames encoded 16 times
    in one process gave 4-10 different streams on an Intel Xeon (AVX-512, AMX), at 64x48 and at
    320x240 alike, with libav's or OpenCV's colour conversion and with threads=1; with `asm=AVX2`
    16 of 16 were identical. A dreamed file must be the same for the same input and seed, and
    x264's AVX-512 kernels gain little. (numpy's own CPU feature table: no torch in io.)"""
    try:
        from numpy._core._multiarray_umath import (  # type: ignore[import-not-found]  # no stub
            __cpu_features__ as features,
        )
    except ImportError:  # numpy < 2 or another layout: no cap, as before
        return False
    return bool(features.get("AVX512F")) and bool(features.get("AVX2"))


def _pts(frame: av.VideoFrame) -> int:
    """The pts of a frame made by `VideoWriter.write()`, which always sets one."""
    assert frame.pts is not None
    return frame.pts


def _to_av_frame(rgb: np.ndarray, pix_fmt: str | None) -> av.VideoFrame:
    """An RGB frame (even sizes) for the encoder. yuv420p is converted here by OpenCV: ~0.5 ms
    at 640x480 where libav's scaler, inside the encoder, takes ~5 ms (5% of a real-time frame's
    whole budget on 2 cores). Both use BT.601 limited range (our output is untagged, as before);
    OpenCV averages each 2x2 block for chroma where libav filters: mean difference < 1 level."""
    if pix_fmt == "yuv420p":
        yuv: np.ndarray = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
        return av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    return av.VideoFrame.from_ndarray(rgb, format="rgb24")
