"""Still images in and out: checked decoding, atomic writes, parameters stored in the file."""

from __future__ import annotations

import contextlib
import os
import re
import struct
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from livedream.errors import InputError, OutputError
from livedream.io.files import create_temp

__all__ = [
    "IMAGE_EXTENSIONS", "MAX_PIXELS", "decode_image", "encode_image", "read_image",
    "write_image", "check_writable", "atomic_write", "read_params", "header_size",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_PIXELS = 100_000_000  # ~ 12k x 8k; above it a file is refused (decompression bombs)
_WRITE_FORMATS = {".jpg": ".jpg", ".jpeg": ".jpg", ".png": ".png"}


def decode_image(data: bytes, name: str = "image", *, max_pixels: int = MAX_PIXELS,
                 quiet: bool = False) -> np.ndarray:
    """Bytes of an image file -> RGB uint8 (H, W, 3); InputError for anything that is not one.
    `quiet`: keep the decoders' own stderr lines off the process's stderr (see _native_stderr:
    for a command line's one-line errors; not in a server, where other threads write too)."""
    if not data:
        raise InputError(f"{name} is empty")
    buf = np.frombuffer(data, np.uint8)
    # Read the header's size before decoding the pixels, so a bomb is refused cheaply.
    header = header_size(data)
    if header is not None:
        _check_pixels(name, *header, max_pixels)
    capture: contextlib.AbstractContextManager[list[str]] = (
        _native_stderr() if quiet else contextlib.nullcontext([]))
    with capture as said:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        why = f" ({said[0]})" if said else ""
        raise InputError(f"{name} is not an image this tool can read{why}")
    _check_pixels(name, bgr.shape[1], bgr.shape[0], max_pixels)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _check_pixels(name: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InputError(f"{name} has {width}x{height} = {width * height:,} pixels, more than "
                         f"the limit of {max_pixels:,}")


# Decoders print to the process's stderr themselves: libjpeg "Corrupt JPEG data: ...", libpng
# "libpng error: ...", OpenCV's log "[ERROR:0@0.01] global grfmt_tiff.cpp:117 TIFF_Error ...".
# Those lines would stand beside our one-line error (or after a damaged JPEG that still decodes),
# so file descriptor 2 is pointed at a temporary file while OpenCV decodes; the first line becomes
# the reason of a failure, and is dropped when the image decodes. fd 2 belongs to the whole
# process: decodes take turns (the lock), and a line another thread writes meanwhile is lost.
_STDERR_LOCK = threading.Lock()
_LOG_PREFIX = re.compile(r"^\[\s*[A-Z]+:[^\]]*\]\s*(global\s+\S+\s+)?")


@contextlib.contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """Capture what native code writes to fd 2 in the block; the list gets its first line."""
    said: list[str] = []
    try:
        capture = tempfile.TemporaryFile()
    except OSError:  # nowhere to put it (a full disk): let them print
        yield said
        return
    with _STDERR_LOCK, capture:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        lines = capture.read().decode("utf-8", "replace").split("\n")
        lines = [_LOG_PREFIX.sub("", line).strip() for line in lines]
        said += [line[:200] for line in lines if line][:1]


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
    return decode_image(data, path, quiet=True)


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


def atomic_write(path: str, data: bytes, *, durable: bool = False) -> None:
    """Write `path` through a temporary file beside it (`create_temp`'s, so a killed run's is
    removed by the next) renamed over it: `path` never holds half a file. `durable`: flushed to
    disk before the rename (a record that must survive a power cut, e.g. the farm's manifest)."""
    try:
        tmp = create_temp(Path(os.path.abspath(path)))
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror}") from e
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {e.strerror}") from e
    except BaseException:
        with contextlib.suppress(OSError):
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


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) that an image file's header declares, read without decoding any pixel:
    PNG, JPEG, WebP (VP8, VP8L, VP8X), TIFF (either byte order, BigTIFF too), BMP and GIF. None
    for another format, or a header too short or damaged to say. The one place that reads them
    (the server's uploads too), so a decompression bomb is refused before the decoder runs."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return _tiff_size(data)
    if data.startswith(b"BM") and len(data) >= 26:
        if int.from_bytes(data[14:18], "little") == 12:  # BITMAPCOREHEADER: 16-bit sizes
            return struct.unpack("<HH", data[18:22])
        w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)  # a negative height means top-down rows
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])  # the logical screen: every frame fits in it
    return None


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


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """The canvas of an extended WebP (VP8X), or the frame of a simple lossy (VP8) or lossless
    (VP8L) one. (https://developers.google.com/speed/webp/docs/riff_container)"""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


_TIFF_INTEGERS = {3: "H", 4: "I", 16: "Q"}  # TIFF field types SHORT, LONG, LONG8: struct formats


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """ImageWidth (256) and ImageLength (257) of the first IFD, SHORT or LONG (or LONG8 in a
    BigTIFF), in the file's byte order; None when either is missing or out of the data."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\0", b"\0+")  # BigTIFF: 8-byte offsets and counts, 20-byte entries
    head, count, entry = ("Q", "Q", 20) if big else ("I", "H", 12)
    try:
        (ifd,) = struct.unpack_from(order + head, data, 8 if big else 4)
        (entries,) = struct.unpack_from(order + count, data, ifd)
        start = ifd + struct.calcsize(count)
        size: dict[int, int] = {}
        for i in range(min(entries, (len(data) - start) // entry)):
            tag, kind = struct.unpack_from(order + "HH", data, start + i * entry)
            value = start + i * entry + (12 if big else 8)  # where the value sits in the entry
            if tag in (256, 257) and kind in _TIFF_INTEGERS:
                size[tag] = struct.unpack_from(order + _TIFF_INTEGERS[kind], data, value)[0]
    except struct.error:  # an offset past the end: a damaged header
        return None
    if 256 in size and 257 in size:
        return size[256], size[257]
    return None
