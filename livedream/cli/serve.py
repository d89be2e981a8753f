"""`livedream serve`: the web page and HTTP API, and the live stream when `--source` is given.

Exit codes: 0 after Ctrl-C / SIGTERM, 2 with one line on stderr for anything the user can fix (no
token for a network address, a busy port, an unknown layer or source, the web extras missing).
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

from livedream.errors import LivedreamError

__all__ = ["register", "run", "require_web_extras"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    from livedream.config import VIDEO_PRESETS
    from livedream.server.settings import TOKEN_ENV

    p = subparsers.add_parser(
        "serve", help="web page and HTTP API to dream photos and steer the live stream",
        description="Serve the livedream page and API. Loopback only unless a token is set.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs a token)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--source", help="live source for /stream.mjpg: camera index, device, URL, video "
                                    "file or synthetic[:WxH]")
    p.add_argument("--token", help=f"access token, at least 8 characters (or set {TOKEN_ENV}, which "
                                   "keeps it out of the process list)")
    p.add_argument("--model", default="effnet-lite0", help="network (default effnet-lite0)")
    p.add_argument("--layer", help="default layer (default: the model's)")
    p.add_argument("--queue-size", type=int, default=4, help="images waiting to be dreamed before 503")
    p.add_argument("--live-preset", default="realtime", choices=list(VIDEO_PRESETS),
                   help="preset of the live stream (default realtime)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: one per core; 1 is "
                                               "steadier on a CPU shared with other busy programs)")
    p.set_defaults(run=run)
    return p


def require_web_extras(what: str = "serve") -> None:
    """LivedreamError (one line) when the web packages are not installed."""
    try:
        import python_multipart  # noqa: F401 - for uploads
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise LivedreamError(f"{what} needs the web extras ({e.name} is missing): "
                             "pip install 'livedream[serve]'") from None


def run(args: argparse.Namespace) -> int:
    require_web_extras()
    from livedream.server.settings import ServerSettings, resolve_token

    settings = ServerSettings(host=args.host, port=args.port, token=resolve_token(args.token),
                              model=args.model, layer=args.layer, queue_size=args.queue_size,
                              live_preset=args.live_preset, threads=args.threads)  # fails fast
    from livedream.io.live_sources import open_source, redact_url
    from livedream.server.app import Service, create_app
    from livedream.server.runner import bind, make_server

    sock = bind(settings.host, settings.port)
    if settings.threads is not None:
        import torch

        torch.set_num_threads(settings.threads)
    try:
        source = open_source(args.source, loop=True) if args.source else None
        with Service(settings, source=source, source_spec=args.source or "") as service:
            server = make_server(create_app(service), service.stop_streams)
            port = sock.getsockname()[1]
            print(f"livedream: serving on {_address(settings.host, port)}"
                  + ("" if settings.token is None else "  (add ?token=... or 'Authorization: Bearer ...')")
                  + (f"  live: /stream.mjpg from {redact_url(args.source)}" if args.source else ""),
                  flush=True)
            server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _address(host: str, port: int) -> str:
    """The URL to print; for a wildcard bind, this machine's address on its network if found."""
    if host in ("0.0.0.0", "::", ""):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect(("10.254.254.254", 1))  # no packet is sent: only picks the route's address
                host = s.getsockname()[0]
        except OSError:
            pass
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
