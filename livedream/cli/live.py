"""`livedream live`: a camera, stream or file dreamed live into a window, a virtual camera, an
MJPEG stream and / or a recording.

Exit codes: 0 done, 1 the source or a stage failed mid-run (the message says which), 2 bad input
or an output that cannot start (one line), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Any

from livedream.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    add_dream_options,
    add_video_options,
    setup_logging,
    video_config_from_args,
)
from livedream.errors import InputError

__all__ = ["register", "run"]

EPILOG = """\
sources: a camera index (0), a device path (/dev/video0), an rtsp:// or http:// URL, a video file
(played at its own frame rate; --loop repeats it) or synthetic[:WxH[@FPS]] (a fake camera).
window keys: q quit, space pause, n/p next/previous layer, +/- iterations, [ ] strength,
s snapshot, i stats overlay.
--mjpeg serves http://HOST:PORT/stream.mjpg with the same rules as `livedream serve`: only to
this machine unless a token is set (--token or LIVEDREAM_TOKEN).
examples:
  livedream live --source 0 --window
  livedream live --source 0 --vcam --mjpeg 8080          # a webcam for Zoom/OBS, and a browser view
  livedream live --source clip.mp4 --loop --window --record dream.mp4
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
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
                   help="address to serve MJPEG on (default 127.0.0.1; any other needs a token)")
    g.add_argument("--token", help="access token for --mjpeg beyond this machine (or set LIVEDREAM_TOKEN)")
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
    add_dream_options(p, default_preset="realtime")
    add_video_options(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from livedream.cli.common import video_params
    from livedream.control import Control
    from livedream.io.images import check_writable
    from livedream.io.live_sources import FilePlaybackSource, open_source, redact_url, source_size
    from livedream.io.record import RecordSink, check_record_path
    from livedream.io.vcam import VirtualCameraSink
    from livedream.io.window import WindowSink
    from livedream.live.keys import Steering
    from livedream.live.run import run_live

    setup_logging(args.quiet)
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
        mjpeg_url = None
        if args.mjpeg is not None:
            stream, mjpeg_url = _start_mjpeg(stack, args)
            sinks.append(stream)
        if args.record:
            check_record_path(args.record)
        window = None
        if args.window:
            window = stack.enter_context(WindowSink())
            window.on_key = Steering(control, window, args.snapshot_dir)
        width, height = source_size(source)  # a camera is opened here (with its retries)
        fps = getattr(source, "fps", None) or 30.0
        params = {"livedream": "; ".join(f"{k}={v}" for k, v in video_params(cfg).items())}
        if args.record:
            audio = source.path if isinstance(source, FilePlaybackSource) and source.info.has_audio else None
            sinks.append(stack.enter_context(RecordSink(args.record, fps=fps, audio_source=audio,
                                                        metadata=params)))
        if args.vcam:
            sinks.insert(0, stack.enter_context(VirtualCameraSink(
                width, height, fps, backend=args.vcam_backend, device=args.vcam_device)))
        logging.getLogger("livedream.live").info("source: %s, %dx%d", redact_url(args.source), width, height)
        info = {"source": redact_url(args.source), "size": [width, height],
                "outputs": [type(s).__name__ for s in ([window] if window else []) + sinks],
                "mjpeg": mjpeg_url}
        result = run_live(source, sinks, control, window=window, seconds=args.seconds,
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


def _start_mjpeg(stack: contextlib.ExitStack, args: argparse.Namespace) -> tuple[Any, str]:
    """The MJPEG stream's sink, served on a thread by the app's stream routes (same guard as
    `livedream serve`); (sink, its URL)."""
    from livedream.cli.serve import require_web_extras
    from livedream.server.settings import check_bind, resolve_token

    require_web_extras("--mjpeg")
    token = resolve_token(args.token)
    check_bind(args.mjpeg_host, token)
    from livedream.server.app import create_stream_app
    from livedream.server.runner import ServerThread, bind
    from livedream.server.stream import MjpegStream

    sock = bind(args.mjpeg_host, args.mjpeg)
    stream = MjpegStream()
    server = ServerThread(create_stream_app(stream, token), stop_streams=stream.close, sock=sock,
                          host=args.mjpeg_host)
    stack.enter_context(server)
    stack.callback(stream.close)
    url = f"{server.url}/stream.mjpg"
    logging.getLogger("livedream.live").info("MJPEG stream: %s%s", url,
                                             "" if token is None else "?token=...")
    return stream, url
