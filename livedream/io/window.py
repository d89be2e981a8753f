"""An OpenCV window showing the newest dreamed frame, with a stats overlay; keys go to the caller.

`write()` (a pipeline sink) may be called from any thread and only keeps the newest frame; the
caller's thread (the main thread is safest for GUI toolkits) calls `tick()` often: it shows that
frame, reads a key and handles it. The window handles q / Esc (quit), space (pause) and i (stats
overlay); every other key goes to `on_key`, which returns a short message to show or None.

The window opens at the frame's own size (shrunk to fit the screen), and the overlay's text is
drawn at a size that reads at about 18 screen pixels whatever the window's size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from livedream.errors import OutputError
from livedream.frame import Frame
from livedream.io.images import write_image
from livedream.io.sinks import Closing

__all__ = ["WindowSink", "check_display", "screen_size"]

log = logging.getLogger("livedream.live")

_TEXT_PX = 18  # the overlay's line height on screen, in screen pixels


class WindowSink(Closing):
    """See the module docstring. `stats()` gives the overlay's lines (called twice a second)."""

    def __init__(self, *, title: str = "livedream", on_key: Callable[[str], str | None] | None = None,
                 on_quit: Callable[[], None] | None = None,
                 on_pause: Callable[[bool], None] | None = None,
                 stats: Callable[[], list[str]] | None = None, show_stats: bool = True) -> None:
        check_display()
        self.title = title
        self.on_key, self.on_quit, self.on_pause, self.stats = on_key, on_quit, on_pause, stats
        self.show_stats = show_stats
        self.paused = False
        self.quit = False
        self._lock = threading.Lock()
        self._newest: np.ndarray | None = None  # (H, W, 3) uint8 RGB
        self._seq = self._shown_seq = 0
        self._shown: np.ndarray | None = None  # the frame on screen, RGB
        self._toast: tuple[str, float] | None = None  # a key's message and until when it shows
        self._stats_lines: list[str] = []
        self._stats_at = 0.0
        self._closed = False
        self._open = False
        self._sized = False  # the window was given the first frame's size
        self._mapped = False  # the window was seen on screen (closing it then means quit)

    # -- sink side (any thread) -------------------------------------------------------------------
    def write(self, frame: Frame) -> None:
        with self._lock:
            self._newest = frame.image
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
        if self._shown is not None and not self._sized:
            self._sized = True
            cv2.resizeWindow(self.title, *fit(self._shown.shape[1], self._shown.shape[0], screen_size()))
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
        """Handle one key code (as from cv2.waitKey); a short message saying what it did."""
        ch = chr(key & 0xFF) if 0 <= key & 0xFF < 128 else ""
        if ch in ("q", "\x1b"):
            self._quit()
            return "quit"
        if ch == " ":
            self.paused = not self.paused
            if self.on_pause is not None:
                self.on_pause(self.paused)
            return "paused" if self.paused else "playing"
        if ch == "i":
            self.show_stats = not self.show_stats
            return None
        return self.on_key(ch) if ch and self.on_key is not None else None

    def snapshot(self, folder: str, params: dict[str, str] | None = None) -> str:
        """Save the frame on screen as a PNG in `folder` (parameters stored in it); its path."""
        frame = self._shown if self._shown is not None else self._newest
        if frame is None:
            raise OutputError("no frame to save yet")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = os.path.join(folder, f"livedream-{stamp}.png")
        n = 1
        while os.path.exists(path):
            n += 1
            path = os.path.join(folder, f"livedream-{stamp}-{n}.png")
        write_image(path, frame, params)
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

    def _decorate(self, rgb: np.ndarray) -> np.ndarray:
        """The frame to show (BGR), with the stats and the last key's message drawn on it."""
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        lines = list(self._stats_lines) if self.show_stats else []
        if self.paused:
            lines.append("paused (space to play)")
        if self._toast is not None:
            lines.append(self._toast[0])
        if lines:
            draw_lines(bgr, lines, self._screen_scale(bgr.shape[1]))
        return bgr

    def _screen_scale(self, width: int) -> float:
        """Screen pixels per frame pixel as the window shows it now (1 if unknown)."""
        try:
            shown = cv2.getWindowImageRect(self.title)[2]
        except cv2.error:
            return 1.0
        return shown / width if shown > 0 else 1.0


def draw_lines(bgr: np.ndarray, lines: list[str], screen_scale: float = 1.0) -> None:
    """Draw `lines` top left on `bgr` (in place), on a dark box, each line `_TEXT_PX` screen
    pixels high when the image is shown `screen_scale` times its size."""
    line = max(8, round(_TEXT_PX / max(screen_scale, 1e-3)))  # image pixels per line
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = cv2.getFontScaleFromHeight(font, max(6, int(line * 0.7)), 1)
    thick = max(1, round(line / 16))
    width = max(cv2.getTextSize(s, font, scale, thick)[0][0] for s in lines) + line // 2
    box = (min(width, bgr.shape[1]), min(bgr.shape[0], line * len(lines) + line // 3))
    bgr[:box[1], :box[0]] = (bgr[:box[1], :box[0]] * 0.35).astype(np.uint8)
    for k, text in enumerate(lines):
        cv2.putText(bgr, text, (line // 4, line * (k + 1) - line // 5), font, scale, (255, 255, 255),
                    thick, cv2.LINE_AA)


def fit(width: int, height: int, screen: tuple[int, int] | None) -> tuple[int, int]:
    """The window size for a width x height frame: its own size, shrunk (aspect kept) to 90% of
    the screen when it is larger."""
    if screen is None:
        return width, height
    scale = min(1.0, 0.9 * screen[0] / width, 0.9 * screen[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


@functools.cache
def screen_size() -> tuple[int, int] | None:
    """(width, height) of the X screen (Linux, through libX11), None where unknown."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("X11")
    if name is None:
        return None
    try:
        x11 = ctypes.CDLL(name)
        x11.XOpenDisplay.restype = ctypes.c_void_p
        x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        for fn in (x11.XDisplayWidth, x11.XDisplayHeight):
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int]
        x11.XDefaultScreen.argtypes = [ctypes.c_void_p]
        display = x11.XOpenDisplay(None)
        if not display:
            return None
        try:
            screen = x11.XDefaultScreen(display)
            return int(x11.XDisplayWidth(display, screen)), int(x11.XDisplayHeight(display, screen))
        finally:
            x11.XCloseDisplay(display)
    except (OSError, AttributeError):
        return None


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
