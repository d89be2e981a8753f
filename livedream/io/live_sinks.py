"""Live outputs: an OpenCV window with steering keys, a virtual camera, an MJPEG server, a recording.

Each is a pipeline sink (`write(frame)`, idempotent `close()`, a context manager). `write` is called
from the pipeline's sink thread and never waits long: the window only keeps the newest frame (the
caller's thread shows it with `tick()`), the recording encodes in a thread of its own.
"""

from __future__ import annotations

import atexit
import http.server
import logging
import os
import queue
import socket
import socketserver
import sys
import threading
import time
import weakref
from collections.abc import Callable
from fractions import Fraction
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from livedream.config import ConfigError
from livedream.control import Control
from livedream.errors import LivedreamError, OutputError
from livedream.io.broadcast import Broadcast
from livedream.io.video import VideoFrame, VideoWriter
from livedream.pipeline import Frame

__all__ = ["WindowSink", "VirtualCameraSink", "MjpegServer", "RecordSink", "WINDOW_KEYS",
           "VCAM_INSTALL_HINT", "check_display", "check_record_path"]

log = logging.getLogger("livedream.live")

WINDOW_KEYS = ("q quit, space pause, n/p next/previous layer, +/- iterations, [ ] strength, "
               "s snapshot, i stats")
VCAM_INSTALL_HINT = (
    "install one: on Linux `sudo apt install v4l2loopback-dkms && sudo modprobe v4l2loopback "
    "exclusive_caps=1`, on Windows or macOS OBS Studio 28+ (start its Virtual Camera once)"
)
RECORD_EXTENSIONS = (".mp4", ".mkv", ".mov")


class _Closing:
    """Context manager protocol for classes with an idempotent `close()`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# -- window -----------------------------------------------------------------------------------------
class WindowSink(_Closing):
    """An OpenCV window showing the newest dreamed frame; keys steer the dream through `control`.

    Call `tick()` often from one thread (the main thread is safest for GUI toolkits): it shows the
    newest frame, reads a key and applies it; it returns False once the window is closed or `q` was
    pressed. `write()` may be called from any thread.

    Keys: q / Esc quit, space pause, n / p next / previous layer, + / - iterations, [ / ] strength,
    s snapshot (PNG in `snapshot_dir`), i stats overlay on / off.
    """

    def __init__(self, control: Control, *, title: str = "livedream", snapshot_dir: str = ".",
                 on_quit: Callable[[], None] | None = None,
                 on_pause: Callable[[bool], None] | None = None,
                 stats: Callable[[], list[str]] | None = None, show_stats: bool = True) -> None:
        check_display()
        self.control, self.title, self.snapshot_dir = control, title, snapshot_dir
        self.on_quit, self.on_pause, self.stats = on_quit, on_pause, stats
        self.show_stats = show_stats
        self.paused = False
        self.quit = False
        self.snapshots: list[str] = []
        self._lock = threading.Lock()
        self._newest: np.ndarray | None = None  # (H, W, 3) uint8 RGB
        self._seq = self._shown_seq = 0
        self._shown: np.ndarray | None = None  # the frame on screen, RGB
        self._toast: tuple[str, float] | None = None  # a key's message and until when it shows
        self._stats_lines: list[str] = []
        self._stats_at = 0.0
        self._layers: tuple[str, list[str]] | None = None  # (model, its friendly layer names)
        self._closed = False
        self._open = False
        self._mapped = False  # the window was seen on screen (closing it then means quit)

    # -- sink side (any thread) -------------------------------------------------------------------
    def write(self, frame: Frame) -> None:
        assert frame.out is not None, f"frame {frame.index} reached the window undreamed"
        with self._lock:
            self._newest = frame.out
            self._seq += 1

    # -- UI side (one thread) ---------------------------------------------------------------------
    def tick(self, wait_ms: int = 10) -> bool:
        """Show the newest frame, handle one key. False once the user quit or closed the window."""
        if self._closed or self.quit:
            return False
        if not self._open:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
            self._open = True
        with self._lock:
            newest, seq = self._newest, self._seq
        now = time.monotonic()
        redraw = seq != self._shown_seq and not self.paused
        if redraw:
            self._shown, self._shown_seq = newest, seq
        if self.show_stats and self.stats is not None and now - self._stats_at > 0.5:
            self._stats_lines, self._stats_at = self.stats(), now
            redraw = True
        if self._toast is not None and now > self._toast[1]:
            self._toast, redraw = None, True
        if redraw and self._shown is not None:
            cv2.imshow(self.title, self._decorate(self._shown))
        key = cv2.waitKey(max(1, wait_ms))
        if key != -1:
            message = self.handle_key(key)
            if message:
                self._toast = (message, now + 2.0)
                if self._shown is not None:
                    cv2.imshow(self.title, self._decorate(self._shown))
        elif self._shown is not None:
            visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
            if self._mapped and not visible:
                self._quit()  # the window's close button
            self._mapped = self._mapped or visible
        return not self.quit

    def handle_key(self, key: int) -> str | None:
        """Apply one key code (as from cv2.waitKey); a short message saying what it did."""
        ch = chr(key & 0xFF) if 0 <= key & 0xFF < 128 else ""
        cfg = self.control.config
        try:
            if ch in ("q", "\x1b"):
                self._quit()
                return "quit"
            if ch == " ":
                self.paused = not self.paused
                if self.on_pause is not None:
                    self.on_pause(self.paused)
                return "paused" if self.paused else "playing"
            if ch in ("n", "p"):
                layer = self._next_layer(1 if ch == "n" else -1)
                self.control.update(layer=layer, channel=None)  # a channel belongs to its layer
                return f"layer {layer}"
            if ch in ("+", "="):
                return f"iterations {self.control.update(iters=cfg.dream.iters + 1).dream.iters}"
            if ch in ("-", "_"):
                iters = max(1, cfg.dream.iters - 1)
                return f"iterations {self.control.update(iters=iters).dream.iters}"
            if ch in ("[", "]"):
                step = 0.1 if ch == "]" else -0.1
                strength = round(min(4.0, max(0.0, cfg.strength + step)), 2)
                return f"strength {self.control.update(strength=strength).strength:.1f}"
            if ch == "s":
                return f"saved {self.snapshot()}"
            if ch == "i":
                self.show_stats = not self.show_stats
                return None
        except (ConfigError, OutputError) as e:
            log.warning("%s", e)
            return str(e)
        return None

    def snapshot(self) -> str:
        """Save the frame on screen as a PNG in `snapshot_dir`; its path."""
        from livedream.io.images import write_image

        frame = self._shown if self._shown is not None else self._newest
        if frame is None:
            raise OutputError("no frame to save yet")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = os.path.join(self.snapshot_dir, f"livedream-{stamp}.png")
        n = 1
        while os.path.exists(path):
            n += 1
            path = os.path.join(self.snapshot_dir, f"livedream-{stamp}-{n}.png")
        write_image(path, frame, {k: str(v) for k, v in self.control.params().items()})
        self.snapshots.append(path)
        log.info("snapshot: %s", path)
        return path

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._open:
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)  # lets the toolkit actually take the window down
            except cv2.error:
                pass

    def _quit(self) -> None:
        if not self.quit:
            self.quit = True
            if self.on_quit is not None:
                self.on_quit()

    def _next_layer(self, step: int) -> str:
        from livedream.models import model_spec

        cfg = self.control.config.dream
        if self._layers is None or self._layers[0] != cfg.model:
            spec = model_spec(cfg.model)
            self._layers = (cfg.model, [info.name for info in spec.arch().layers()])
        names = self._layers[1]
        current = cfg.layers[0] if cfg.layers else model_spec(cfg.model).default_layer
        i = names.index(current) if current in names else 0
        return names[(i + step) % len(names)]

    def _decorate(self, rgb: np.ndarray) -> np.ndarray:
        """The frame to show (BGR), with the stats and the last key's message drawn on it."""
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        lines = list(self._stats_lines) if self.show_stats else []
        if self.paused:
            lines.append("paused (space to play)")
        if self._toast is not None:
            lines.append(self._toast[0])
        if lines:
            scale = max(0.4, min(1.0, bgr.shape[1] / 1000))
            h = int(22 * scale) + 4
            width = int(max(len(s) for s in lines) * 10 * scale) + 12
            cv2.rectangle(bgr, (0, 0), (min(width, bgr.shape[1]), h * len(lines) + 6), (0, 0, 0), -1)
            for k, text in enumerate(lines):
                cv2.putText(bgr, text, (6, h * (k + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale,
                            (255, 255, 255), 1, cv2.LINE_AA)
        return bgr


def check_display() -> None:
    """OutputError (one line) where a window cannot open: no X display on Linux.

    Checked before touching the GUI toolkit, because Qt aborts the whole process when it cannot
    connect to a display.
    """
    if not sys.platform.startswith("linux"):
        return
    display = os.environ.get("DISPLAY", "")
    if not display:
        raise OutputError("--window needs a display and DISPLAY is not set (headless: use --mjpeg "
                          "or --vcam, or run under Xvfb)")
    host, _, number = display.rpartition(":")
    number = number.split(".")[0]
    if host in ("", "unix") and number.isdigit() and not os.path.exists(f"/tmp/.X11-unix/X{number}"):
        raise OutputError(f"--window: no X server on display {display} (/tmp/.X11-unix/X{number} "
                          "is missing)")


# -- virtual camera ---------------------------------------------------------------------------------
class VirtualCameraSink(_Closing):
    """Sends the dreamed frames to a virtual camera with pyvirtualcam (OBS, Zoom, browsers see it).

    `backend`: a pyvirtualcam backend name; None tries every real one (v4l2loopback on Linux, OBS
    on Windows and macOS; never the fake). When none can start: OutputError with each backend's
    reason and how to install one. Frames of another size are resized to `width` x `height`.
    `options` go to the backend (pyvirtualcam's **kw), e.g. the fake's `frames` list.
    """

    def __init__(self, width: int, height: int, fps: float = 30.0, *, backend: str | None = None,
                 device: str | None = None, options: dict[str, Any] | None = None) -> None:
        try:
            import pyvirtualcam
            from pyvirtualcam.camera import BACKENDS
        except ImportError:
            raise OutputError("--vcam needs pyvirtualcam: pip install pyvirtualcam") from None
        from livedream.io import fake_vcam

        if backend == fake_vcam.FAKE_BACKEND:
            fake_vcam.register()
        if backend is not None and backend not in BACKENDS:
            raise OutputError(f"unknown virtual camera backend {backend!r}; available: "
                              f"{', '.join([*BACKENDS, fake_vcam.FAKE_BACKEND])}")
        names = [backend] if backend else [n for n in BACKENDS if not fake_vcam.is_fake(n)]
        self.size = (width, height)
        self.count = 0
        self.camera: Any = None
        failures = []
        for name in names:
            try:
                self.camera = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                                  device=device, backend=name, **(options or {}))
                break
            except Exception as e:  # noqa: BLE001 - every backend's reason is reported
                text = " ".join(str(e).split()).removeprefix(f"'{name}' backend: ")
                failures.append(f"{name}: {text}")
        if self.camera is None:
            tried = "; ".join(failures) if failures else "none: pyvirtualcam has no backend for this system"
            raise OutputError(f"no virtual camera could start (tried {tried}); {VCAM_INSTALL_HINT}")
        self.backend = self.camera.backend
        self.device = self.camera.device
        log.info("virtual camera: %s (%s) %dx%d", self.device, self.backend, width, height)

    def write(self, frame: Frame) -> None:
        rgb = frame.out
        assert rgb is not None, f"frame {frame.index} reached the virtual camera undreamed"
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        self.camera.send(np.ascontiguousarray(rgb))
        self.count += 1

    def close(self) -> None:
        camera, self.camera = self.camera, None
        if camera is not None:
            camera.close()


# -- MJPEG server -----------------------------------------------------------------------------------
_BOUNDARY = "livedreamframe"
_PAGE = b"""<!doctype html><meta charset="utf-8"><title>livedream</title>
<style>body{margin:0;background:#000}img{width:100vw;height:100vh;object-fit:contain}</style>
<img src="/stream.mjpg" alt="livedream">
"""


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = False  # joined by server_close(): no handler outlives the server
    block_on_close = True
    allow_reuse_address = True
    mjpeg: MjpegServer


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one response per connection; the stream ends it
    timeout = 30  # seconds a socket operation may block (a reader that stopped reading)

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        path = self.path.split("?")[0]
        mjpeg = self.server.mjpeg
        if path == "/stream.mjpg":
            mjpeg.stream_to(self)
        elif path in ("/snapshot.jpg", "/frame.jpg"):
            _, jpeg = mjpeg.broadcast.latest()
            if jpeg is None:
                self.send_error(503, "no frame yet")
                return
            self._send(200, "image/jpeg", jpeg)
        elif path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", _PAGE)
        else:
            self.send_error(404, "try /stream.mjpg")

    def _send(self, code: int, kind: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
        log.debug("mjpeg %s: %s", self.address_string(), format % args)


class MjpegServer(_Closing):
    """A small threaded HTTP server: `GET /stream.mjpg` streams `broadcast`'s frames as
    multipart/x-mixed-replace JPEGs (a browser `<img>`, an OBS browser source, a phone, VLC);
    `GET /snapshot.jpg` the newest frame; `GET /` a page showing the stream.

    Bound to 127.0.0.1 unless `host` says otherwise (0.0.0.0 for the whole network). `port` 0 picks
    a free port (see `.port`). The socket is bound at construction (OutputError when the port is
    taken); `start()` (or `with`) serves. `close()` ends every stream and joins every thread.
    """

    def __init__(self, broadcast: Broadcast, port: int = 8080, host: str = "127.0.0.1") -> None:
        self.broadcast = broadcast
        try:
            self._server = _Server((host, port), _Handler)
        except OSError as e:
            raise OutputError(f"cannot serve MJPEG on {host}:{port}: {e.strerror or e}") from None
        self._server.mjpeg = self
        self.host = host
        self.port = int(self._server.server_address[1])
        self.clients = 0  # streams open now
        self.served = 0  # frames sent, all clients together
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}/stream.mjpg"

    def start(self) -> MjpegServer:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                            name="livedream-mjpeg", daemon=True)
            self._thread.start()
            log.info("MJPEG stream: %s", self.url)
        return self

    def __enter__(self) -> MjpegServer:
        return self.start()

    def stream_to(self, handler: _Handler) -> None:
        """Serve one client until it leaves or the server closes (in the client's thread)."""
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("Pragma", "no-cache")
        handler.end_headers()
        with self._lock:
            self._sockets.add(handler.connection)
            self.clients += 1
        try:
            seq = 0
            while not self._stop.is_set():
                item = self.broadcast.wait_next(seq, timeout=0.25)
                if item is None:
                    continue
                seq, jpeg = item
                handler.wfile.write(
                    f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                    .encode() + jpeg + b"\r\n")
                handler.wfile.flush()
                with self._lock:
                    self.served += 1
        except OSError:  # the client left (broken pipe, reset, timeout): nothing to report
            pass
        finally:
            with self._lock:
                self._sockets.discard(handler.connection)
                self.clients -= 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._lock:
            for sock in self._sockets:  # unblocks a write to a client that stopped reading
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()  # joins the client threads


# -- recording --------------------------------------------------------------------------------------
_END = object()


class RecordSink(_Closing):
    """`--record`: the dreamed frames encoded to a video file (livedream.io.video.VideoWriter).

    Encoding runs in a thread of its own so it never delays the other outputs; if it falls behind,
    the oldest waiting frame is dropped (counted in `dropped`): frames keep their times, so the file
    stays in sync. `audio_source` (a file source) has its sound copied in; frame times are then
    the file's. Without it, times start at 0 with the first frame recorded. The file appears at
    `path` only when `close()` has finalized it (also after Ctrl-C).
    """

    def __init__(self, path: str, *, fps: float = 30.0, audio_source: str | None = None,
                 metadata: dict[str, str] | None = None, queue_size: int = 8) -> None:
        check_record_path(path)
        self.path, self.fps, self.audio_source, self.metadata = path, fps, audio_source, metadata
        self.count = 0  # frames encoded
        self.dropped = 0  # frames dropped because the encoder fell behind
        self.error: LivedreamError | None = None
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._writer: VideoWriter | None = None
        self._origin: float | None = None
        self._size: tuple[int, int] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="livedream-record", daemon=True)
        self._thread.start()
        _OPEN_RECORDINGS.add(self)  # finalized at exit even if nobody called close()

    def write(self, frame: Frame) -> None:
        if self.error is not None:
            raise self.error
        assert frame.out is not None, f"frame {frame.index} reached the recording undreamed"
        item = (frame.index, frame.time, frame.out)
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _work(self) -> None:
        """Encode until the end marker, then finish the file; a failure ends the thread (and is
        raised by the next `write` and by `close`)."""
        try:
            while (item := self._queue.get()) is not _END:
                self._encode(*item)  # type: ignore[misc]
            if self._writer is not None:
                self._writer.close()  # timestamps end at the last frame, plus one frame
        except LivedreamError as e:
            self.error = e
        except Exception as e:  # noqa: BLE001 - reported as a one-line OutputError
            self.error = OutputError(f"cannot record to {self.path}: {e}")
        if self.error is not None and self._writer is not None:
            self._writer.abort()

    def _encode(self, index: int, at: float, rgb: np.ndarray) -> None:
        if self._writer is None:
            height, width = rgb.shape[:2]
            self._size = (width, height)
            self._origin = 0.0 if self.audio_source else at
            self._writer = VideoWriter(self.path, width=width, height=height,
                                       time_base=Fraction(1, 1000), rate=self.fps,
                                       audio_source=self.audio_source, metadata=self.metadata)
        if (rgb.shape[1], rgb.shape[0]) != self._size:  # a camera that came back at another size
            rgb = cv2.resize(rgb, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(VideoFrame(index, None, at - (self._origin or 0.0), rgb))
        self.count += 1

    def close(self) -> None:
        """Finish the file (waits for the frames queued); OutputError if it could not be written."""
        if not self._closed:
            self._closed = True
            if self._thread.is_alive():
                self._queue.put(_END)
            self._thread.join()
            _OPEN_RECORDINGS.discard(self)
            if self.error is not None:
                raise self.error


_OPEN_RECORDINGS: weakref.WeakSet[RecordSink] = weakref.WeakSet()


@atexit.register
def _finish_recordings() -> None:
    for sink in list(_OPEN_RECORDINGS):
        try:
            sink.close()
        except LivedreamError as e:
            log.error("%s", e)


def check_record_path(path: str) -> None:
    """OutputError (one line) when `path` cannot take a recording: extension, folder, rights."""
    from livedream.io.images import check_writable

    if not path.lower().endswith(RECORD_EXTENSIONS):
        raise OutputError(f"cannot record to {path}: use a name ending in {', '.join(RECORD_EXTENSIONS)}")
    check_writable(path)
