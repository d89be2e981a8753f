"""Uploaded images: the kind is read from the bytes (never from a name or header), the size from
the header before any pixel is decoded, then the pixels are decoded and checked.

Each failure is an `HTTPProblem` with the status to answer: 415 not an image we read, 413 too many
bytes or pixels, 400 an image that is damaged (e.g. a truncated JPEG).
"""

from __future__ import annotations

import struct

import numpy as np

from livedream.errors import InputError
from livedream.io.images import decode_image

__all__ = ["HTTPProblem", "sniff_image", "decode_upload"]


class HTTPProblem(Exception):
    """A request the server refuses: `status` and a one-line `message` for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def sniff_image(data: bytes) -> tuple[str, int, int]:
    """(kind, width, height) from the first bytes: jpeg, png, webp or bmp; 415 for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        size = _jpeg_size(data)
        if size is None:
            raise HTTPProblem(400, "the JPEG is damaged or truncated: no frame header found")
        return ("jpeg", *size)
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return "png", w, h
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        return ("webp", *_webp_size(data))
    if data.startswith(b"BM") and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return "bmp", abs(w), abs(h)
    raise HTTPProblem(415, "not an image: send a JPEG, PNG, WebP or BMP file")


def decode_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) from uploaded bytes, checked; HTTPProblem otherwise."""
    kind, w, h = sniff_image(data)
    if w * h > max_pixels:
        raise HTTPProblem(413, f"image has {w}x{h} pixels, more than the limit of {max_pixels}")
    if w == 0 or h == 0:
        raise HTTPProblem(400, f"the {kind.upper()} header says {w}x{h} pixels")
    try:
        rgb = decode_image(data, "upload", max_pixels=max_pixels)
    except InputError:
        raise HTTPProblem(400, f"the {kind.upper()} is damaged or truncated and cannot be decoded") from None
    if rgb.shape[:2] not in ((h, w), (w, h)):  # (w, h): turned upright by its EXIF orientation
        raise HTTPProblem(400, f"decoded {rgb.shape[1]}x{rgb.shape[0]} pixels, header says {w}x{h}")
    return rgb


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first SOF marker, walking the segments; None if none is found."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        kind = data[pos + 1]
        if kind == 0xFF:  # fill byte
            pos += 1
            continue
        if kind in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                return None
            h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return w, h
        if kind in (0xDA, 0xD9) or length < 2:  # scan data or the end before any frame header
            return None
        pos += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    raise HTTPProblem(415, "unsupported WebP variant")
