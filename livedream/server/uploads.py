"""Uploaded images: the kind is read from the bytes (never from a name or header), the size from
the header before any pixel is decoded, then the pixels are decoded and checked.

Each failure is an `HTTPProblem` with the status to answer: 415 not an image we read, 413 too many
bytes or pixels, 400 an image that is damaged (e.g. a truncated JPEG).
"""

from __future__ import annotations

import numpy as np

from livedream.errors import InputError
from livedream.io.images import decode_image, header_size

__all__ = ["HTTPProblem", "sniff_image", "decode_upload"]

_MAGIC = (("jpeg", b"\xff\xd8\xff"), ("png", b"\x89PNG\r\n\x1a\n"), ("webp", b"RIFF"), ("bmp", b"BM"))


class HTTPProblem(Exception):
    """A request the server refuses: `status` and a one-line `message` for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def sniff_image(data: bytes) -> tuple[str, int, int]:
    """(kind, width, height) from the first bytes: jpeg, png, webp or bmp; 415 for anything else.
    The size is the header's (`livedream.io.images.header_size`); 400 when it cannot be read."""
    kind = next((k for k, magic in _MAGIC if data.startswith(magic)), None)
    if kind == "webp" and data[8:12] != b"WEBP":
        kind = None
    if kind is None:
        raise HTTPProblem(415, "not an image: send a JPEG, PNG, WebP or BMP file")
    size = header_size(data)
    if size is None:
        raise HTTPProblem(400, f"the {kind.upper()} is damaged or truncated: its header gives no size")
    return (kind, *size)


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
