"""Still images in and out: checked decoding, atomic writes, parameters stored in the file."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from livedream.errors import InputError, OutputError
from livedream.io.files import create_temp

__all__ = [
    "IMAGE_EXTENSIONS", "MAX_PIXELS", "decode_image", "encode_image", "read_image",
    "write_image", "check_writable", "atomic_write", "read_params", "check_image_extension",
    "check_image_file",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_PIXELS = 100_000_000  # ~ 12k x 8k; above it a file is refused (decompression bombs)
_WRITE_FORMATS = {".jpg": ".jpg", ".jpeg": ".jpg", ".png": ".png"}


def decode_image(data: bytes, name: str = "image", *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Bytes of an image file -> RGB uint8 (H, W, 3); InputError for anything that is not one."""
    if not data:
        raise InputError(f"{name} is empty")
    buf = np.frombuffer(data, np.uint8)
    # Read the header's size before decoding the pixels, so a bomb is refused cheaply.
    header = _header_size(data)
    if header is not None and header[0] * header[1] > max_pixels:
        raise InputError(f"{name} has {header[0]}x{header[1]} pixels, more than {max_pixels}")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"{name} is not an image this tool can read")
    if bgr.shape[0] * bgr.shape[1] > max_pixels:
        raise InputError(f"{name} has {bgr.shape[1]}x{bgr.shape[0]} pixels, more than {max_pixels}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def read_image(path: str) -> np.ndarray:
    """RGB uint8 (H, W, 3) from a file."""
    if not os.path.exists(path):
        raise InputError(f"file not found: {path}")
    if os.path.isdir(path):
        raise InputError(f"{path} is a folder, expected an image file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from e
    return decode_image(data, path)


def encode_image(rgb: np.ndarray, ext: str, params: dict[str, str] | None = None,
                 *, quality: int = 95) -> bytes:
    """RGB uint8 (H, W, 3) -> file bytes for `ext` (.png or .jpg), `params` stored as text in it."""
    fmt = _WRITE_FORMATS.get(ext.lower())
    if fmt is None:
        raise OutputError(f"cannot write {ext!r} images; use .png or .jpg")
    flags = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == ".jpg" else []
    ok, buf = cv2.imencode(fmt, np.ascontiguousarray(rgb[:, :, ::-1]), flags)
    if not ok:
        raise OutputError(f"could not encode a {fmt} image")
    data = buf.tobytes()
    if params:
        text = "; ".join(f"{k}={v}" for k, v in params.items())
        data = _png_with_text(data, "livedream", text) if fmt == ".png" else _jpeg_with_comment(data, text)
    return data


def write_image(path: str, rgb: np.ndarray, params: dict[str, str] | None = None) -> None:
    """Write atomically: a temp file beside `path`, renamed onto it only when complete."""
    ext = os.path.splitext(path)[1]
    atomic_write(path, encode_image(rgb, ext, params))


def check_writable(path: str) -> None:
    """Fail early, before any work, when `path` cannot be created."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"output folder is not writable: {folder}")
    if os.path.isdir(path):
        raise OutputError(f"output {path} is a folder, expected a file name")


def check_image_extension(path: str) -> None:
    ext = os.path.splitext(path)[1].lower()
    if ext not in _WRITE_FORMATS:
        raise OutputError(f"cannot write {ext!r} images ({path}); use .png or .jpg")


def check_image_file(path: str) -> None:
    """Fail early on a file that is empty or whose first bytes are no image format we read."""
    if os.path.getsize(path) == 0:
        raise InputError(f"{path} is empty")
    if not cv2.haveImageReader(path):
        raise InputError(f"{path} is not an image this tool can read")


def atomic_write(path: str, data: bytes) -> None:
    try:
        tmp = create_temp(Path(os.path.abspath(path)))
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror}") from e
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {e.strerror}") from e
    except BaseException:
        os.unlink(tmp)
        raise


def read_params(data: bytes) -> str | None:
    """The parameter text stored by `encode_image` (PNG tEXt or JPEG COM), if any."""
    if data.startswith(b"\x89PNG"):
        pos = 8
        while pos + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[pos : pos + 8])
            body = data[pos + 8 : pos + 8 + length]
            if kind == b"tEXt" and body.startswith(b"livedream\0"):
                return body[len(b"livedream\0") :].decode("latin-1")
            pos += 12 + length
        return None
    marker = data.find(b"\xff\xfe")
    if data.startswith(b"\xff\xd8") and marker >= 0:
        (length,) = struct.unpack(">H", data[marker + 2 : marker + 4])
        return data[marker + 4 : marker + 2 + length].decode("utf-8", "replace")
    return None


def _png_with_text(png: bytes, key: str, text: str) -> bytes:
    body = key.encode("latin-1") + b"\0" + text.encode("latin-1", "replace")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + body) & 0xFFFFFFFF)
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR body, CRC
    return png[:end_of_ihdr] + chunk + png[end_of_ihdr:]


def _jpeg_with_comment(jpeg: bytes, text: str) -> bytes:
    body = text.encode("utf-8")[:65000]
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding, or None if not found."""
    if data.startswith(b"\x89PNG") and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"\xff\xd8"):
        pos = 2
        while pos + 9 < len(data):
            if data[pos] != 0xFF:
                return None
            kind = data[pos + 1]
            (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return w, h
            pos += 2 + length
    return None
