"""The HTTP app: routes over one `Service` (settings, model, dream worker, live stream).

Framework: Starlette on uvicorn. Starlette is a small ASGI toolkit (routing, requests, streaming
responses) without FastAPI's pydantic layer, which this handful of routes would not use; its
`StreamingResponse` serves the MJPEG stream from an async generator, watching for the client's
disconnect, and uvicorn applies back-pressure per connection, so a slow client only slows itself.
Uploads are received asynchronously (a slow upload holds no thread), the dreaming happens on one
worker thread behind a bounded queue. aiohttp would do as well; the ASGI pair is the more common
one and lets the app run on any ASGI server.

Routes (with a token, every one but /healthz needs it; see guard.py):
    GET  /                 the page (static/index.html)
    POST /api/dream        an image (multipart field `image`, or the raw body) -> the dreamed image
    GET  /api/layers       the model's layers and channel counts
    GET  /api/params       live parameters, the page's defaults, limits, presets
    PUT  /api/params       change live parameters (JSON object), checked -> the new values
    GET  /stream.mjpg      the live dreamed stream (404 without --source)
    GET  /api/stats        counters, dream times, live fps, memory
    GET  /healthz          {"ok": true} while the dream worker (and the live stream) run
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from livedream.config import PRESETS, VIDEO_PRESETS, ConfigError, VideoConfig, video_preset
from livedream.control import Control
from livedream.frame import Frame
from livedream.io.images import encode_image
from livedream.io.live_sources import redact_url
from livedream.live.session import LiveSession
from livedream.models.layer_table import LayerTable
from livedream.pipeline import DreamSource, dreamer_for
from livedream.server.guard import Guard
from livedream.server.params import INSTANT, DreamRequest, parse_dream_fields, parse_live_changes
from livedream.server.photos import PhotoDreamer
from livedream.server.settings import ServerSettings
from livedream.server.stream import MjpegStream
from livedream.server.uploads import HTTPProblem, decode_upload, sniff_image
from livedream.server.worker import Busy, DreamWorker
from livedream.student import student_for

__all__ = ["Service", "create_app", "create_stream_app", "PAGE", "STREAM_PAGE"]

log = logging.getLogger("livedream.server")

PAGE = Path(__file__).parent / "static" / "index.html"  # the one file the app serves from disk
_MAX_JSON = 64 * 1024  # bytes of a PUT /api/params body


class Service:
    """What the routes serve from; owns the model, the photo worker and the live session. A context
    manager.

    `photos`: inject a slower or fake photo dreamer in tests (anything with PhotoDreamer's
    methods). `source`: live frames (see io.live_sources.open_source); None: no /stream.mjpg.
    `source_spec`: how the source was named (shown without any password).
    """

    def __init__(self, settings: ServerSettings, *, photos: PhotoDreamer | None = None,
                 source: Iterable[Frame] | None = None, source_spec: str = "") -> None:
        self.settings = settings
        self.started = time.monotonic()
        self.layers = photos.layers if photos is not None else LayerTable(settings.model)
        layer = self.layers.canonical(settings.layer)  # ModelError for a bad one
        self.photos = photos or PhotoDreamer(self.layers, dream_side=settings.dream_side)
        self.worker = DreamWorker(settings.queue_size)
        self.control = Control(video_preset(settings.live_preset, model=settings.model, layers=(layer,)))
        self.source_spec = redact_url(source_spec)
        self.stream: MjpegStream | None = None
        self.live: LiveSession | None = None
        if source is not None:
            self.stream = MjpegStream(max_viewers=settings.max_viewers)
            first = self._live_dreamer(self.control.config)
            self.live = LiveSession(source, [self.stream], self.control, [first], need_viewers=True,
                                    on_end=self._live_ended, dreamer_for=self._live_dreamer)
            self.stream.on_viewers = self.live.gate.add_viewers
        self.uploads = 0  # request bodies being received now
        self.uploading: collections.Counter[str] = collections.Counter()  # ... per client address
        self.counts = {"bad_request": 0, "too_large": 0, "unsupported": 0, "busy": 0, "dreamed": 0}

    def _live_dreamer(self, cfg: VideoConfig, device: str = "cpu") -> DreamSource:
        """The live stream's dream source for `cfg`, behind the photos' lock: its student, or the
        photos' cached Dreamer for its layer (called by the live pipeline's worker when the layer
        changes)."""
        if student_for(cfg) is not None:
            return self.photos.locked(dreamer_for(cfg, device))  # type: ignore[return-value]
        layer = cfg.dream.layers[0] if cfg.dream.layers else None
        return self.photos.locked(self.photos.dreamer(self.layers.canonical(layer)))  # type: ignore[return-value]

    def _live_ended(self) -> None:
        """The source ended or failed: every viewer's stream ends now (instead of hanging on a
        frame that will not come) and later ones get a 503 saying why."""
        assert self.stream is not None and self.live is not None
        self.stream.stopped = redact_url(self.live.failure or "the source ended")
        self.stream.close()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.worker.start()
        if self.stream is not None and self.live is not None:
            self.stream.start(loop)
            self.live.start()

    def stop_streams(self) -> None:
        """End the MJPEG clients' responses (at shutdown, so the server need not wait for them)."""
        if self.stream is not None:
            self.stream.close()

    def close(self) -> None:
        if self.live is not None:
            self.live.close(grace=5.0)
        self.worker.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def healthy(self) -> bool:
        return self.worker.alive and (self.live is None or self.live.running)

    def live_stats(self) -> dict[str, object] | None:
        if self.live is None or self.stream is None:
            return None
        now = self.live.stats.interval("api")
        return {
            "source": self.source_spec, "running": self.live.running,
            "error": redact_url(self.live.failure) if self.live.failure else None,
            "viewers": self.stream.viewers, "frames": self.live.pipeline.report.frames_out,
            "fps": round(now["fps_out"], 2), "latency_ms_p50": now["latency_ms"]["p50"],
            "dropped": now["dropped"],
            "adaptive": None if self.live.quality is None else self.live.quality.state(),
        }

    def dream_job(self, data: bytes, req: DreamRequest) -> tuple[bytes, float]:
        """Runs on the worker thread: decode, dream, encode. (image bytes, milliseconds)."""
        t = time.perf_counter()
        rgb = decode_upload(data, self.settings.max_pixels)
        out = self.photos.dream(rgb, req)
        ext = ".png" if req.fmt == "png" else ".jpg"
        body = encode_image(out, ext, req.describe(self.layers), quality=self.settings.jpeg_quality)
        return body, 1000 * (time.perf_counter() - t)


def create_app(service: Service) -> Guard:
    """The ASGI app for `service`, wrapped in the token / host guard."""
    settings = service.settings
    page = PAGE.read_bytes()

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    async def healthz(request: Request) -> Response:  # open to all: says nothing of the source
        ok = service.healthy()
        body: dict[str, object] = {"ok": ok}
        if not ok:
            body["worker"] = service.worker.alive
            body["live"] = None if service.live is None else service.live.running
        return JSONResponse(body, status_code=200 if ok else 503)

    async def layers(request: Request) -> Response:
        return JSONResponse(service.layers.as_json())

    async def get_params(request: Request) -> Response:
        return JSONResponse(_params_body(service))

    async def put_params(request: Request) -> Response:
        data = await _read_body(request, _MAX_JSON, settings.upload_timeout, settings.idle_timeout)
        try:
            body = json.loads(data or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
            raise HTTPProblem(400, "body must be a JSON object, e.g. {\"filter\": 3, \"level\": 2}") from None
        changes = parse_live_changes(body, settings, service.layers, service.control.params())
        if changes.get("layer"):  # load it here, not in the middle of the live stream
            await run_in_threadpool(service.photos.dreamer, str(changes["layer"]))
        try:
            service.control.update(**changes)
        except ConfigError as e:
            raise HTTPProblem(400, str(e)) from None
        return JSONResponse(_params_body(service))

    async def dream(request: Request) -> Response:
        service.worker.check_room()  # before reading the body: a full queue answers at once
        client = request.client.host if request.client else "?"
        if service.uploads >= settings.max_uploads:
            raise HTTPProblem(503, "too many uploads at once", {"Retry-After": "2"})
        if service.uploading[client] >= settings.max_uploads_per_client:
            raise HTTPProblem(429, f"{settings.max_uploads_per_client} uploads from you are still "
                                   "arriving; send one at a time", {"Retry-After": "2"})
        service.uploads += 1
        service.uploading[client] += 1
        try:
            data, fields = await _read_image_request(request, settings)
        finally:
            service.uploads -= 1
            service.uploading[client] -= 1
            if service.uploading[client] <= 0:
                del service.uploading[client]
        req = parse_dream_fields(fields, settings, service.layers)
        _, w, h = sniff_image(data)
        if w * h > settings.max_pixels:
            raise HTTPProblem(413, f"image has {w}x{h} pixels, more than the limit of {settings.max_pixels}")
        future = asyncio.wrap_future(service.worker.submit(lambda: service.dream_job(data, req)))
        while True:  # wait, and drop the job if the client leaves before it starts
            done, _ = await asyncio.wait({future}, timeout=0.5)
            if done:
                break
            if await request.is_disconnected():
                future.cancel()
                return Response(status_code=499)
        body, ms = future.result()
        service.counts["dreamed"] += 1
        kind = "image/png" if req.fmt == "png" else "image/jpeg"
        return Response(body, media_type=kind, headers={
            "Cache-Control": "no-store", "X-Dream-Ms": f"{ms:.0f}",
            "X-Dream-Params": "; ".join(f"{k}={v}" for k, v in req.describe(service.layers).items()),
        })

    async def stream(request: Request) -> Response:
        if service.stream is None or service.live is None:
            raise HTTPProblem(404, "no live stream: start the server with --source (e.g. --source 0)")
        return await service.stream.respond(request)

    async def stats(request: Request) -> Response:
        return JSONResponse({
            "uptime_s": round(time.monotonic() - service.started, 1),
            "dream": service.worker.stats(), "http": dict(service.counts, refused=guard.refused,
                                                          uploading=service.uploads),
            "live": service.live_stats(),
            "rss_mb": _rss_mb(),
        })

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPProblem)
        key = {413: "too_large", 415: "unsupported", 429: "busy", 503: "busy"}.get(exc.status, "bad_request")
        service.counts[key] += 1
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    async def on_busy(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Busy)
        service.counts["busy"] += 1
        return JSONResponse({"error": f"busy: {service.worker.capacity} images are waiting; try again "
                                      f"in {exc.retry_after} s"},
                            status_code=503, headers={"Retry-After": str(exc.retry_after)})

    async def on_error(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.start(asyncio.get_running_loop())
        yield
        service.stop_streams()

    routes = [
        Route("/", index), Route("/healthz", healthz), Route("/api/layers", layers),
        Route("/api/params", get_params, methods=["GET"]), Route("/api/params", put_params, methods=["PUT"]),
        Route("/api/dream", dream, methods=["POST"]), Route("/stream.mjpg", stream),
        Route("/api/stats", stats),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        HTTPProblem: on_problem, Busy: on_busy, Exception: on_error})
    guard = Guard(app, settings.token)
    return guard


STREAM_PAGE = b"""<!doctype html><meta charset="utf-8"><title>livedream</title>
<style>body{margin:0;background:#000}img{width:100vw;height:100vh;object-fit:contain}</style>
<img id="s" alt="livedream">
<script>document.getElementById("s").src = "stream.mjpg" + location.search</script>
"""


def create_stream_app(stream: MjpegStream, token: str | None,
                      healthy: Callable[[], bool] = lambda: True) -> Guard:
    """The live stream alone (`livedream live --mjpeg`): `/` (a page showing it), `/stream.mjpg`,
    `/snapshot.jpg` and `/healthz`, behind the same guard as the full app."""

    async def index(request: Request) -> Response:
        return HTMLResponse(STREAM_PAGE, headers={"Cache-Control": "no-cache"})

    async def healthz(request: Request) -> Response:
        ok = healthy()
        return JSONResponse({"ok": ok}, status_code=200 if ok else 503)

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPProblem)
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stream.start(asyncio.get_running_loop())
        yield
        stream.close()

    routes = [Route("/", index), Route("/healthz", healthz), Route("/stream.mjpg", stream.respond),
              Route("/snapshot.jpg", stream.snapshot)]
    return Guard(Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPProblem: on_problem}),
                 token)


# -- helpers ----------------------------------------------------------------------------------------
async def _read_body(request: Request, limit: int, timeout: float, idle: float) -> bytes:
    """The request body, at most `limit` bytes (413), within `timeout` seconds and with no pause
    longer than `idle` seconds between two pieces (408): a stalled upload frees its slot soon."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise HTTPProblem(413 if length.isdigit() else 400,
                          f"body of {length} bytes is over the limit of {limit}" if length.isdigit()
                          else "bad Content-Length", {"Connection": "close"})
    chunks, size = [], 0
    pieces = request.stream().__aiter__()
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    chunk = await asyncio.wait_for(pieces.__anext__(), idle)
                except StopAsyncIteration:
                    break
                size += len(chunk)
                if size > limit:
                    raise HTTPProblem(413, f"body over the limit of {limit} bytes", {"Connection": "close"})
                chunks.append(chunk)
    except ClientDisconnect:
        raise HTTPProblem(400, "the client went away during the upload") from None
    except TimeoutError:
        raise HTTPProblem(408, f"the body did not arrive within {timeout:g} s (or stalled for "
                               f"{idle:g} s)", {"Connection": "close"}) from None
    return b"".join(chunks)


async def _read_image_request(request: Request, settings: ServerSettings) -> tuple[bytes, dict[str, str]]:
    """(image bytes, fields as text) from a multipart form or a raw body plus the query string."""
    body = await _read_body(request, settings.max_upload, settings.upload_timeout, settings.idle_timeout)
    fields = {k: v for k, v in request.query_params.items()}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        raise HTTPProblem(400, "send the image as multipart/form-data (field 'image') or as the raw body")
    if kind != "multipart/form-data":
        return body, fields

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    image: bytes | None = None
    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=20, max_part_size=4096)
    except Exception as e:  # noqa: BLE001 - multipart errors of several kinds
        raise HTTPProblem(400, f"malformed multipart body: {str(e)[:80] or type(e).__name__}") from None
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                image = await value.read()
            else:
                fields[key] = value
    finally:
        await form.close()
    if image is None:
        raise HTTPProblem(400, "no image in the form: send it as a file field named 'image'")
    return image, fields


def _params_body(service: Service) -> dict[str, Any]:
    s = service.settings
    return {
        "live": service.live is not None, "params": service.control.params(),
        "image_defaults": {"layer": service.layers.canonical(s.layer), "filter": None,
                           "level": s.level, "detail": s.detail, "strength": 1.0, "dream_side": s.dream_side},
        "limits": {"level": [0, s.max_level], "detail": [1, s.max_detail], "strength": [0, 4],
                   "upload_bytes": s.max_upload, "pixels": s.max_pixels},
        "presets": {"image": [*PRESETS, INSTANT], "live": list(VIDEO_PRESETS)},
        # what preset=instant can dream: the shipped students of this model
        "students": [{"layer": layer, "filter": channel} for layer, channel in _students(service)],
    }


def _students(service: Service) -> list[tuple[str, int | None]]:
    """(layer, channel) of each shipped student of the model, from the index read once."""
    from livedream.student.weights import shipped_for

    return [((layers or (service.layers.default,))[0], channel)
            for _, layers, channel in shipped_for(service.layers.model)]


def _rss_mb() -> float | None:
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None
