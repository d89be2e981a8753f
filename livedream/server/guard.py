"""Access control as a small ASGI middleware, in front of every route.

- With a token: every route but `/healthz` needs it, as `Authorization: Bearer TOKEN` or
  `?token=TOKEN` (so a phone's address bar or an OBS browser source can carry it); 401 otherwise.
- Without a token (loopback only, see ServerSettings): the Host header must name this machine
  (localhost, 127.x, ::1), so a web page elsewhere cannot reach the API by DNS rebinding.
- Every answer gets headers that keep browsers from sniffing types, leaking the URL (and its
  token) as a referrer, or framing the page.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["Guard", "OPEN_PATHS"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = ("/healthz",)  # routes that need no token
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class Guard:
    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.refused = 0  # requests answered 401 or 421

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _HEADERS
            await send(message)

        if self.token is None:
            if not _local_host(headers.get(b"host", b"").decode("latin-1")):
                await self._refuse(send_with_headers, 421, "this server answers only to localhost, "
                                   "127.0.0.1 or [::1]; to serve a network, start it with a token")
                return
        elif scope["path"] not in OPEN_PATHS and not self._authorized(scope, headers):
            await self._refuse(send_with_headers, 401, "missing or wrong token: add ?token=... to the "
                               "address or send the header 'Authorization: Bearer ...'",
                               [(b"www-authenticate", b'Bearer realm="livedream"')])
            return
        await self.app(scope, receive, send_with_headers)

    def _authorized(self, scope: Scope, headers: dict[bytes, bytes]) -> bool:
        assert self.token is not None
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer " and hmac.compare_digest(auth[7:].strip(), self.token):
            return True
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return any(hmac.compare_digest(t.encode(), self.token) for t in query.get("token", []))

    async def _refuse(self, send: Send, status: int, message: str,
                      extra: list[tuple[bytes, bytes]] | None = None) -> None:
        self.refused += 1
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *(extra or [])]})
        await send({"type": "http.response.body", "body": body})


def _local_host(host: str) -> bool:
    """True when a Host header names this machine by a loopback name or address."""
    if host.startswith("["):  # [::1]:8000
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
