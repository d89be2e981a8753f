"""The server's settings: limits, the page's default dream, and the bind/token rule. One place."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from livedream.config import ConfigError

__all__ = ["ServerSettings", "TOKEN_ENV", "check_bind", "is_loopback", "resolve_token"]

TOKEN_ENV = "LIVEDREAM_TOKEN"  # environment variable holding the access token


@dataclass(frozen=True)
class ServerSettings:
    """What `livedream serve` runs with. Defaults are the page's (measured: see bench_server.py)."""

    host: str = "127.0.0.1"  # loopback only; any other address needs a token
    port: int = 8000
    token: str | None = None  # required on every route but /healthz when set
    model: str = "effnet-lite0"  # the one network the server loads (once)
    layer: str | None = None  # default layer; None = the model's default
    # The page's defaults: a 640x480 photo is dreamed at 400x300 and the dream's residual is
    # upsampled onto the full-size photo. ~0.5 s on a quiet 2-core CPU (target <= 1.5 s).
    dream_side: int = 400  # longest side, in pixels, the dream itself runs at
    level: int = 4  # iterations per octave ("Level")
    detail: int = 3  # octaves ("Detail")
    step: float = 2.0  # step size, pixel units
    max_level: int = 20  # upper bounds on what a request may ask: the work per request is bounded
    max_detail: int = 6
    max_upload: int = 20 * 1024 * 1024  # bytes of one request body (413 above)
    max_pixels: int = 25_000_000  # pixels of one decoded image (413 above): a bomb is refused
    queue_size: int = 4  # dream jobs waiting for the worker; more -> 503 + Retry-After
    max_uploads: int = 16  # request bodies being received at once; more -> 503
    max_uploads_per_client: int = 2  # ... from one client address: one client cannot take them all
    upload_timeout: float = 60.0  # seconds to receive a body (a trickling client gets 408)
    idle_timeout: float = 10.0  # seconds a body may stall between two pieces (408 after)
    max_viewers: int = 16  # /stream.mjpg clients at once; more -> 503
    live_preset: str = "realtime"  # video preset of the live stream (--source)
    jpeg_quality: int = 90  # of dreamed images returned as JPEG
    threads: int | None = None  # torch CPU threads; None = torch's default (one per core). On a
    #                             CPU shared with other busy processes, 1 is steadier (see bench)

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.port <= 65535, f"port must be in 0..65535, got {self.port}"),
            (self.dream_side >= 32, f"dream side must be >= 32, got {self.dream_side}"),
            (self.queue_size >= 1, f"queue size must be >= 1, got {self.queue_size}"),
            (self.max_uploads >= 1, f"max uploads must be >= 1, got {self.max_uploads}"),
            (self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
            (0 <= self.level <= self.max_level, f"level must be in 0..{self.max_level}, got {self.level}"),
            (1 <= self.detail <= self.max_detail,
             f"detail must be in 1..{self.max_detail}, got {self.detail}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        check_bind(self.host, self.token)


def check_bind(host: str, token: str | None) -> None:
    """ConfigError unless `host` is a loopback address or a token is set: the rule for every
    server of livedream (`serve`, `live --mjpeg`)."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"serving on {host} needs a token: pass --token or set {TOKEN_ENV}")
    if token is not None and len(token) < 8:
        raise ConfigError("token must have at least 8 characters")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`; False for 0.0.0.0, LAN addresses and names."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(given: str | None) -> str | None:
    """The token from the command line, else from the environment; empty means none."""
    token = given if given is not None else os.environ.get(TOKEN_ENV)
    return token or None
