"""The staged pipeline: source -> preprocess -> dream (a worker per device) -> postprocess -> sinks.

Stages are threads joined by bounded queues (the work in each releases the GIL: PyAV, OpenCV and
torch do). Two policies:
- lossless (files): every put blocks until there is room; no frame is dropped; output in order.
- newest (live): a full queue drops its oldest frame (counted), so latency stays low; at most
  `batch` frames per device wait for the dream stage.
Shutdown: at the end of the stream the END marker flows through every stage; `stop()` (Ctrl-C)
or a failing stage sets an event that every loop checks, and `run()` returns (or raises
`StageError` naming the stage) after all threads have ended. Sinks are opened and closed by the
caller, so an output file is finalized whatever happened here.
"""

from __future__ import annotations

import collections
import functools
import heapq
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np
import torch

from livedream.config import DreamConfig, VideoConfig
from livedream.control import Control
from livedream.devices import resolve_devices, worker_threads
from livedream.dream import Dreamer
from livedream.errors import LivedreamError
from livedream.frame import Frame, compose, dream_size
from livedream.student import student_for
from livedream.student.dreamer import StudentDreamer
from livedream.temporal import WarmStart

__all__ = [
    "Sink", "Pipeline", "PipelineReport", "StageError", "DreamSource", "build_dreamers", "dreamer_for",
    "fits",
]

_END = object()  # end-of-stream marker
_POLL = 0.05  # seconds between checks of the stop event while waiting on a queue


class Sink(Protocol):
    def write(self, frame: Frame) -> None: ...


class StageError(LivedreamError):
    """A stage raised; the message names it. The cause is kept in __cause__."""

    def __init__(self, stage: str, error: BaseException) -> None:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        super().__init__(f"{stage} stage failed: {first}")
        self.stage = stage


@dataclass
class PipelineReport:
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    wall_seconds: float = 0.0
    busy_seconds: dict[str, float] = field(default_factory=dict)
    queue_high_water: dict[str, int] = field(default_factory=dict)
    latencies_ms: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=10_000))  # the newest, for p50/p95
    cold_starts: int = 0
    interrupted: bool = False

    @property
    def fps(self) -> float:
        return self.frames_out / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "frames_in": self.frames_in, "frames": self.frames_out, "dropped": self.dropped,
            "wall_seconds": round(self.wall_seconds, 3), "fps": round(self.fps, 2),
            "busy_seconds": {k: round(v, 3) for k, v in self.busy_seconds.items()},
            "queue_high_water": dict(self.queue_high_water),
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1),
                           "p95": round(float(np.percentile(lat, 95)), 1)},
            "cold_starts": self.cold_starts, "interrupted": self.interrupted,
        }


DreamSource = Dreamer | StudentDreamer  # what a dream worker dreams with


def dreamer_for(cfg: VideoConfig, device: str) -> DreamSource:
    """The dream source for `cfg` on `device`: its student (see `student.student_for`), else a
    Dreamer (gradient ascent)."""
    student = student_for(cfg)
    if student is not None:
        return StudentDreamer(student, device=device, precision=cfg.dream.precision)
    return Dreamer(cfg.dream.replace(device=device))


_TILE_MARGIN = 32  # context around a rotating tile (a multiple of the networks' largest stride)
_COLD_WIDTH = 480  # a cold start of the rotating-tiles dream is dreamed whole at this width


def tile_box(seq: int, tiles: int, h: int, w: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the tile frame `seq` dreams: `tiles` cells of a grid (as square as
    possible), taken in turn."""
    cols = math.ceil(math.sqrt(tiles))
    rows = math.ceil(tiles / cols)
    row, col = divmod(seq % (rows * cols), cols)
    ys = [round(h * i / rows) for i in range(rows + 1)]
    xs = [round(w * i / cols) for i in range(cols + 1)]
    return ys[row], ys[row + 1], xs[col], xs[col + 1]


def _dream_tile(dreamer: Dreamer, frame: Frame, start: np.ndarray, cfg: DreamConfig, tiles: int
                ) -> np.ndarray:
    """The frame's residual: its warm start with one tile (this frame's turn) dreamed at full size,
    with a margin of context: the rotating-tiles ("detail") dream."""
    small = small_of(frame)
    h, w = small.shape[:2]
    y0, y1, x0, x1 = tile_box(frame.seq, tiles, h, w)
    ya, yb = max(0, y0 - _TILE_MARGIN), min(h, y1 + _TILE_MARGIN)
    xa, xb = max(0, x0 - _TILE_MARGIN), min(w, x1 + _TILE_MARGIN)
    crop = np.ascontiguousarray(start[ya:yb, xa:xb])
    out = dreamer.dream(torch.from_numpy(crop[None]).permute(0, 3, 1, 2), cfg)[0].permute(1, 2, 0).numpy()
    residual = start - small
    residual[y0:y1, x0:x1] += (out - crop)[y0 - ya:y1 - ya, x0 - xa:x1 - xa]
    return residual


def _dream_cold_small(dreamer: Dreamer, frame: Frame, start: np.ndarray, cfg: DreamConfig,
                      tiles: int) -> np.ndarray:
    """A cold start of the rotating-tiles dream: the whole frame at `_COLD_WIDTH`, its residual
    brought to full size (the tiles sharpen it over the next frames)."""
    small = small_of(frame)
    h, w = small.shape[:2]
    size = dream_size(w, h, _COLD_WIDTH)
    x = start if size == (w, h) else cv2.resize(start, size, interpolation=cv2.INTER_AREA)
    out = dreamer.dream(torch.from_numpy(np.ascontiguousarray(x)[None]).permute(0, 3, 1, 2), cfg)
    residual = out[0].permute(1, 2, 0).numpy() - x
    if size != (w, h):
        residual = cv2.resize(residual, (w, h), interpolation=cv2.INTER_LINEAR)
    return start - small + residual


def small_of(frame: Frame) -> np.ndarray:
    """The frame at dream size (h, w, 3) float32, made by the preprocess stage."""
    assert frame.small is not None, f"frame {frame.index} skipped the preprocess stage"
    return frame.small.astype(np.float32)


def fits(dreamer: DreamSource, cfg: VideoConfig) -> bool:
    """True when `dreamer` dreams what `cfg` asks for (same student, or same network)."""
    student = student_for(cfg)
    path = getattr(dreamer, "student_path", None)
    if student is not None or path is not None:
        return student is not None and path == student.path
    return dreamer.same_network(cfg.dream.replace(device=str(dreamer.device)))  # type: ignore[union-attr]


def build_dreamers(cfg: VideoConfig) -> list[DreamSource]:
    """One replica per device in `cfg.devices` (repeats allowed: `cpu,cpu`; `auto`: see
    `devices.resolve_devices`)."""
    return [dreamer_for(cfg, d) for d in resolve_devices(cfg.devices)]


class _Queue:
    """A bounded queue with a policy, a high-water mark and a drop count (both safe to update
    from several producers)."""

    def __init__(self, name: str, size: int, lossless: bool, stop: threading.Event) -> None:
        self.name, self.lossless, self.stop = name, lossless, stop
        self.q: queue.Queue[object] = queue.Queue(maxsize=size)
        self.high_water = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def put(self, item: object) -> None:
        if item is _END or self.lossless:
            while not self.stop.is_set():
                try:
                    self.q.put(item, timeout=_POLL)
                    break
                except queue.Full:
                    continue
        else:
            self._put_newest(item)
        with self._lock:
            self.high_water = max(self.high_water, self.q.qsize())

    def _put_newest(self, item: object) -> None:
        """Put `item`, dropping the oldest frame (never an end marker) while the queue is full."""
        while True:
            try:
                self.q.put_nowait(item)
                return
            except queue.Full:
                pass
            ends = []  # end markers met on the way to the oldest frame: they stay
            while True:
                try:
                    old = self.q.get_nowait()
                except queue.Empty:
                    break
                if old is not _END:
                    with self._lock:
                        self.dropped += 1
                    break
                ends.append(old)
            for end in ends:
                self.q.put_nowait(end)  # room: as many items were taken out

    def get(self) -> object:
        """The next item, or _END once the stop event is set."""
        while not self.stop.is_set():
            try:
                return self.q.get(timeout=_POLL)
            except queue.Empty:
                continue
        return _END

    def get_nowait(self) -> object | None:
        try:
            return self.q.get_nowait()
        except queue.Empty:
            return None


class Pipeline:
    """Runs `frames` through the dream and into `sinks`. One use: build, `run()`, done.

    `cfg`: the parameters, or a `Control` holding them, through which they may change while
    running (live steering): each dream worker reads them before each batch. `dreamers`: one per
    device (see `build_dreamers`). When the network itself changes (another layer, a student),
    a worker gets its new replica from `dreamer_for(config, device)`, in its own thread.
    """

    def __init__(self, frames: Iterable[Frame], sinks: Sequence[Sink], cfg: VideoConfig | Control,
                 dreamers: Sequence[DreamSource], *, live: bool = False, queue_size: int = 4,
                 on_frame: Callable[[Frame], None] | None = None,
                 dreamer_for: Callable[[VideoConfig, str], DreamSource] = dreamer_for) -> None:
        if not dreamers:
            raise ValueError("at least one Dreamer is needed")
        self.frames, self.sinks, self.dreamers = frames, list(sinks), list(dreamers)
        self.live, self.on_frame, self.dreamer_for = live, on_frame, dreamer_for
        self.control = cfg if isinstance(cfg, Control) else Control(cfg)
        cfg = self.control.config
        self.stop_event = threading.Event()
        # Files: each frame starts from the chain's state a fixed number of frames back (the
        # frames in flight at once), so the output does not depend on the workers' timing.
        # Live: from the newest finished dream (frames are dropped; latency first).
        lag = None if live else len(dreamers) * max(1, cfg.batch)
        self.warm = WarmStart(decay=cfg.decay, lag=lag)
        size = 1 if live else queue_size
        mk = lambda name, n: _Queue(name, n, not live, self.stop_event)  # noqa: E731
        self.q_pre = mk("preprocess", size)
        self.q_dream = [mk(f"dream{i}", max(1, cfg.batch) * (1 if live else 2))
                        for i in range(len(dreamers))]
        self.q_post = mk("postprocess", size * len(dreamers) * max(1, cfg.batch))
        self.q_sink = mk("sink", size)
        self.report = PipelineReport()
        # The caller's torch threads are shared out among the CPU replicas' workers.
        self._threads = worker_threads([str(d.device) for d in dreamers])
        self._busy: dict[str, float] = {}
        self._errors: list[StageError] = []
        self._first_index: int | None = None  # the source's first sequence number
        self._lock = threading.Lock()
        self.dream_ms: collections.deque[float] = collections.deque(maxlen=2000)  # newest batches
        self.dreams = 0  # dream batches so far (dream_ms stops growing at its length)
        self._queues = [self.q_pre, *self.q_dream, self.q_post, self.q_sink]
        self._finished = False  # run() has returned: the report holds every count
        self._refiners: dict[int, Dreamer] = {}  # worker -> gradient ascent on a student's dream

    # -- control --------------------------------------------------------------------------------
    @property
    def config(self) -> VideoConfig:
        return self.control.config

    def stop(self) -> None:
        self.stop_event.set()
        self.warm.abort()

    def run(self) -> PipelineReport:
        """Run to the end of the stream, a stop or a failure. Ctrl-C stops it and returns."""
        start = time.monotonic()
        threads = [threading.Thread(target=self._guard, args=(name, fn), name=f"livedream-{name}",
                                    daemon=True)
                   for name, fn in self._stages()]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.1)
        except KeyboardInterrupt:
            self.report.interrupted = True
            self.stop()
            for t in threads:
                t.join(timeout=5)
        self.report.wall_seconds = time.monotonic() - start
        self.report.busy_seconds = dict(self._busy)
        self.report.queue_high_water = {q.name: q.high_water for q in self._queues}
        self.report.dropped += sum(q.dropped for q in self._queues)
        self._finished = True
        if self._errors:
            raise self._errors[0]
        return self.report

    # -- stages ---------------------------------------------------------------------------------
    def _stages(self) -> list[tuple[str, Callable[[], None]]]:
        stages: list[tuple[str, Callable[[], None]]] = [
            ("source", self._source), ("preprocess", self._preprocess),
        ]
        stages += [(f"dream{i}", functools.partial(self._dream, i)) for i in range(len(self.dreamers))]
        return stages + [("postprocess", self._postprocess), ("sink", self._sink)]

    def _guard(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - any failure stops every stage
            err = StageError(name, e)
            err.__cause__ = e
            with self._lock:
                self._errors.append(err)
            self.stop()

    def dream_seconds(self) -> float:
        """Seconds the dream workers have spent dreaming so far, all together."""
        with self._lock:
            return self._busy.get("dream", 0.0)

    def source_kind(self) -> str:
        """"student" when the first worker dreams with a student, else "gradient"."""
        return "gradient" if getattr(self.dreamers[0], "student_path", None) is None else "student"

    def dropped(self) -> int:
        """Frames dropped so far (while running too: the report adds the queues' only at the end)."""
        if self._finished:
            return self.report.dropped
        return self.report.dropped + sum(q.dropped for q in self._queues)

    def _account(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._busy[stage] = self._busy.get(stage, 0.0) + seconds
            if stage == "dream":
                self.dream_ms.append(1000 * seconds)
                self.dreams += 1

    def _source(self) -> None:
        it: Iterator[Frame] = iter(self.frames)
        while not self.stop_event.is_set():
            t = time.perf_counter()
            frame = next(it, None)
            self._account("source", time.perf_counter() - t)
            if frame is None:
                break
            if self._first_index is None:
                self._first_index = frame.index
            frame.seq = self.report.frames_in
            self.report.frames_in += 1
            self.q_pre.put(frame)
        self.q_pre.put(_END)

    def _preprocess(self) -> None:
        turn = 0
        while (item := self.q_pre.get()) is not _END:
            t = time.perf_counter()
            frame: Frame = item  # type: ignore[assignment]
            h, w = frame.rgb.shape[:2]
            size = dream_size(w, h, self.config.dream_width)
            frame.small = frame.rgb if size == (w, h) else cv2.resize(
                frame.rgb, size, interpolation=cv2.INTER_AREA)
            self._account("preprocess", time.perf_counter() - t)
            self.q_dream[turn].put(frame)  # frames dealt in turn, one queue per device
            turn = (turn + 1) % len(self.q_dream)
        for q in self.q_dream:
            q.put(_END)

    def _dream(self, i: int) -> None:
        device = self.dreamers[i].device
        if device.type == "cpu":
            torch.set_num_threads(self._threads)  # this worker thread's own OpenMP team
            self._dream_loop(i)
            return
        # A CUDA stream of its own per worker: two replicas on one GPU overlap their kernels
        # instead of queueing on the default stream (the copy back to the CPU at the end of each
        # dream waits for this stream alone).
        try:
            stream = torch.cuda.Stream(device)
        except (RuntimeError, AssertionError):  # no usable CUDA runtime (tests mock one)
            self._dream_loop(i)
            return
        with torch.cuda.stream(stream):
            self._dream_loop(i)

    def _dream_loop(self, i: int) -> None:
        q = self.q_dream[i]
        while True:
            first = q.get()
            if first is _END:
                break
            batch: list[Frame] = [first]  # type: ignore[list-item]
            cfg = self.config
            dreamer = self._dreamer(i, cfg)
            self.warm.decay = cfg.decay
            ended = self._fill(q, batch, cfg.batch)
            t = time.perf_counter()
            if getattr(dreamer, "student_path", None) is None:
                self._dream_batch(dreamer, batch, cfg)  # type: ignore[arg-type]  # a Dreamer, maybe locked
            else:  # a student (maybe behind a lock: see server.photos.LockedDreamer)
                self._student_batch(dreamer, batch, cfg, i)  # type: ignore[arg-type]
            self._account("dream", time.perf_counter() - t)
            for frame in batch:
                self.q_post.put(frame)
            if ended:
                break
        self.q_post.put(_END)

    def _dreamer(self, i: int, cfg: VideoConfig) -> DreamSource:
        """Worker i's replica, rebuilt when what dreams changed (another layer, a student)."""
        dreamer = self.dreamers[i]
        if not fits(dreamer, cfg):
            dreamer = self.dreamers[i] = self.dreamer_for(cfg, str(dreamer.device))
            if self.live:  # the old residual belongs to another dream: the next frame starts cold
                self.warm.reset()
            # Files (ordered mode) keep their chain: a reset would drop the states that frames in
            # other workers wait for (a deadlock when replicas for another dream are given: each
            # worker rebuilds at its first batch); an older dream there only fades with the decay.
        return dreamer

    def _fill(self, q: _Queue, batch: list[Frame], size: int) -> bool:
        """Add frames to `batch` up to `size`: waiting for them (files) or taking what is there
        (live). True when the end marker was met."""
        while len(batch) < size:
            item = q.get_nowait() if self.live else q.get()
            if item is None:
                return False
            if item is _END:
                return True
            batch.append(item)  # type: ignore[arg-type]
        return False

    def _dream_batch(self, dreamer: Dreamer, batch: list[Frame], cfg: VideoConfig) -> None:
        """Warm-start each frame from the newest finished dream, dream, store the residuals."""
        starts, cold, warm_starts = [], [], {}
        for frame in batch:
            assert frame.small is not None  # preprocess made it
            small = frame.small.astype(np.float32)
            start = self.warm.start_for(self._chain_index(frame), frame.small) if cfg.warm else None
            warm_starts[frame.index] = start
            if start is None or start.residual is None:
                frame.cut = True
                starts.append(small)
            else:
                starts.append(np.clip(small + start.residual, 0.0, 255.0))
            cold.append(frame.cut)
        # Cold and warm frames need different iteration counts: dream them as two groups.
        for is_cold in (True, False):
            group = [k for k, c in enumerate(cold) if c == is_cold]
            if not group:
                continue
            dream_cfg = cfg.dream.replace(device=dreamer.cfg.device)
            if is_cold and cfg.warm:  # no previous dream to build on: dream it like an image
                dream_cfg = dream_cfg.replace(iters=max(cfg.cold_iters, cfg.dream.iters),
                                              step=cfg.cold_step)
            if cfg.tiles >= 2:  # the detail preset: one tile per frame, or a smaller cold dream
                for k in group:
                    dream = _dream_cold_small if is_cold else _dream_tile
                    batch[k].residual = dream(dreamer, batch[k], starts[k], dream_cfg, cfg.tiles)
                continue
            x = torch.from_numpy(np.stack([starts[k] for k in group])).permute(0, 3, 1, 2)
            y = dreamer.dream(x, dream_cfg)
            out = y.permute(0, 2, 3, 1).numpy()
            for j, k in enumerate(group):
                frame = batch[k]
                frame.residual = out[j] - small_of(frame)
        if cfg.warm:  # ordered: every frame in order (each waits for the one before); live: the newest
            by_index = sorted(batch, key=lambda f: f.index)
            stored = by_index if self.warm.lag else by_index[-1:]
            for frame in stored:
                self.warm.update(self._chain_index(frame), frame.small, frame.residual,  # type: ignore[arg-type]
                                 start=warm_starts[frame.index])
        with self._lock:
            self.report.cold_starts += sum(cold)

    def _student_batch(self, dreamer: StudentDreamer, batch: list[Frame], cfg: VideoConfig,
                       worker: int) -> None:
        """The student's dream of each frame (at `cfg.student_scale` of its size, brought back
        to full size), blended with the one before (moved by optical flow) where the flow holds:
        that is the chain's state; then `cfg.refine_iters` gradient steps on top, if any."""
        h, w = batch[0].rgb.shape[:2]
        size = (max(16, round(w * cfg.student_scale)), max(16, round(h * cfg.student_scale)))
        pictures = [f.rgb if size == (w, h) else cv2.resize(f.rgb, size, interpolation=cv2.INTER_AREA)
                    for f in batch]
        x = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).float()
        dreams = list(dreamer.residual(x).permute(0, 2, 3, 1).numpy())  # (h', w', 3) each
        if size != (w, h):
            dreams = [cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR) for d in dreams]
        # With gradient steps on top, the chain carries their change too (like gradient ascent's
        # warm start, it builds up over frames: stronger and steadier than fresh steps on each
        # frame), so each frame is blended, refined and stored before the next is blended.
        carried = cfg.warm and cfg.refine_iters > 0
        cold = 0
        for k in sorted(range(len(batch)), key=lambda k: batch[k].index):  # the chain's order
            frame = batch[k]
            if cfg.warm:
                assert frame.small is not None  # preprocess made it: the flow's size
                frame.residual, blended = self.warm.blend(self._chain_index(frame), frame.small,
                                                          dreams[k], cfg.blend, store=not carried)
            else:
                frame.residual, blended = dreams[k], False
            frame.cut = not blended
            cold += frame.cut
            if carried:
                self._refine(worker, [frame], cfg)
                assert frame.small is not None and frame.residual is not None
                self.warm.put(self._chain_index(frame), frame.small, frame.residual)
        with self._lock:
            self.report.cold_starts += cold
        if cfg.refine_iters > 0 and not carried:
            self._refine(worker, batch, cfg)

    def _refine(self, worker: int, batch: list[Frame], cfg: VideoConfig) -> None:
        """`cfg.refine_iters` gradient steps on each frame's dream, at `cfg.refine_width`: the
        change is added to the frame's residual."""
        refiner = self._refiners.get(worker)
        device = str(self.dreamers[worker].device)
        if refiner is None or not refiner.same_network(cfg.dream.replace(device=device)):
            refiner = self._refiners[worker] = Dreamer(cfg.dream.replace(device=device))
        h, w = batch[0].rgb.shape[:2]
        size = dream_size(w, h, cfg.refine_width)
        starts = []
        for frame in batch:
            assert frame.residual is not None
            rgb = frame.rgb if size == (w, h) else cv2.resize(frame.rgb, size, interpolation=cv2.INTER_AREA)
            res = frame.residual if size == (w, h) else cv2.resize(frame.residual, size,
                                                                    interpolation=cv2.INTER_AREA)
            starts.append(np.clip(rgb.astype(np.float32) + res, 0, 255))
        x = torch.from_numpy(np.stack(starts)).permute(0, 3, 1, 2)
        dreamed = refiner.dream(x, cfg.dream.replace(device=device, iters=cfg.refine_iters))
        for frame, start, out in zip(batch, starts, dreamed.permute(0, 2, 3, 1).numpy(), strict=True):
            change = out - start  # (h, w, 3)
            if size != (w, h):
                change = cv2.resize(change, (w, h), interpolation=cv2.INTER_LINEAR)
            assert frame.residual is not None
            frame.residual = frame.residual + change

    def _chain_index(self, frame: Frame) -> int:
        """The frame's place in the warm-start chain: its position in the run (ordered mode,
        no gaps) or its source index (live: newer frames have higher ones)."""
        return frame.seq if self.warm.lag else frame.index

    def _postprocess(self) -> None:
        ends, next_index = 0, None
        pending: list[tuple[int, int, Frame]] = []  # a heap by index
        while ends < len(self.dreamers):
            item = self.q_post.get()
            if item is _END:
                ends += 1
                if self.stop_event.is_set():
                    break
                continue
            t = time.perf_counter()
            frame: Frame = item  # type: ignore[assignment]
            self._compose(frame)
            self._account("postprocess", time.perf_counter() - t)
            if self.live:  # newest first: a frame older than one already shown is dropped
                if next_index is not None and frame.index < next_index:
                    self.report.dropped += 1
                    continue
                next_index = frame.index + 1
                self.q_sink.put(frame)
                continue
            heapq.heappush(pending, (frame.index, id(frame), frame))
            if next_index is None:
                next_index = self._first_index if self._first_index is not None else frame.index
            while pending and pending[0][0] == next_index:
                self.q_sink.put(heapq.heappop(pending)[2])
                next_index += 1
        for _, _, frame in sorted(pending, key=lambda p: p[0]):  # indices skipped by the source
            self.q_sink.put(frame)
        self.q_sink.put(_END)

    def _compose(self, frame: Frame) -> None:
        frame.out = compose(frame.rgb, frame.residual, self.config.strength)  # type: ignore[arg-type]

    def _sink(self) -> None:
        while (item := self.q_sink.get()) is not _END:
            t = time.perf_counter()
            frame: Frame = item  # type: ignore[assignment]
            for sink in self.sinks:
                sink.write(frame)
            self.report.frames_out += 1
            self.report.latencies_ms.append(1000 * (time.monotonic() - frame.captured))
            if self.on_frame is not None:
                self.on_frame(frame)
            self._account("sink", time.perf_counter() - t)

