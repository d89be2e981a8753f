"""Live sources: a camera or stream (OpenCV), a video file played like a camera, and `open_source`
(which also knows the shipped fake camera, `synthetic[:WxH[@FPS]]`).

Each live source runs its own capture thread that keeps only the newest frame: a frame nobody took
before the next one arrived is dropped and counted (`dropped`). Iterating a live source starts the
thread and yields the newest frame each time one is there, so a slow consumer always gets fresh
frames and latency stays at about one dream.

Faults end the iteration cleanly instead of raising into the pipeline: a camera that cannot be
opened, unplugs or stalls is retried with back-off (0.5, 1, 2, 4 s by default); when the retries
are spent the iterator ends and `failure` holds a `SourceError` with a one-line reason.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from types import TracebackType

import cv2
import numpy as np

from livedream.errors import InputError
from livedream.frame import Frame
from livedream.io.sources import SYNTHETIC_HELP, SyntheticSource
from livedream.io.video import VideoReader

__all__ = [
    "SourceError", "LiveSource", "CameraSource", "FilePlaybackSource", "open_source", "source_size",
    "redact_url", "SYNTHETIC_HELP",
]

log = logging.getLogger("livedream.live")

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_POLL = 0.05  # seconds between checks of the stop event while waiting


class SourceError(InputError):
    """A live source that could not deliver: not opened, unplugged, stalled (after the retries)."""


class LiveSource:
    """Base of the threaded live sources: a newest-frame slot filled by a capture thread.

    Subclasses implement `_capture()`, which runs in the thread, calls `_publish(rgb, time)` for
    each frame and returns when the stream is over or `self._stop` is set; raising `SourceError`
    there ends the stream with that failure.
    """

    name = "source"

    def __init__(self, *, give_up_after: float = float("inf")) -> None:
        # Seconds without a frame after which the iterator stops waiting for the capture thread
        # (stuck in a driver call that does not return) and ends with a failure.
        self.give_up_after = give_up_after
        self.failure: SourceError | None = None  # why the stream ended early, if it did
        self.dropped = 0  # frames captured but replaced by a newer one before anyone took them
        self.captured = 0  # frames the capture thread produced
        self.size: tuple[int, int] | None = None  # (width, height) of the newest frame
        self._cond = threading.Condition()
        self._frame: Frame | None = None  # the newest frame nobody has taken yet
        self._ended = False
        self._paused = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the capture thread (iterating starts it too). Idempotent."""
        with self._cond:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=f"livedream-{self.name}",
                                            daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the capture thread and release the device; safe to call twice."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
            if thread.is_alive():  # a driver call that never returns: nothing more can be done
                log.warning("%s: the capture thread did not stop (stuck in the driver)", self.name)

    def __enter__(self) -> LiveSource:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def set_paused(self, paused: bool) -> None:
        """While paused the iterator hands out nothing (a file's clock stops; a camera is drained)."""
        with self._cond:
            self._paused = paused
            self._frame = None
            self._cond.notify_all()

    def wait_ready(self, timeout: float | None = None) -> tuple[int, int]:
        """Start, wait for the first frame; its (width, height). SourceError if none came."""
        self.start()
        limit = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.size is None and not self._ended and not self._stop.is_set():
                left = _POLL if limit is None else min(_POLL, limit - time.monotonic())
                if left <= 0:
                    break
                self._cond.wait(left)
        if self.size is None:
            raise self.failure or SourceError(f"{self.name}: no frame came"
                                              + (f" within {timeout:g} s" if timeout else ""))
        return self.size

    # -- consumer side ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        self.start()
        last = time.monotonic()
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._frame is not None or self._ended
                                    or self._stop.is_set(), _POLL)
                frame, self._frame = self._frame, None
                ended = self._ended
            if frame is not None or self._paused:
                last = time.monotonic()
            if frame is not None:
                yield frame
            elif ended:
                return
            elif time.monotonic() - last > self.give_up_after:
                # The capture thread is stuck in a call that does not return: give up on it.
                self._fail(SourceError(f"{self.name} stalled: no frame for "
                                       f"{time.monotonic() - last:.0f} s"))
                return

    # -- capture side -----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._capture()
        except SourceError as e:
            self._fail(e)
        except Exception as e:  # noqa: BLE001 - a bug or a library error still ends the stream cleanly
            self._fail(SourceError(f"{self.name} failed: {_first_line(e)}"))
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _capture(self) -> None:
        raise NotImplementedError

    def _publish(self, rgb: np.ndarray, at: float, *, captured: float | None = None) -> None:
        """Offer frame `rgb` (H, W, 3) uint8 shown at `at` seconds; replaces an untaken one."""
        with self._cond:
            index = self.captured
            self.captured += 1
            self.size = (rgb.shape[1], rgb.shape[0])
            if self._paused:
                self._cond.notify_all()
                return
            if self._frame is not None:
                self.dropped += 1
            now = time.monotonic()
            self._frame = Frame(index=index, time=at, rgb=rgb, captured=captured or now)
            self._cond.notify_all()

    def _fail(self, error: SourceError) -> None:
        with self._cond:
            if self.failure is None:
                self.failure = error  # reported by whoever runs the source (run_live, the CLI)
            self._ended = True
            self._cond.notify_all()


class CameraSource(LiveSource):
    """A camera index, a device path or a stream URL read with OpenCV, newest frame only.

    `retries`: how many times a failed open is retried, waiting `backoff`, 2 x `backoff`, 4 x ...
    (at most 8 s) in between; then the stream ends with `failure`. A stream lost mid-run (unplugged,
    stalled, ended) is reopened after `backoff`, with the same retries.
    `stall_timeout`: seconds without a frame before the stream is reopened. `width`, `height`,
    `fps`: asked of the device; it may give something else.
    """

    def __init__(self, spec: int | str, *, retries: int = 4, backoff: float = 0.5,
                 stall_timeout: float = 5.0, width: int | None = None, height: int | None = None,
                 fps: float | None = None) -> None:
        waits = sum(min(8.0, backoff * 2 ** k) for k in range(retries))
        super().__init__(give_up_after=stall_timeout * (retries + 2) + waits + backoff)
        self.spec = spec
        self.stall_timeout = stall_timeout
        self.name = f"camera {spec}" if isinstance(spec, int) else redact_url(str(spec))
        self.retries, self.backoff = retries, backoff
        self.request = (width, height, fps)
        self.fps: float | None = None  # what the device says it delivers, once open
        self._origin: float | None = None  # monotonic time of the first frame: frame times count from it

    def _capture(self) -> None:
        attempts, lost = 0, None  # failed attempts in a row; why frames stopped coming
        while not self._stop.is_set():
            cap, reason = self._open()
            if cap is not None:
                try:
                    got, reason = self._read(cap)
                finally:
                    cap.release()
                if got:  # it worked for a while: reopen, with a fresh round of retries
                    attempts, lost = 0, reason
                    log.warning("%s: %s; reopening", self.name, reason)
                    if self._stop.wait(self.backoff):
                        return
                    continue
            if self._stop.is_set():
                return
            attempts += 1
            if attempts > self.retries:
                tries = f"{attempts} {'time' if attempts == 1 else 'times'}"
                if lost is None:
                    raise SourceError(f"{self.name} cannot be opened: {reason}; tried {tries}")
                raise SourceError(f"{self.name} lost: {lost}; reopening failed {tries}: {reason}")
            delay = min(8.0, self.backoff * 2 ** (attempts - 1))
            log.warning("%s: %s; retrying in %.1f s (%d/%d)", self.name, reason, delay, attempts,
                        self.retries)
            if self._stop.wait(delay):
                return

    def _open(self) -> tuple[cv2.VideoCapture | None, str]:
        """An opened capture, or None and why not."""
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # libav's console chatter (quiet)
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            if isinstance(self.spec, str) and "://" in self.spec:
                ms = int(1000 * self.stall_timeout)
                cap = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG,
                                       [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms,
                                        cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
            else:
                api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
                cap = cv2.VideoCapture(self.spec, api)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not cap.isOpened():
            cap.release()
            return None, self._why_not_open()
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame first, where the backend honours it
        width, height, fps = self.request
        if width and height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        self.fps = cap.get(cv2.CAP_PROP_FPS) or None
        return cap, ""

    def _why_not_open(self) -> str:
        if isinstance(self.spec, str) and "://" in self.spec:
            return "no video stream could be opened there (unreachable, refused, timed out or not video)"
        path = self.spec if isinstance(self.spec, str) else f"/dev/video{self.spec}"
        if sys.platform.startswith("linux") and not os.path.exists(path):
            return f"device not found ({path} does not exist)" if path != self.spec else "device not found"
        return "the device did not open (in use by another program, or not a camera?)"

    def _read(self, cap: cv2.VideoCapture) -> tuple[bool, str]:
        """Read until the stream fails, stalls or we are stopped: (got a frame, why it ended)."""
        got, last = False, time.monotonic()
        while not self._stop.is_set():
            ok, bgr = cap.read()
            now = time.monotonic()
            if ok and bgr is not None and bgr.size:
                if self._origin is None:
                    self._origin = now
                code = cv2.COLOR_BGR2RGB if bgr.ndim == 3 else cv2.COLOR_GRAY2RGB
                self._publish(cv2.cvtColor(bgr, code), now - self._origin, captured=now)
                got, last = True, now
                continue
            if now - last >= 0.9 * self.stall_timeout:  # the read timed out (or took that long)
                return got, f"no frame for {now - last:.0f} s"
            if not got:
                return False, "opened, but no frame could be read"
            # A stream that ends (server closed, device unplugged) fails at once: reopen.
            return True, "the stream ended or the device was unplugged"
        return got, "stopped"


class FilePlaybackSource(LiveSource):
    """A video file played at its own frame rate, like a camera; `loop` repeats it.

    Frames are decoded ahead and offered when their time comes; those not taken before the next
    one are dropped and counted. Times run on across loops (0 .. n x duration), `pts` is None.
    """

    def __init__(self, path: str, *, loop: bool = False, speed: float = 1.0) -> None:
        super().__init__()  # never gives up: no driver to get stuck in, and a frame may last long
        self.path, self.loop, self.speed = path, loop, speed
        self.name = os.path.basename(path)
        reader = VideoReader(path)  # InputError at once for a file that is not a video
        self.info = reader.info
        self.size = (self.info.width, self.info.height)
        self.fps = self.info.fps
        self._reader: VideoReader | None = reader
        self._pause_lock = threading.Lock()
        self._paused_at: float | None = None
        self._paused_total = 0.0

    def set_paused(self, paused: bool) -> None:
        with self._pause_lock:
            now = time.monotonic()
            if paused and self._paused_at is None:
                self._paused_at = now
            elif not paused and self._paused_at is not None:
                self._paused_total += now - self._paused_at
                self._paused_at = None
        super().set_paused(paused)

    def _capture(self) -> None:
        origin = time.monotonic()
        offset = 0.0  # seconds of the passes already played
        while not self._stop.is_set():
            reader = self._reader or VideoReader(self.path)
            self._reader = None
            try:
                end, count = None, 0
                for vf in reader.frames():
                    if not self._wait_until(origin, (offset + vf.time) / self.speed):
                        return
                    self._publish(vf.rgb, offset + vf.time)
                    end, count = vf.time, count + 1
                stopped = reader.stopped_early
                length = max(reader.end_time or 0.0, (end or 0.0) + 1 / self.fps)
            finally:
                reader.close()
            if stopped:
                log.warning("%s", stopped)
            if not self.loop:
                self._wait_until(origin, (offset + length) / self.speed)  # the last frame's time
                return
            if count == 0:
                raise SourceError(f"{self.name}: no frame could be decoded")
            offset += length

    def _wait_until(self, origin: float, at: float) -> bool:
        """Sleep until playback time `at` (seconds from `origin`, pauses excluded); False if stopped."""
        while True:
            with self._pause_lock:
                paused = self._paused_at is not None
                due = origin + at + self._paused_total
            now = time.monotonic()
            if not paused and now >= due:
                return not self._stop.is_set()
            if self._stop.wait(_POLL if paused else min(_POLL, due - now)):
                return False

    def close(self) -> None:
        super().close()
        reader, self._reader = self._reader, None
        if reader is not None and (self._thread is None or not self._thread.is_alive()):
            reader.close()


def open_source(spec: str, *, loop: bool = False, retries: int = 4,
                stall_timeout: float = 5.0) -> SyntheticSource | CameraSource | FilePlaybackSource:
    """The live source for `spec`, checked at once (InputError, one line) without waiting on a device.

    `spec`: a camera index (`0`), a device path (`/dev/video0`), a stream URL (`rtsp://`, `http://`,
    ...), a video file (played at its own rate, `loop` to repeat) or `synthetic[:WxH[@FPS]]`, the
    shipped fake camera.
    """
    text = spec.strip()
    if not text:
        raise InputError(f"empty source; expected a camera index, a device path, a URL, a video "
                         f"file or {SYNTHETIC_HELP}")
    synthetic = SyntheticSource.parse(text)
    if synthetic is not None:
        return synthetic
    if text.isdigit():
        return CameraSource(int(text), retries=retries, stall_timeout=stall_timeout)
    if _looks_like_url(text):
        _check_url(text)
        return CameraSource(text, retries=retries, stall_timeout=stall_timeout)
    if text.startswith("/dev/"):
        if not os.path.exists(text):
            raise InputError(f"device not found: {text}")
        return CameraSource(text, retries=retries, stall_timeout=stall_timeout)
    if not os.path.exists(text):
        raise InputError(f"source not found: {text} (expected a camera index, a device path, an "
                         f"rtsp:// or http:// URL, a video file or {SYNTHETIC_HELP})")
    if os.path.isdir(text):
        raise InputError(f"source {text} is a folder, expected a video file")
    return FilePlaybackSource(text, loop=loop)


def _looks_like_url(text: str) -> bool:
    """scheme:// anything, or a known stream scheme with a colon (`rtsp:/cam`); not `C:/file`."""
    m = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]+):", text)
    return m is not None and (m[1].lower() in URL_SCHEMES or text[m.end():].startswith("//"))


def _check_url(url: str) -> None:
    """InputError with what is wrong when `url` is not scheme://host[:port][/path].

    The messages show the URL as `redact_url` does, with any whitespace in it %-escaped (a
    password with a space still counts as one, and a newline cannot break the one-line error),
    and never the parser's own text: it quotes what it took for a port, which may be part of
    a password ("rtsp://user:pa/ss@host").
    """
    shown = redact_url(re.sub(r"\s", lambda m: urllib.parse.quote(m[0]), url))
    form = "expected scheme://host[:port]/path"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise InputError(f"malformed URL {shown}: {form}") from None
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"malformed URL {shown}: the port must be a number in 0..65535") from None
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        raise InputError(f"unsupported URL scheme {parts.scheme!r} in {shown}; "
                         f"expected one of {', '.join(s + '://' for s in URL_SCHEMES)}")
    if re.search(r"\s", url):
        raise InputError(f"malformed URL {shown}: it contains spaces")
    if not url[len(parts.scheme):].startswith("://") or not parts.hostname:
        raise InputError(f"malformed URL {shown}: {form.replace('scheme', scheme)}")
    if port == 0:
        raise InputError(f"malformed URL {shown}: port 0")


def redact_url(text: str) -> str:
    """`text` with any URL password in it replaced by ***, for messages, logs and answers.

    The password is all from the colon after the user name (which may be empty) to the last `@`
    of that word: a password holding `@` or `/` (which a URL should escape, but people type) is
    hidden whole. A word like `http://host:8080/a@b` loses a little more than needed; better
    that than a password shown. `scheme:/user:pw@host` (one slash) is covered too. Query-string
    credentials (`password=`, `pwd=`, `token=`, `key=` ...) are hidden as well.
    """
    text = re.sub(r"([a-zA-Z][a-zA-Z0-9+.-]*:/*[^:/@\s]*):\S*@", r"\1:***@", text)
    # Cameras that take credentials in the query string (`?user=admin&password=...`, tokens)
    return re.sub(r"([?&;](?:password|passwd|pass|pwd|token|key|secret|auth)=)[^&;#\s]*", r"\1***", text,
                  flags=re.IGNORECASE)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def source_size(source: object, timeout: float | None = None) -> tuple[int, int]:
    """(width, height) of the frames `source` will deliver; waits for a live source's first frame."""
    if isinstance(source, LiveSource):
        return source.size if source.size is not None else source.wait_ready(timeout)
    width, height = getattr(source, "width", None), getattr(source, "height", None)
    if width is None or height is None:
        raise ValueError(f"cannot tell the frame size of {type(source).__name__}")
    return int(width), int(height)
