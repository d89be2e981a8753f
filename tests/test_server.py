"""The HTTP app over a real socket: uvicorn on a thread (a subprocess for the start-up rules), httpx
as the client. Tiny images and one iteration keep it fast; the engine is shared by every server."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from livedream.config import ConfigError
from livedream.io.live_sources import LiveSource, SourceError
from livedream.io.sources import SyntheticSource
from livedream.models.layer_table import LayerTable
from livedream.server.app import Service
from livedream.server.photos import PhotoDreamer
from livedream.server.runner import service_thread
from livedream.server.settings import TOKEN_ENV, ServerSettings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "fruits.jpg"
FAST = dict(dream_side=64, level=1, detail=1)  # the tests' "page defaults": one small step
TOKEN = "s3cret-token-for-tests"


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def decode(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, f"not an image: {data[:40]!r}"
    return bgr[:, :, ::-1]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    bgr = cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(cv2.resize(bgr, (160, 120), interpolation=cv2.INTER_AREA)[:, :, ::-1])


@pytest.fixture(scope="module")
def engine() -> PhotoDreamer:
    return PhotoDreamer(LayerTable("effnet-lite0"), dream_side=FAST["dream_side"])


@pytest.fixture(scope="module")
def server(engine):
    """Loopback, no token, a synthetic live source."""
    source = SyntheticSource(96, 72, frames=sys.maxsize, fps=15, paced=True)
    service = Service(ServerSettings(port=0, **FAST), photos=engine, source=source, source_spec="synthetic")
    with service_thread(service) as st, httpx.Client(base_url=st.url, timeout=30) as client:
        yield st, client


# -- dreaming -------------------------------------------------------------------------------------
def test_dream_multipart_returns_a_changed_image_of_the_same_size(server, photo):
    _, client = server
    r = client.post("/api/dream", files={"image": ("x.jpg", jpeg(photo), "image/jpeg")},
                    data={"filter": "7", "level": "2", "detail": "1"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert "filter=7" in r.headers["x-dream-params"] and r.headers["cache-control"] == "no-store"
    out = decode(r.content)
    assert out.shape == photo.shape
    assert np.abs(out.astype(int) - photo.astype(int)).mean() > 2.0


def test_dream_raw_body_png_and_query_fields(server, photo):
    _, client = server
    r = client.post("/api/dream?level=1&detail=1&format=png&strength=2",
                    content=jpeg(photo), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.content.startswith(b"\x89PNG")
    assert decode(r.content).shape == photo.shape


def test_a_phone_photo_is_dreamed_upright(server, photo):
    data = jpeg(photo)  # 160x120, with an EXIF orientation "turn 90 degrees clockwise"
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x0112, 3, 1, 6) + b"\0" * 4
    app1 = b"Exif\x00\x00" + tiff
    rotated = data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]
    r = server[1].post("/api/dream", content=rotated)
    assert r.status_code == 200, r.text
    assert decode(r.content).shape == (160, 120, 3)


def test_other_layer_and_preset(server, photo):
    _, client = server
    r = client.post("/api/dream", content=jpeg(photo), params={"layer": "block3", "preset": "quick",
                                                               "level": "1"})
    assert r.status_code == 200, r.text
    assert "layer=block3" in r.headers["x-dream-params"] and "level=1" in r.headers["x-dream-params"]


# -- bad uploads and parameters ---------------------------------------------------------------------
def test_text_is_refused_as_unsupported(server):
    _, client = server
    r = client.post("/api/dream", files={"image": ("photo.jpg", b"hello, not a picture", "image/jpeg")})
    assert r.status_code == 415 and "not an image" in r.json()["error"]
    r = client.post("/api/dream", content=b"just text", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


def test_truncated_jpeg_is_a_bad_request(server, photo):
    _, client = server
    data = jpeg(photo)
    r = client.post("/api/dream", content=data[: len(data) // 2])
    assert r.status_code == 400 and "truncated" in r.json()["error"]


def test_body_over_20_mb_is_413(server):
    _, client = server
    r = client.post("/api/dream", content=b"\xff\xd8\xff" + b"\0" * (20 * 1024 * 1024))
    assert r.status_code == 413 and "limit" in r.json()["error"]


def test_too_many_pixels_is_413_before_decoding(server):
    _, client = server
    ok, png = cv2.imencode(".png", np.zeros((5000, 5100, 3), np.uint8))  # 25.5 MP, ~100 kB
    assert ok and len(png) < 1_000_000
    r = client.post("/api/dream", content=png.tobytes())
    assert r.status_code == 413 and "5100x5000" in r.json()["error"]
    bomb = bytearray(jpeg(np.zeros((8, 8, 3), np.uint8)))  # header claims 60000x60000
    sof = bomb.index(b"\xff\xc0")
    bomb[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    r = client.post("/api/dream", content=bytes(bomb))
    assert r.status_code == 413


@pytest.mark.parametrize("fields, words", [
    ({"filter": "abc"}, "filter must be an integer"),
    ({"filter": "112"}, "112 out of range: layer block9 has 112 channels"),
    ({"level": "99"}, "level must be in 0..20"),
    ({"detail": "0"}, "detail must be in 1..6"),
    ({"strength": "nan"}, "strength must be in"),
    ({"layer": "nope"}, "unknown layer 'nope'"),
    ({"preset": "fancy"}, "unknown preset 'fancy'"),
    ({"format": "gif"}, "format must be jpeg or png"),
    ({"colour": "red"}, "unknown field(s) colour"),
])
def test_wrong_parameters_are_400_with_a_clear_message(server, photo, fields, words):
    _, client = server
    r = client.post("/api/dream", files={"image": ("x.jpg", jpeg(photo), "image/jpeg")}, data=fields)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]


def test_form_without_an_image(server):
    _, client = server
    r = client.post("/api/dream", files={"level": (None, "2")})
    assert r.status_code == 400 and "no image" in r.json()["error"]


# -- the other routes ---------------------------------------------------------------------------------
def test_layers_healthz_stats(server):
    _, client = server
    layers = client.get("/api/layers").json()
    assert layers["model"] == "effnet-lite0" and layers["default"] == "block9"
    assert {"name": "block9", "path": "_blocks.9", "channels": 112, "stride": 16} in layers["layers"]
    assert client.get("/healthz").json() == {"ok": True}
    stats = client.get("/api/stats").json()
    assert stats["dream"]["capacity"] == 4 and stats["live"]["source"] == "synthetic"
    assert stats["rss_mb"] > 0
    page = client.get("/")
    assert page.status_code == 200 and 'id="filter"' in page.text and "capture" in page.text
    assert page.headers["x-content-type-options"] == "nosniff"


def test_live_params_are_validated_and_applied(server):
    _, client = server
    r = client.put("/api/params", json={"filter": 20, "level": 2, "detail": 1, "strength": 1.5})
    assert r.status_code == 200, r.text
    params = client.get("/api/params").json()["params"]
    assert (params["channel"], params["iters"], params["octaves"], params["strength"]) == (20, 2, 1, 1.5)
    for body, words in [
        ({"level": "2"}, "iters must be an integer"),
        ({"filter": 500}, "channel 500 out of range"),
        ({"layer": "block0"}, "channel 20 out of range: layer block0 has 16"),  # the current filter
        ({"speed": 3}, "cannot set 'speed'"),
        ({"preset": "turbo"}, "preset must be one of"),
        ({"decay": 2}, "decay must be in 0.0..1.0"),
        ([1, 2], "expected a JSON object"),
    ]:
        r = client.put("/api/params", json=body)
        assert r.status_code == 400 and words in r.json()["error"], (body, r.text)
    r = client.put("/api/params", content=b"{not json")
    assert r.status_code == 400
    assert client.get("/api/params").json()["params"]["channel"] == 20  # nothing changed
    assert client.put("/api/params", json={"filter": None, "layer": "block5"}).status_code == 200


def test_mjpeg_stream_gives_jpeg_frames(server):
    st, client = server
    frames: list[bytes] = []
    with client.stream("GET", "/stream.mjpg") as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "multipart/x-mixed-replace; boundary=frame"
        buf = b""
        for chunk in r.iter_bytes():
            buf += chunk
            while True:
                head_end = buf.find(b"\r\n\r\n")
                if not buf.startswith(b"--frame\r\n") or head_end < 0:
                    break
                headers = dict(line.split(": ", 1) for line in buf[9:head_end].decode().split("\r\n"))
                size = int(headers["Content-Length"])
                if len(buf) < head_end + 4 + size + 2:
                    break
                frames.append(buf[head_end + 4 : head_end + 4 + size])
                buf = buf[head_end + 4 + size + 2 :]
            if len(frames) >= 3:
                break
    assert len(frames) >= 3
    for data in frames:
        assert data.startswith(b"\xff\xd8") and decode(data).shape == (72, 96, 3)
    assert len(set(frames)) == len(frames)  # new frames, not one repeated
    deadline = time.monotonic() + 5
    while client.get("/api/stats").json()["live"]["viewers"] and time.monotonic() < deadline:
        time.sleep(0.05)
    live = client.get("/api/stats").json()["live"]
    assert live["viewers"] == 0  # the source stops when unwatched
    quality = live["adaptive"]  # the controller's state: which ladder, which rung
    assert quality["kind"] == "gradient" and 0 <= quality["level"] < quality["levels"]


# -- capacity -----------------------------------------------------------------------------------------
class GatedPhotos:
    """The shared engine, but each dream waits for `gate`: lets a test fill the queue for sure."""

    def __init__(self, inner: PhotoDreamer) -> None:
        self.inner, self.layers, self.gate = inner, inner.layers, threading.Event()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def dream(self, rgb, req):
        assert self.gate.wait(30), "the test never opened the gate"
        return self.inner.dream(rgb, req)


def _wait_for(client: httpx.Client, test, what: str) -> None:
    deadline = time.monotonic() + 10
    while not test(client.get("/api/stats").json()["dream"]):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_full_queue_answers_503_with_retry_after(engine, photo):
    gated = GatedPhotos(engine)
    service = Service(ServerSettings(port=0, queue_size=1, **FAST), photos=gated)  # type: ignore[arg-type]
    body = jpeg(photo)
    results: list[int] = []
    with service_thread(service) as st, httpx.Client(base_url=st.url, timeout=30) as client:
        def post() -> None:
            with httpx.Client(base_url=st.url, timeout=30) as c:
                results.append(c.post("/api/dream", content=body).status_code)

        first = threading.Thread(target=post)
        first.start()
        _wait_for(client, lambda d: d["running"], "the first job to start")
        second = threading.Thread(target=post)
        second.start()
        _wait_for(client, lambda d: d["queued"] == 1, "the second job to queue")
        r = client.post("/api/dream", content=body)
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["error"]
        gated.gate.set()
        first.join(30)
        second.join(30)
        assert sorted(results) == [200, 200]
        assert client.get("/healthz").json() == {"ok": True}
        stats = client.get("/api/stats").json()["dream"]
        assert stats["rejected"] == 1 and stats["done"] == 2


# -- the token rule ---------------------------------------------------------------------------------
def test_token_is_needed_on_every_route_but_healthz(engine, photo):
    service = Service(ServerSettings(port=0, token=TOKEN, **FAST), photos=engine)
    with service_thread(service) as st, httpx.Client(base_url=st.url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        for method, path in [("GET", "/"), ("GET", "/api/layers"), ("GET", "/api/params"),
                             ("PUT", "/api/params"), ("GET", "/api/stats"), ("GET", "/stream.mjpg"),
                             ("POST", "/api/dream")]:
            r = client.request(method, path)
            assert r.status_code == 401, (method, path)
            assert r.headers["www-authenticate"].startswith("Bearer")
            wrong = client.request(method, path, headers={"Authorization": "Bearer wrong-token"})
            assert wrong.status_code == 401, (method, path)
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/api/layers", headers=bearer).status_code == 200
        assert client.get("/api/layers", params={"token": TOKEN}).status_code == 200
        assert client.get("/", params={"token": TOKEN}).status_code == 200
        assert client.get("/stream.mjpg", headers=bearer).status_code == 404  # no --source here
        r = client.post("/api/dream", content=jpeg(photo), headers=bearer)
        assert r.status_code == 200 and decode(r.content).shape == photo.shape


def test_without_a_token_only_local_host_names_are_answered(server):
    _, client = server
    assert client.get("/api/layers", headers={"Host": "evil.example:80"}).status_code == 421
    assert client.get("/api/layers", headers={"Host": "localhost:8000"}).status_code == 200


class LostCamera(LiveSource):
    """A network camera that delivers a few frames, then fails with its address in the error."""

    name = "rtsp://user:***@cam.local:554/live"

    def _capture(self) -> None:
        for i in range(3):
            self._publish(np.full((72, 96, 3), 40 * i, np.uint8), time.monotonic())
            time.sleep(0.05)
        raise SourceError(f"lost {SECRET_URL} after 3 frames")


SECRET_URL = "rtsp://user:secretpw@cam.local:554/live"


def test_a_lost_camera_ends_the_viewers_streams_and_its_password_reaches_no_answer(engine):
    service = Service(ServerSettings(port=0, **FAST), photos=engine, source=LostCamera(),
                      source_spec=SECRET_URL)
    with service_thread(service) as st, httpx.Client(base_url=st.url, timeout=30) as client:
        with client.stream("GET", "/stream.mjpg") as r:  # a viewer starts the source
            assert r.status_code == 200
            for _ in r.iter_bytes():
                break
        deadline = time.monotonic() + 10
        while client.get("/healthz").status_code == 200:
            assert time.monotonic() < deadline, "the lost camera never showed in /healthz"
            time.sleep(0.05)
        health = client.get("/healthz")
        live = client.get("/api/stats").json()["live"]
        again = client.get("/stream.mjpg")  # the viewer's stream ended above; a new one is refused
    assert health.status_code == 503 and "cam.local" not in health.text and "user" not in health.text
    assert "secretpw" not in str(live) and live["source"] == "rtsp://user:***@cam.local:554/live"
    assert live["error"] is not None and "user:***@cam.local" in live["error"]
    assert again.status_code == 503 and "user:***@cam.local" in again.text and "secretpw" not in again.text


def test_network_address_needs_a_token():
    with pytest.raises(ConfigError, match="needs a token"):
        ServerSettings(host="0.0.0.0")
    assert ServerSettings(host="0.0.0.0", token=TOKEN).token == TOKEN
    with pytest.raises(ConfigError, match="at least 8"):
        ServerSettings(token="short")


def _serve(*args: str, env_token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if env_token is not None:
        env[TOKEN_ENV] = env_token
    return subprocess.run([sys.executable, "-m", "livedream", "serve", *args], capture_output=True,
                          text=True, timeout=60, env=env, cwd=ROOT)


def test_serve_on_a_network_address_without_token_exits_2_with_one_line():
    done = _serve("--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a token" in lines[0] and TOKEN_ENV in lines[0], done.stderr
    assert done.stdout == ""


def _serve_in_process(capsys, *args: str) -> tuple[int, list[str]]:
    """`livedream serve ARGS` run here (the same code as the command): (exit code, stderr lines)."""
    from livedream.cli import main

    code = main(["serve", *args])
    return code, capsys.readouterr().err.strip().splitlines()


def test_serve_with_a_busy_port_exits_2_with_one_line(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        code, lines = _serve_in_process(capsys, "--port", str(taken.getsockname()[1]))
    assert code == 2 and len(lines) == 1 and "cannot listen on 127.0.0.1" in lines[0], lines


def test_serve_bad_options_exit_2_with_one_line(capsys, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    for args, words in [
        (("--layer", "nope"), "unknown layer 'nope'"),
        (("--source", "/no/such/video.mp4"), "source not found"),
        (("--token", "short"), "at least 8 characters"),
        (("--host", "192.168.1.10"), "needs a token"),
    ]:
        code, lines = _serve_in_process(capsys, "--port", "0", *args)
        assert code == 2 and len(lines) == 1 and words in lines[0], (args, lines)
    monkeypatch.setenv(TOKEN_ENV, "")  # empty counts as none
    code, lines = _serve_in_process(capsys, "--host", "0.0.0.0")
    assert code == 2 and "needs a token" in lines[0]


def test_slow_clients_do_not_stall_others(server, photo):
    import socket

    st, client = server
    host, port = "127.0.0.1", st.port
    with socket.create_connection((host, port)) as trickle, socket.create_connection((host, port)) as stuck:
        # An upload that never finishes, and a stream reader that never reads.
        trickle.sendall(b"POST /api/dream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                        b"Content-Length: 100000\r\n\r\n\xff\xd8\xff")
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(1.0)
        t = time.perf_counter()
        r = client.post("/api/dream", content=jpeg(photo))
        assert r.status_code == 200 and time.perf_counter() - t < 20
        with client.stream("GET", "/stream.mjpg") as s:
            got = 0
            for chunk in s.iter_bytes():
                got += chunk.count(b"--frame\r\n")
                if got >= 3:
                    break
        assert got >= 3
        assert client.get("/api/stats").json()["http"]["uploading"] == 1  # the trickle, still waiting


# -- hostile clients -----------------------------------------------------------------------------------
def _from(address: str, port: int) -> socket.socket:
    """A connection to the server from loopback `address` (another client than the tests')."""
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(address, 0))


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server ends the connection within `within` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(1024):  # an answer first, perhaps: read on to the end
            pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_stalled_connections_cannot_lock_others_out(engine, monkeypatch):
    from livedream.server.protocol import GuardedH11Protocol

    monkeypatch.setattr(GuardedH11Protocol, "header_timeout", 1.5)
    service = Service(ServerSettings(port=0, **FAST), photos=engine)
    with service_thread(service) as st, httpx.Client(base_url=st.url, timeout=10) as client:
        stalled = []
        try:
            for _ in range(300):  # a request line, some headers, and then nothing
                try:
                    s = _from("127.0.0.2", st.port)
                    s.sendall(b"GET /api/layers HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Wait: ")
                    stalled.append(s)
                except OSError:
                    break
            time.sleep(0.3)
            t = time.perf_counter()
            assert client.get("/healthz").status_code == 200  # another client is served at once
            assert client.get("/api/layers").status_code == 200
            assert time.perf_counter() - t < 2
            # One address keeps at most 16 open: the server closed the others at once...
            open_ones = [s for s in stalled if not _closed_by_server(s, 0.05)]
            assert len(open_ones) <= 16, len(open_ones)
            # ... and lets go of the stalled ones when their headers do not come.
            assert all(_closed_by_server(s, 5) for s in open_ones)
        finally:
            for s in stalled:
                s.close()


def test_stalled_uploads_take_two_slots_and_time_out(engine, photo):
    service = Service(ServerSettings(port=0, idle_timeout=1.0, **FAST), photos=engine)
    with service_thread(service) as st, httpx.Client(base_url=st.url, timeout=30) as client:
        stalled, answers = [], []
        try:
            for _ in range(16):  # uploads that send a piece of the body and stall
                s = _from("127.0.0.3", st.port)
                s.sendall(b"POST /api/dream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                          b"Content-Length: 100000\r\n\r\n\xff\xd8\xff")
                stalled.append(s)
            time.sleep(0.5)
            t = time.perf_counter()
            r = client.post("/api/dream", content=jpeg(photo))  # someone else's upload
            assert r.status_code == 200 and time.perf_counter() - t < 20
            for s in stalled:
                s.settimeout(5)
                answers.append(s.recv(200).split(b"\r\n")[0])
        finally:
            for s in stalled:
                s.close()
    assert answers.count(b"HTTP/1.1 429 Too Many Requests") == 14, answers  # two at a time ...
    assert answers.count(b"HTTP/1.1 408 Request Timeout") == 2, answers  # ... and they time out


@pytest.mark.parametrize("body", [
    b'{"iters": 1' + b"0" * 400 + b"}",
    b"[" * 30_000 + b"]" * 30_000,  # within the 64 KB a body may have
    b'{"layer": ""}',
    b'{"strength": 1e999}',
], ids=["huge int", "deeply nested", "empty layer", "infinite"])
def test_hostile_params_are_400s_not_500s(server, body, caplog):
    _, client = server
    before = client.get("/api/params").json()["params"]
    r = client.put("/api/params", content=body)
    assert r.status_code == 400, r.text
    assert "internal error" not in r.text and not [rec for rec in caplog.records if rec.exc_info]
    assert client.get("/api/params").json()["params"] == before  # nothing changed


def test_instant_photos_need_a_student_for_the_layer(server, photo):
    _, client = server
    listed = client.get("/api/params").json()
    assert "instant" in listed["presets"]["image"]
    missing = client.post("/api/dream?preset=instant&layer=block3", content=jpeg(photo))
    assert missing.status_code == 400 and "no student dreams block3" in missing.json()["error"]
    if {"layer": "block9", "filter": None} in listed["students"]:  # a student ships for the default
        r = client.post("/api/dream?preset=instant", content=jpeg(photo))
        assert r.status_code == 200 and "preset=instant" in r.headers["x-dream-params"]
        out = decode(r.content)
        assert out.shape == photo.shape and np.abs(out.astype(int) - photo).mean() > 2.0
