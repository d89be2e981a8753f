"""Live mode without hardware: paced sources, fake virtual camera, MJPEG over real HTTP, the window
under Xvfb, Ctrl-C on a real process, sources that fail mid-stream, one-line errors."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from clips import make_clip, picture

from livedream.cli import main as cli_main
from livedream.config import video_preset
from livedream.control import Control
from livedream.errors import InputError, OutputError
from livedream.frame import Frame
from livedream.io import window as window_module
from livedream.io.live_sources import CameraSource, FilePlaybackSource, LiveSource, SourceError, open_source
from livedream.io.record import RecordSink
from livedream.io.sinks import ListSink
from livedream.io.sources import SyntheticSource
from livedream.io.window import WindowSink
from livedream.live.keys import Steering
from livedream.live.run import run_live
from livedream.pipeline import build_dreamers

pytestmark = pytest.mark.slow  # live runs in real time, processes, servers


def main(args: list[str]) -> int:
    """`livedream live ARGS` in this process."""
    return cli_main(["live", *args])


SMALL = dict(dream_width=96, iters=1, octaves=1, cold_iters=1, jitter=2, step=3.0)
FAST = ["--dream-width", "96", "--iters", "1", "--cold-iters", "1", "--jitter", "2"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cfg():
    return video_preset("realtime", **SMALL)


@pytest.fixture(scope="module")
def dreamers(cfg):
    return build_dreamers(cfg)


def live_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("livedream")]


def wait_for(predicate, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def stream_server(stream, token=None, host="127.0.0.1"):
    """The app's MJPEG routes for `stream` on a thread (the same code as `live --mjpeg`)."""
    from livedream.server.app import create_stream_app
    from livedream.server.runner import ServerThread

    return ServerThread(create_stream_app(stream, token), stop_streams=stream.close, host=host).start()


class Feeder:
    """An MJPEG server fed by a paced synthetic camera: a network camera for CameraSource."""

    def __init__(self, width: int = 128, height: int = 96, frames: int = 10**9) -> None:
        from livedream.server.stream import MjpegStream

        self.stream = MjpegStream()
        self.broadcast = self.stream.broadcast
        self.server = stream_server(self.stream)
        self.url = f"{self.server.url}/stream.mjpg"
        self.stop = threading.Event()
        self.sent = 0
        self.source = SyntheticSource(width, height, frames=frames, paced=True)
        self.thread = threading.Thread(target=self._feed, name="test-feeder", daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        for frame in self.source:
            if self.stop.is_set():
                return
            self.broadcast.publish(self.broadcast.encode(frame.rgb))
            self.sent += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.broadcast.close()
        self.server.close()


def smooth_camera(width: int, height: int, fps: float = 30.0):
    """A paced camera of smooth pictures (gradients, a square), as Frames."""
    start, i = time.monotonic(), 0
    while True:
        time.sleep(max(0.0, start + i / fps - time.monotonic()))
        yield Frame(i, i / fps, picture(i, width, height))
        i += 1


# -- sources ----------------------------------------------------------------------------------------
def test_file_source_plays_at_its_own_rate_and_drops_what_is_not_read(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", width=64, height=48, frames=30, fps=30, audio=False)
    with FilePlaybackSource(str(clip)) as src:
        start, got = time.monotonic(), []
        for frame in src:
            got.append(frame)
            time.sleep(0.1)  # a consumer three times slower than the file
        wall = time.monotonic() - start
    assert 0.9 < wall < 2.0, wall  # real time: 30 frames at 30 fps, not as fast as it decodes
    assert 5 <= len(got) <= 15, len(got)
    assert [f.index for f in got] == sorted({f.index for f in got})
    assert src.dropped + len(got) == src.captured == 30
    assert got[-1].index == 29 and got[-1].time == pytest.approx(29 / 30, abs=1e-3)  # the last one waits
    assert src.failure is None and not live_threads()


def test_file_source_loops_with_times_running_on(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", width=64, height=48, frames=10, fps=20, audio=False)
    with FilePlaybackSource(str(clip), loop=True) as src:
        times = []
        for frame in src:
            times.append(frame.time)
            if frame.time > 1.2:  # 0.5 s per pass: the third pass
                break
    assert times == sorted(times) and times[-1] > 1.2
    assert src.captured > 20 and not live_threads()


def test_camera_source_reads_a_network_stream_newest_frame_only():
    feeder = Feeder()
    try:
        cam = CameraSource(feeder.url, retries=0, stall_timeout=2.0)
        got = []
        with cam:
            for frame in cam:
                got.append(frame)
                time.sleep(0.1)  # slower than the camera's 30 fps
                if len(got) == 8:
                    break
        assert all(f.rgb.shape == (96, 128, 3) and f.rgb.dtype == np.uint8 for f in got)
        indices = [f.index for f in got]
        assert indices == sorted(indices) and indices[-1] - indices[0] > len(got)  # skipped stale ones
        assert cam.dropped > 0 and cam.failure is None
        assert got[-1].captured - got[0].captured == pytest.approx(got[-1].time - got[0].time, abs=0.01)
    finally:
        feeder.close()
    assert not live_threads()


def test_a_stream_that_goes_away_is_retried_then_ends_with_a_message():
    feeder = Feeder()
    cam = CameraSource(feeder.url, retries=2, backoff=0.1, stall_timeout=1.0)
    start, count = time.monotonic(), 0
    for _ in cam:
        count += 1
        if count == 10:
            feeder.close()  # the server goes away mid-stream
    elapsed = time.monotonic() - start
    cam.close()
    assert count >= 10 and elapsed < 8, elapsed
    assert isinstance(cam.failure, SourceError)
    assert "lost" in str(cam.failure) and "reopening failed 3 times" in str(cam.failure)
    assert "\n" not in str(cam.failure) and not live_threads()


def test_a_camera_that_cannot_open_gives_up_after_the_retries():
    cam = CameraSource("/dev/video-livedream-missing", retries=2, backoff=0.05)
    start = time.monotonic()
    with pytest.raises(SourceError, match=r"cannot be opened: device not found; tried 3 times"):
        cam.wait_ready(timeout=5)
    assert time.monotonic() - start < 2
    cam.close()


def test_a_source_failing_mid_stream_ends_the_live_run_with_a_message(cfg, dreamers):
    class Flaky(LiveSource):
        name = "flaky camera"

        def _capture(self) -> None:
            src = SyntheticSource(64, 48, frames=10**9, paced=True)
            for frame in src:
                if self._stop.is_set():
                    return
                if frame.index == 20:
                    raise SourceError("flaky camera unplugged")
                self._publish(frame.rgb, frame.time)

    sink = ListSink()
    start = time.monotonic()
    result = run_live(Flaky(), [sink], cfg, dreamers=list(dreamers), seconds=20)
    assert time.monotonic() - start < 5
    assert result.stopped_by == "source failed" and result.failure == "flaky camera unplugged"
    assert result.report["failure"] == "flaky camera unplugged" and 0 < len(sink.frames) <= 20
    assert not live_threads()


@pytest.mark.parametrize("spec, message", [
    ("no/such/clip.mp4", "source not found: no/such/clip.mp4"),
    ("/dev/video-livedream-missing", "device not found"),
    ("rtsp:/camera/stream", "malformed URL"),
    ("http://", "malformed URL"),
    ("http://cam:99999/x", "malformed URL"),
    ("rtsp://cam er a/x", "malformed URL"),
    ("gopher://cam/x", "unsupported URL scheme"),
    ("synthetic:big", "malformed synthetic source"),
])
def test_bad_sources_fail_at_once_with_one_line(spec, message):
    start = time.monotonic()
    with pytest.raises(InputError, match=message) as info:
        open_source(spec)
    assert "\n" not in str(info.value) and time.monotonic() - start < 0.5


def test_open_source_kinds(tmp_path):
    assert isinstance(open_source("synthetic:80x60@15"), SyntheticSource)
    assert isinstance(open_source("0"), CameraSource)  # not opened until iterated
    assert isinstance(open_source("rtsp://user:pw@10.0.0.2:554/stream"), CameraSource)
    clip = make_clip(tmp_path / "c.mp4", frames=3, audio=False)
    src = open_source(str(clip), loop=True)
    assert isinstance(src, FilePlaybackSource) and src.loop
    src.close()
    assert "pw" not in CameraSource("rtsp://user:pw@10.0.0.2/s").name


@pytest.mark.parametrize("source", ["missing-clip.mp4", "http://:80/x"])
def test_cli_bad_source_exits_2_with_one_line(source, capsys):
    start = time.monotonic()
    assert main(["--source", source, "--seconds", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("livedream: error: ") and "\n" not in err, err
    assert time.monotonic() - start < 1


@pytest.mark.parametrize("spec", [
    "rtsp://user:hunter2@cam:abc/x",  # the parser's message quotes what it took for a port
    "rtsp://user:hun/ter2@cam/x",  # a / in the password: the parser cuts the host there
    "rtsp://user:hun@ter2@cam/x",  # an @ in the password
    "rtsp://:hunter2@cam/x",  # no user name
    "rtsp:/user:hunter2@cam/x",  # one slash
    "rtsp://user:hun ter2@cam/x",  # a space
    "rtsp://user:hun\nter2@cam/x",  # a newline
    "gopher://user:hunter2@cam/x",
    "rtsp://cam/x?user=admin&password=hunter2",  # credentials in the query string
    "http://cam/video.cgi?PWD=hunter2&res=640",
    "rtsp://cam/live?token=hunter2",
])
def test_a_url_password_is_never_shown_by_the_checks_or_the_camera_name(spec):
    try:
        source = open_source(spec, retries=0)
        shown = source.name  # what its log lines and errors call it
    except InputError as e:
        shown = str(e)
    assert "hun" not in shown and "ter2" not in shown and "***" in shown, shown
    assert "\n" not in shown


def test_cli_never_prints_or_writes_a_url_password(tmp_path):
    report = tmp_path / "r.json"
    url = "rtsp://user:secretpw@127.0.0.1:9/x"  # nothing listens on port 9: it cannot connect
    done = subprocess.run([sys.executable, "-m", "livedream", "live", "--source", url, "--seconds", "1",
                           "--report", str(report), "--retries", "1", *FAST],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert "rtsp://user:***@127.0.0.1:9/x" in done.stderr  # the retry's warning and the error
    assert "secretpw" not in done.stderr + done.stdout
    assert not report.exists() or "secretpw" not in report.read_text()

    feeder = Feeder()  # a stream that works, then goes away: stats, the report, "lost" lines
    try:
        cli = Cli("--source", feeder.url.replace("://", "://user:secretpw@"), "--retries", "1",
                  "--stall-timeout", "1", "--report", str(report), "--seconds", "60",
                  "--stats-every", "0.5", "--record", str(tmp_path / "rec.mp4"), *FAST)
        cli.wait_line("live: in")
    finally:
        feeder.close()
    assert cli.finish(timeout=20) == 1, cli.err
    assert "user:***@127.0.0.1" in cli.err and "secretpw" not in cli.err
    data = report.read_text()
    assert "user:***@127.0.0.1" in data and "secretpw" not in data
    with av.open(str(tmp_path / "rec.mp4")) as c:
        assert "secretpw" not in str(c.metadata)


# -- outputs ----------------------------------------------------------------------------------------
def test_fake_virtual_camera_receives_the_exact_frames(cfg, dreamers):
    pyvirtualcam = pytest.importorskip("pyvirtualcam")
    from livedream.io.fake_vcam import FAKE_BACKEND, FakeVirtualCamera
    from livedream.io.vcam import VirtualCameraSink

    received: list[np.ndarray] = []
    vcam = VirtualCameraSink(96, 72, 30, backend=FAKE_BACKEND, options={"frames": received})
    assert pyvirtualcam.camera.BACKENDS[FAKE_BACKEND] is FakeVirtualCamera  # its own registry
    assert vcam.backend == FAKE_BACKEND
    sink = ListSink()
    source = SyntheticSource(96, 72, frames=10**9, paced=True)
    result = run_live(source, [vcam, sink], cfg, dreamers=list(dreamers), seconds=1.5)
    assert result.stopped_by == "seconds" and len(received) == len(sink.frames) >= 10
    for got, frame in zip(received, sink.frames, strict=True):
        assert got.shape == (72, 96, 3) and np.array_equal(got, frame.out)
    assert vcam.camera is None  # closed by run_live
    assert not live_threads()


def test_virtual_camera_without_a_backend_says_what_was_tried_and_how_to_install():
    pytest.importorskip("pyvirtualcam")
    from livedream.io.vcam import VirtualCameraSink

    try:
        sink = VirtualCameraSink(64, 48, 30)
    except OutputError as e:
        text = str(e)
        assert "\n" not in text and text.startswith("no virtual camera could start (tried ")
        assert "livedream-fake" not in text and "v4l2loopback-dkms" in text and "OBS" in text
        if sys.platform.startswith("linux"):
            assert "v4l2loopback:" in text
    else:
        sink.close()
        pytest.skip("a real virtual camera is available here")
    with pytest.raises(OutputError, match="unknown virtual camera backend 'nope'"):
        VirtualCameraSink(64, 48, 30, backend="nope")


def test_mjpeg_endpoint_serves_dreamed_jpegs_to_a_real_http_client(cfg, dreamers):
    from livedream.server.stream import MjpegStream

    stream, sink = MjpegStream(), ListSink()
    jpegs: list[bytes] = []
    with stream_server(stream) as server:

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("GET", "/stream.mjpg")
            resp = conn.getresponse()
            assert resp.status == 200
            kind = resp.getheader("Content-Type")
            assert kind.startswith("multipart/x-mixed-replace; boundary=")
            boundary = kind.split("boundary=")[1].encode()
            while len(jpegs) < 6:
                line = resp.fp.readline()
                if not line:
                    break
                if line.strip() == b"--" + boundary:
                    headers = http.client.parse_headers(resp.fp)
                    assert headers["Content-Type"] == "image/jpeg"
                    jpegs.append(resp.fp.read(int(headers["Content-Length"])))
            conn.close()

        reader = threading.Thread(target=client)
        reader.start()
        source = smooth_camera(128, 96)  # JPEG keeps it within ~1 level: the dream stands out
        stop = threading.Event()
        threading.Thread(target=lambda: (wait_for(lambda: len(jpegs) >= 6), stop.set())).start()
        bold = cfg.replace(strength=2.0, cold_iters=3)  # clearly above JPEG's loss from the first frame
        result = run_live(source, [stream, sink], bold, dreamers=list(dreamers), seconds=30, stop=stop)
        reader.join(timeout=5)
        assert result.stopped_by == "stop"
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/nope")
        assert conn.getresponse().status == 404
        conn.close()
    assert len(jpegs) == 6

    def diff(a: np.ndarray, b: np.ndarray) -> float:
        """Mean |a - b| of the luma at half size, where JPEG loses little (it halves the chroma)."""
        small = [cv2.resize(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), (64, 48), interpolation=cv2.INTER_AREA)
                 for x in (a, b)]
        return float(np.abs(small[0].astype(np.float32) - small[1]).mean())

    for data in jpegs:
        rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        assert rgb.shape == (96, 128, 3)
        errors = [diff(rgb, f.out) for f in sink.frames]
        k = int(np.argmin(errors))
        to_source = diff(rgb, sink.frames[k].rgb)
        dreamed = diff(sink.frames[k].out, sink.frames[k].rgb)
        assert errors[k] < 1.5, errors[k]  # it is one of the dreamed frames, JPEG-compressed ...
        assert to_source > 3 * errors[k] and dreamed > 3 * errors[k], (to_source, dreamed)  # ... not a source
    assert not live_threads()


def test_mjpeg_port_taken_is_one_line_exit_2(capsys):
    from livedream.server.runner import bind

    with bind("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        assert main(["--source", "synthetic:64x48", "--mjpeg", str(port), "--seconds", "1", *FAST]) == 2
    err = capsys.readouterr().err
    assert err == f"livedream: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_mjpeg_has_the_apps_rules_host_check_and_token_beyond_this_machine(capsys):
    import httpx

    from livedream.server.stream import MjpegStream

    # Only this machine's names are answered without a token (no DNS rebinding).
    with stream_server(MjpegStream()) as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        foreign = httpx.get(f"{server.url}/snapshot.jpg", headers={"Host": "evil.example"})
        assert foreign.status_code == 421
    # Another address needs a token: refused at once, one line ...
    assert main(["--source", "synthetic:64x48", "--mjpeg", "0", "--mjpeg-host", "0.0.0.0",
                 "--seconds", "1", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("livedream: error: serving on 0.0.0.0 needs a token") and err.count("\n") == 1
    # ... and with one, every route but /healthz asks for it.
    with stream_server(MjpegStream(), token="s3cret-token") as server:
        assert httpx.get(f"{server.url}/stream.mjpg").status_code == 401
        assert httpx.get(f"{server.url}/snapshot.jpg?token=s3cret-token").status_code == 503  # no frame yet
        assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_recording_of_a_file_source_keeps_its_sound(tmp_path, cfg, dreamers):
    clip = make_clip(tmp_path / "in.mp4", width=96, height=64, frames=30, fps=30, audio=True)
    out = tmp_path / "rec.mp4"
    rec = RecordSink(str(out), fps=30, audio_source=str(clip))
    result = run_live(FilePlaybackSource(str(clip)), [rec], cfg, dreamers=list(dreamers), seconds=10)
    assert result.stopped_by == "source ended" and result.report["recording"]["frames"] == rec.count > 3
    with av.open(str(out)) as c:
        assert [s.codec_context.name for s in c.streams.audio] == ["aac"]
        frames = list(c.decode(video=0))
        assert len(frames) == rec.count and (frames[0].width, frames[0].height) == (96, 64)
        assert float(c.duration / av.time_base) == pytest.approx(1.0, abs=0.15)
    assert not live_threads()


def test_window_keys_steer_through_control(tmp_path, cfg, monkeypatch):
    monkeypatch.setattr(window_module, "check_display", lambda: None)
    control = Control(cfg)
    events: list[object] = []
    win = WindowSink(on_quit=lambda: events.append("quit"), on_pause=events.append)
    win.on_key = Steering(control, win, str(tmp_path))
    frame = SyntheticSource(64, 48).frame(0)
    win.write(Frame(0, 0.0, frame, out=frame))
    assert win.handle_key(ord("+")) == "iterations 2" and control.config.dream.iters == 2
    assert win.handle_key(ord("-")) == "iterations 1"
    assert win.handle_key(ord("-")) == "iterations 1"  # never below 1
    assert win.handle_key(ord("]")) == "strength 1.1" and control.config.strength == pytest.approx(1.1)
    win.handle_key(ord("["))
    assert control.config.strength == pytest.approx(1.0)
    assert win.handle_key(ord("n")) == "layer block10"  # effnet-lite0's default is block9
    assert control.config.dream.layers == ("block10",)
    win.handle_key(ord("p"))
    win.handle_key(ord("p"))
    assert control.config.dream.layers == ("block8",)
    assert win.handle_key(ord(" ")) == "paused" and events == [True]
    win.handle_key(ord(" "))
    assert events == [True, False]
    shown = win.show_stats
    win.handle_key(ord("i"))
    assert win.show_stats is not shown
    saved = win.handle_key(ord("s"))
    path = saved.removeprefix("saved ")
    assert os.path.isfile(path) and np.array_equal(cv2.imread(path)[:, :, ::-1], frame)
    assert win.handle_key(ord("q")) == "quit" and events[-1] == "quit" and not win.tick()
    win.close()
    win.close()


def test_the_d_key_cycles_gradient_ascent_and_the_shipped_students(tmp_path, cfg, monkeypatch):
    from livedream.config import DreamConfig
    from livedream.distill.data import teacher_params
    from livedream.student import weights
    from livedream.student.net import StudentNet, StudentSpec

    net = StudentNet(StudentSpec(channels=(8, 8, 16, 16), blocks=1))
    for name, dream in [("a.pt", DreamConfig()), ("b.pt", DreamConfig(layers=("block5",), channel=3)),
                        ("c.pt", DreamConfig(model="googlenet"))]:
        (tmp_path / name).write_bytes(weights.save_student(net, teacher_params(dream), {}))
    monkeypatch.setattr(weights, "SHIPPED", tmp_path)
    weights._shipped_index.cache_clear()
    try:
        control = Control(cfg)  # realtime: the shipped student of its layer (here a.pt)
        keys = Steering(control)
        assert cfg.student == "auto"
        assert keys("d") == "student block5 filter 3"
        assert control.config.dream.layers == ("block5",) and control.config.dream.channel == 3
        assert keys("d") == "gradient ascent" and control.config.student is None  # googlenet's is skipped
        assert keys("d") == "student block9" and control.config.student == str(tmp_path / "a.pt")
        assert control.config.dream.channel is None
        assert keys("d") == "student block5 filter 3"
        monkeypatch.setattr(weights, "SHIPPED", tmp_path / "none")
        weights._shipped_index.cache_clear()
        assert keys("d").startswith("no student ships") and control.config.student is not None
    finally:
        weights._shipped_index.cache_clear()


def test_window_needs_a_display(monkeypatch, cfg):
    if not sys.platform.startswith("linux"):
        pytest.skip("the display check is for X11 on Linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(OutputError, match="--window needs a display"):
        WindowSink()


@pytest.fixture
def xvfb():
    """An Xvfb display for the window test; skipped where Xvfb is not installed."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb): the window sink needs a display")
    r, w = os.pipe()
    proc = subprocess.Popen([exe, "-displayfd", str(w), "-screen", "0", "320x240x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        pytest.skip("Xvfb did not start")
    yield f":{number}"
    proc.terminate()
    proc.wait(timeout=5)


class Cli:
    """`python -m livedream live ARGS` in a real process; its stderr lines collected as they come."""

    started: list[subprocess.Popen] = []  # killed after each test (see _no_orphans)

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "livedream", "live", *args], cwd=ROOT,
                                     env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        Cli.started.append(self.proc)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.lines.append(line.rstrip("\n"))

    @property
    def err(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, text: str, timeout: float = 60) -> None:
        found = wait_for(lambda: any(text in line for line in self.lines) or self.proc.poll() is not None,
                         timeout)
        assert found and self.proc.poll() is None, f"no {text!r} line:\n{self.err}"

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code


@pytest.fixture(autouse=True)
def _no_orphans():
    """A test that fails before its `live` process ends must not leave it running (one such
    process dreamed on for 50 minutes after a failed run, slowing everything after it)."""
    yield
    while Cli.started:
        proc = Cli.started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


WINDOW_SCRIPT = """
import json, sys, cv2
from livedream.config import ConfigError, video_preset
from livedream.control import Control
from livedream.io.window import WindowSink
from livedream.io.sources import SyntheticSource
from livedream.live.run import run_live

cfg = video_preset("realtime", dream_width=96, iters=1, cold_iters=1, jitter=2)
window = WindowSink(title="live")
seen = []
def on_stats(stats):  # called from this (the window's) thread while the run goes on
    seen.append((cv2.getWindowProperty("live", cv2.WND_PROP_VISIBLE), cv2.getWindowImageRect("live")))
result = run_live(SyntheticSource(160, 120, frames=10**9, paced=True), [], cfg, window=window,
                  seconds=2.0, stats_every=0.5, on_stats=on_stats)
json.dump({"frames": result.report["frames"], "stopped_by": result.stopped_by, "seen": seen}, sys.stdout)
"""


def test_window_sink_under_xvfb(xvfb):
    done = subprocess.run([sys.executable, "-c", WINDOW_SCRIPT], env={**os.environ, "DISPLAY": xvfb},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["stopped_by"] == "seconds" and data["frames"] > 10, data
    visible, (_, _, width, height) = data["seen"][-1]
    assert visible >= 1 and width > 0 and height > 0, data["seen"]


def test_cli_every_output_at_once_then_no_thread_left(tmp_path, capsys):
    pytest.importorskip("pyvirtualcam")
    report, rec = tmp_path / "r.json", tmp_path / "rec.mkv"
    code = main(["--source", "synthetic:128x96@30", "--vcam", "--vcam-backend", "livedream-fake",
                 "--mjpeg", "0", "--record", str(rec), "--report", str(report), "--seconds", "1.5", *FAST])
    assert code == 0, capsys.readouterr().err
    data = json.loads(report.read_text())
    assert data["outputs"] == ["VirtualCameraSink", "MjpegStream", "RecordSink"]
    assert data["mjpeg"].startswith("http://127.0.0.1:") and data["stopped_by"] == "seconds"
    assert data["recording"]["frames"] > 5 and rec.is_file() and data["size"] == [128, 96]
    assert not live_threads()


def test_recording_stores_the_parameters_and_the_report_names_the_default_layer(tmp_path, capsys):
    report, rec = tmp_path / "r.json", tmp_path / "rec.mp4"
    code = main(["--source", "synthetic:96x64@30", "--record", str(rec), "--report", str(report),
                 "--seconds", "1", *FAST])
    assert code == 0, capsys.readouterr().err
    with av.open(str(rec)) as c:
        stored = c.metadata.get("livedream", "")
    assert "model=effnet-lite0" in stored and "dream_width=96" in stored, c.metadata
    assert json.loads(report.read_text())["parameters"]["layer"] == "block9"  # no --layer: the default


# -- stopping ---------------------------------------------------------------------------------------
def test_ctrl_c_exits_within_2_s_finalizes_the_recording_and_writes_the_report(tmp_path):
    report, rec = tmp_path / "r.json", tmp_path / "rec.mp4"
    cli = Cli("--source", "synthetic:320x240@30", "--record", str(rec), "--report", str(report),
              "--stats-every", "0.5", *FAST)
    cli.wait_line("live: in")  # frames are flowing
    sent = time.monotonic()
    cli.proc.send_signal(signal.SIGINT)
    code = cli.finish(timeout=10)
    elapsed = time.monotonic() - sent
    assert elapsed < 2.0, elapsed
    assert code in (0, 130), cli.err
    assert "Traceback" not in cli.err and cli.lines[-1] == "livedream: interrupted", cli.err
    data = json.loads(report.read_text())
    assert data["interrupted"] is True and data["stopped_by"] == "interrupted"
    assert data["frames"] > 0 and set(data["latency_ms"]) == {"p50", "p95"}
    assert data["fps_out"] > 0 and "dropped" in data and data["recording"]["frames"] > 0
    with av.open(str(rec)) as c:
        assert len(list(c.decode(video=0))) == data["recording"]["frames"]
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]  # no half-written file left


def test_cli_source_lost_mid_run_exits_1_with_a_message(tmp_path):
    feeder = Feeder()
    report = tmp_path / "r.json"
    try:
        cli = Cli("--source", feeder.url, "--retries", "1", "--stall-timeout", "1",
                  "--report", str(report), "--seconds", "60", "--stats-every", "0.5", *FAST)
        cli.wait_line("live: in")
    finally:
        feeder.close()  # the camera goes away mid-run
    assert cli.finish(timeout=20) == 1, cli.err
    last = cli.lines[-1]
    assert last.startswith("livedream: error: http://127.0.0.1:") and "lost" in last, cli.err
    data = json.loads(report.read_text())
    assert data["stopped_by"] == "source failed" and data["frames"] > 0
