"""Tiny test clips generated in code with PyAV: moving pictures, optional sine-tone audio.

Every clip is a few kilobytes and takes milliseconds to make, so tests can create the exact
media they need (odd sizes, variable frame rate, PCM audio...) in a tmp folder.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["make_clip", "make_tone", "clip_pts", "clip_time_base", "picture", "SAMPLE_RATE"]

SAMPLE_RATE = 44100
TONE_HZ = 440.0

# Frame lengths of a variable-frame-rate clip, in nominal frames, repeated: 1, 1, 2, 1, 3, ...
_VFR_STEPS = (1, 1, 2, 1, 3, 1, 1, 2)


def clip_time_base(fps: int, vfr: bool) -> Fraction:
    """The video time base of a clip: one tick per frame, or milliseconds when irregular."""
    return Fraction(1, 1000) if vfr else Fraction(1, fps)


def clip_pts(frames: int, fps: int, vfr: bool = False) -> list[int]:
    """The pts of each frame of a clip, in `clip_time_base(fps, vfr)` units, and its end."""
    if not vfr:
        return list(range(frames + 1))
    pts, now = [], 0
    for i in range(frames + 1):
        pts.append(round(now * 1000 / fps))
        now += _VFR_STEPS[i % len(_VFR_STEPS)]
    return pts


def picture(index: int, width: int, height: int, moving: bool = True) -> np.ndarray:
    """An RGB frame: a diagonal gradient and a bright square, both shifted 2 px per frame."""
    shift = 2 * index if moving else 0
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[..., 0] = (x + shift) * 255 // max(width, 1)
    rgb[..., 1] = (y + shift // 2) * 255 // max(height, 1)
    rgb[..., 2] = ((x + y + shift) * 4) % 256
    side = max(4, min(width, height) // 4)
    left, top = shift % max(width - side, 1), (shift // 2) % max(height - side, 1)
    rgb[top:top + side, left:left + side] = 255
    return rgb


def make_clip(path: str | Path, *, width: int = 64, height: int = 48, frames: int = 30,
              fps: int = 30, audio: bool = True, audio_codec: str = "aac", vfr: bool = False,
              moving: bool = True, options: dict[str, str] | None = None) -> Path:
    """Write a clip (container from the extension) and return its path.

    H.264 video, yuv420p, or yuv444p when a side is odd (4:2:0 cannot store odd sizes).
    With `audio`, a sine tone as long as the video, in `audio_codec` ("aac", "pcm_s16le"...).
    With `vfr`, frames last 1, 1, 2, 1, 3... nominal frames (see `clip_pts`).
    `options` go to the muxer, e.g. {"movflags": "faststart"}.
    """
    path = Path(path)
    time_base = clip_time_base(fps, vfr)
    pts = clip_pts(frames, fps, vfr)
    with av.open(str(path), "w", options=options or {}) as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "veryfast"})
        video.width, video.height = width, height
        video.pix_fmt = "yuv444p" if width % 2 or height % 2 else "yuv420p"
        video.time_base = video.codec_context.time_base = time_base
        sound = None
        if audio:
            sound = container.add_stream(audio_codec, rate=SAMPLE_RATE, layout="mono")
        # Packets get the gap to the next frame as duration (matched by pts: the encoder
        # reorders), or the header's duration would end before the last frame of a VFR clip.
        durations = {pts[i]: pts[i + 1] - pts[i] for i in range(frames)}
        for i in range(frames + 1):
            frame = None
            if i < frames:
                frame = av.VideoFrame.from_ndarray(picture(i, width, height, moving), "rgb24")
                frame.pts, frame.time_base = pts[i], time_base
            for packet in video.encode(frame):
                packet.duration = durations[packet.pts]
                container.mux(packet)
        if sound is not None:
            _write_tone(container, sound, float(pts[-1] * time_base))
    return path


def make_tone(path: str | Path, *, seconds: float = 1.0, codec: str = "aac") -> Path:
    """Write an audio-only file (a sine tone) and return its path."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=SAMPLE_RATE, layout="mono")
        _write_tone(container, stream, seconds)
    return path


def _write_tone(container: av.container.OutputContainer, stream: av.audio.AudioStream,
                seconds: float) -> None:
    samples = round(seconds * SAMPLE_RATE)
    t = np.arange(samples) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    chunk = 1024
    for start in range(0, samples, chunk):
        frame = av.AudioFrame.from_ndarray(tone[None, start:start + chunk], format="flt",
                                           layout="mono")
        frame.sample_rate, frame.pts = SAMPLE_RATE, start
        frame.time_base = Fraction(1, SAMPLE_RATE)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
