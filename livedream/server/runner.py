"""Running an app on uvicorn: in the foreground (`livedream serve`) or on a thread (`livedream live
--mjpeg`, tests, bench).

The listening socket is bound before the model loads, so a busy port or a bad address fails at
once with one line; port 0 picks a free port (`ServerThread.url` tells which).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import uvicorn

from livedream.errors import LivedreamError
from livedream.server.app import Service, create_app
from livedream.server.protocol import GuardedH11Protocol

__all__ = ["bind", "make_server", "ServerThread", "service_thread"]


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; LivedreamError (one line) when that is impossible."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise LivedreamError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise LivedreamError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, ending the MJPEG streams first when asked to stop (Ctrl-C, SIGTERM), and
    returning afterwards (uvicorn would re-raise the signal, skipping our clean-up): exit code 0."""

    def __init__(self, config: uvicorn.Config, stop_streams: Callable[[], None]) -> None:
        super().__init__(config)
        self.stop_streams = stop_streams

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stop_streams()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def make_server(app: Any, stop_streams: Callable[[], None]) -> uvicorn.Server:
    """A uvicorn server for `app`; `stop_streams` ends its endless responses when it stops."""
    config = uvicorn.Config(
        app, log_level="warning",
        access_log=False,  # a request line would print ?token=... into the log
        lifespan="on", ws="none", server_header=False,
        http=GuardedH11Protocol,  # header timeout, connections per client: see protocol.py
        timeout_keep_alive=5, timeout_graceful_shutdown=3,
        limit_concurrency=256,  # connections + tasks; above it uvicorn answers 503 itself
    )
    return _Server(config, stop_streams)


class ServerThread:
    """`app` served on a thread at `url` until `close()`; a context manager. `close` (e.g. the
    service's) runs after the server has stopped. `sock`: a bound socket (see `bind`), else one
    is bound on host:port."""

    def __init__(self, app: Any, *, stop_streams: Callable[[], None] = lambda: None,
                 close: Callable[[], None] = lambda: None, host: str = "127.0.0.1", port: int = 0,
                 sock: socket.socket | None = None) -> None:
        self.sock = sock or bind(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.stop_streams, self._close = stop_streams, close
        self.server = make_server(app, stop_streams)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="livedream-server", daemon=True)

    def start(self, timeout: float = 30.0) -> ServerThread:
        """Serve (once; later calls return at once) and wait until the server is up."""
        if self._thread.ident is not None:
            return self
        self._thread.start()
        limit = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > limit:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def close(self) -> None:
        self.stop_streams()
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._close()
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def service_thread(service: Service, host: str = "127.0.0.1", port: int = 0) -> ServerThread:
    """The full app of `service` on a thread; the service is closed with it."""
    return ServerThread(create_app(service), stop_streams=service.stop_streams, close=service.close,
                        host=host, port=port)
