"""`livedream live`: a camera, stream or file dreamed live into a window, a virtual camera, an
MJPEG stream and / or a recording.

`register(subparsers)` adds the command to the `livedream` parser; `python -m livedream.live_cli`
runs it alone (same options, same exit codes): 0 done, 1 the source or a stage failed mid-run
(the message says which), 2 bad input or an output that cannot start (one line), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Any

from livedream.cli import (
    EXIT_INTERRUPTED,
    add_dream_options,
    add_video_options,
    video_config_from_args,
)
from livedream.errors import InputError

__all__ = ["register", "cmd_live"]

EXIT_FAILED = 1

EPILOG = """\
sources: a camera index (0), a device path (/dev/video0), an rtsp:// or http:// URL, a video file
(played at its own frame rate; --loop repeats it) or synthetic[:WxH[@FPS]] (a fake camera).
window keys: q quit, space pause, n/p next/previous layer, +/- iterations, [ ] strength,
s snapshot, i stats overlay.
examples:
  livedream live --source 0 --window
  livedream live --source 0 --vcam --mjpeg 8080          # a webcam for Zoom/OBS, and a browser view
  livedream live --source clip.mp4 --loop --window --record dream.mp4
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `live` to `subparsers` (from `parser.add_subparsers()`); the new parser."""
    p = subparsers.add_parser("live", help="dream a camera, stream or file live",
                              description="Dream a camera, a stream or a video file live into a window, "
                                          "a virtual camera, an MJPEG stream and / or a recording.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="0", metavar="SRC",
                   help="camera index, device path, rtsp:// / http:// URL, video file or "
                        "synthetic[:WxH[@FPS]] (default 0)")
    p.add_argument("--loop", action="store_true", help="repeat a file source")
    g = p.add_argument_group("outputs (any combination; none: dream for the stats only)")
    g.add_argument("--window", action="store_true", help="show in a window (keys steer the dream)")
    g.add_argument("--vcam", action="store_true", help="send to a virtual camera (pyvirtualcam)")
    g.add_argument("--vcam-backend", help="pyvirtualcam backend (default: the first that starts; "
                                          "livedream-fake: the shipped fake)")
    g.add_argument("--vcam-device", help="virtual camera device, e.g. /dev/video10")
    g.add_argument("--mjpeg", type=int, metavar="PORT", help="serve GET /stream.mjpg on this port")
    g.add_argument("--mjpeg-host", default="127.0.0.1",
                   help="address to serve MJPEG on (default 127.0.0.1; 0.0.0.0: the network)")
    g.add_argument("--record", metavar="FILE", help="also record to this file (.mp4, .mkv, .mov)")
    g.add_argument("--snapshot-dir", default=".", help="where the window's s key saves (default .)")
    g = p.add_argument_group("run")
    g.add_argument("--seconds", type=float, help="stop after this many seconds")
    g.add_argument("--report", metavar="PATH", help="write the stats as JSON here when the run ends")
    g.add_argument("--stats-every", type=float, default=5.0, help="log the stats every S seconds")
    g.add_argument("--retries", type=int, default=4,
                   help="reopen a camera / stream that fails this many times (back-off 0.5..8 s)")
    g.add_argument("--stall-timeout", type=float, default=5.0,
                   help="seconds without a frame before a camera / stream counts as stalled")
    g.add_argument("--quiet", action="store_true", help="no stats lines, only warnings and errors")
    g.add_argument("--presets-file", help="TOML file with more presets")
    add_dream_options(p, default_preset="realtime")
    add_video_options(p)
    p.set_defaults(run=cmd_live)
    return p


def cmd_live(args: argparse.Namespace) -> int:
    from livedream.control import Control
    from livedream.io.broadcast import Broadcast
    from livedream.io.camera import FilePlaybackSource, open_source, source_size
    from livedream.io.images import check_writable
    from livedream.io.live_sinks import (
        MjpegServer,
        RecordSink,
        VirtualCameraSink,
        WindowSink,
        check_record_path,
    )
    from livedream.live import run_live

    _setup_logging(args.quiet)
    if args.seconds is not None and args.seconds <= 0:
        raise InputError(f"--seconds must be > 0, got {args.seconds:g}")
    if args.mjpeg is not None and not 0 <= args.mjpeg <= 65535:
        raise InputError(f"--mjpeg port must be in 0..65535, got {args.mjpeg}")
    cfg = video_config_from_args(args)
    control = Control(cfg)
    source = open_source(args.source, loop=args.loop, retries=args.retries,
                         stall_timeout=args.stall_timeout)
    with contextlib.ExitStack() as stack:  # everything opened so far, closed on an error below
        stack.callback(getattr(source, "close", lambda: None))
        if args.report:
            check_writable(args.report)
        sinks: list[Any] = []
        server = None
        if args.mjpeg is not None:
            broadcast = Broadcast()
            server = stack.enter_context(MjpegServer(broadcast, args.mjpeg, args.mjpeg_host))
            stack.callback(broadcast.close)
            sinks.append(broadcast)
        if args.record:
            check_record_path(args.record)
        window = WindowSink(control, snapshot_dir=args.snapshot_dir) if args.window else None
        if window is not None:
            stack.callback(window.close)
        width, height = source_size(source)  # a camera is opened here (with its retries)
        fps = getattr(source, "fps", None) or 30.0
        if args.record:
            audio = source.path if isinstance(source, FilePlaybackSource) and source.info.has_audio else None
            sinks.append(stack.enter_context(RecordSink(args.record, fps=fps, audio_source=audio)))
        if args.vcam:
            sinks.insert(0, stack.enter_context(VirtualCameraSink(
                width, height, fps, backend=args.vcam_backend, device=args.vcam_device)))
        logging.getLogger("livedream.live").info("source: %s, %dx%d", args.source, width, height)
        info = {"source": args.source, "size": [width, height],
                "outputs": [type(s).__name__ for s in ([window] if window else []) + sinks],
                "mjpeg": server.url if server is not None else None}
        result = run_live(source, sinks, cfg, control=control, window=window, seconds=args.seconds,
                          report_path=args.report, stats_every=args.stats_every, info=info)
    for error in result.sink_errors:
        print(f"livedream: error: {error}", file=sys.stderr)
    if result.failure:
        print(f"livedream: error: {result.failure}", file=sys.stderr)
        return EXIT_FAILED
    if result.interrupted:
        print("livedream: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if result.sink_errors else 0


def _setup_logging(quiet: bool) -> None:
    """Stats and notices on stderr as `livedream: ...` lines (unless the app set up logging)."""
    logger = logging.getLogger("livedream")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("livedream: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
