"""What every section of the benchmark suite shares: the plan (sizes per mode), timing with
medians and spread, targets and their verdicts, the sample photo and the sample clip.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

import cv2
import numpy as np
import torch

if TYPE_CHECKING:
    from livedream.pipeline import PipelineReport

__all__ = [
    "Plan", "ImageCase", "Target", "FULL", "QUICK", "SAMPLES", "summary", "repeat", "verdict",
    "photo", "Clip", "load_clip", "replay", "limited", "load_average", "log", "Summary", "RunReport",
    "run_report",
]

SAMPLES = Path(__file__).resolve().parents[2] / "samples"  # in a source checkout


@dataclass(frozen=True)
class Target:
    """A figure to beat: seconds (lower is better) or a rate / ratio (higher is better)."""

    label: str  # where it comes from, e.g. "Caffe on a K80 (published)"
    value: float
    unit: str = "s"
    higher: bool = False  # True: the measurement must be >= value; False: <= value

    def met(self, measured: float) -> bool:
        return measured >= self.value if self.higher else measured <= self.value

    def text(self) -> str:
        unit = self.unit if self.unit == "x" else f" {self.unit}"
        return f"{'>=' if self.higher else '<='} {self.value:g}{unit}: {self.label}"


@dataclass(frozen=True)
class ImageCase:
    """One single-image row: a size and the parameters (on top of `classic`), and its targets."""

    id: str  # e.g. "classic-182x158"
    width: int
    height: int
    overrides: tuple[tuple[str, object], ...] = ()  # DreamConfig fields over the classic preset
    targets: tuple[Target, ...] = ()
    default_network_only: tuple[Target, ...] = ()  # targets that apply to effnet-lite0 only


PUBLISHED_SMALL = (Target("Caffe, 4-vCPU CPU (published)", 11.0), Target("Caffe, K80 (published)", 1.6))
HACKATHON = (Target("2x GTX 1080 Ti + XLA (hackathon)", 6.5),)
HACKATHON_REDUCED = (Target("K80, 5 iters x 1 octave (hackathon)", 2.5),)
REDUCED = (("iters", 5), ("octaves", 1))


@dataclass(frozen=True)
class Plan:
    """Sizes, repeats and time limits of one run of the suite. FULL makes the published table;
    QUICK proves every path works (CI), at sizes too small to judge against any target."""

    name: str
    judged: bool  # compare rows with their targets (only at the targets' own sizes)
    repeats: int  # timed runs per row after a warm-up; median and spread reported
    budget: float  # seconds per row after which no further repeat starts (>= 1 run always)
    # image
    image_cases: tuple[ImageCase, ...]
    networks: tuple[str, ...] = ("effnet-lite0", "googlenet")
    bf16_cases: tuple[str, ...] = ()  # image case ids that also run in bf16 (slow on this CPU)
    tiled_4k: bool = False  # peak RSS of a 3840x2160 tiled dream (separate process)
    startup_repeats: int = 1
    processes: bool = True  # the rows that start a separate process (start-up, file to file)
    # sweep
    sweep_size: tuple[int, int] = (320, 240)
    sweep_iters: tuple[int, ...] = (1, 5, 10)
    sweep_octaves: tuple[int, ...] = (1, 2, 4)
    sweep_scales: tuple[float, ...] = (1.4, 2.0)
    sweep_layers: tuple[str, ...] = ("block5", "block9", "block13")
    channel_checks: tuple[tuple[str, str, tuple[int | None, ...]], ...] = (
        ("effnet-lite0", "block9", (None, 0, 55, 111)),
        ("googlenet", "inception4d.branch2.0.conv", (None, 0, 70, 139)),  # the hackathon's layer
    )
    # video
    clip_size: tuple[int, int] | None = None  # resize the clip's frames to this (quick)
    widths: tuple[int, ...] = (320, 480, 640)
    presets: tuple[str, ...] = ("realtime", "realtime-gradient", "detail", "balanced", "quality", "classic")
    run_frames: int = 150  # at most this many frames per end-to-end run
    run_seconds: float = 8.0  # ... and no new frame after this many seconds (>= min_frames)
    min_frames: int = 3
    alone_frames: int = 24  # frames for the dream stage alone (also stops after run_seconds)
    window: tuple[int, int] = (24, 36)  # the frames every preset is compared on (same frames)
    live_seconds: float = 10.0
    live_size: tuple[int, int] = (640, 480)
    iters_sweep: tuple[int, ...] = (1, 2, 3, 4, 6)
    file_seconds: float | None = None  # `livedream video --duration`; None: the whole clip
    ladder_rungs: int | None = None  # the adaptive ladders' rungs measured (None: all) ...
    ladder_min_fps: float = 2.0  # ... up to the first one slower than this
    # scaling and roofline
    batches: tuple[int, ...] = (1, 2, 4, 8)
    scale_size: tuple[int, int] = (320, 240)
    device_sets: tuple[tuple[str, ...], ...] = (("cpu",), ("cpu", "cpu"))
    roofline_size: tuple[int, int] = (320, 240)
    roofline_bf16_size: tuple[int, int] = (160, 120)  # bf16 is emulated here: kept small
    matmul_n: int = 1024
    conv_size: tuple[int, int] = (256, 56)  # channels, side: a dense 3x3 convolution's peak

    def but(self, **changes: Any) -> Plan:  # any of the fields, each of its own type
        return replace(self, **changes)


FULL = Plan(
    name="full", judged=True, repeats=3, budget=90.0,
    image_cases=(
        ImageCase("classic-182x158", 182, 158, targets=PUBLISHED_SMALL,
                  default_network_only=(Target("issue 2, default network", 0.4),)),
        ImageCase("classic-640x360", 640, 360),  # no target: a point on the seconds-vs-size curve
        ImageCase("classic-1280x720", 1280, 720, targets=HACKATHON),
        ImageCase("reduced-1280x720", 1280, 720, REDUCED, targets=HACKATHON_REDUCED),
    ),
    bf16_cases=("classic-182x158",), tiled_4k=True, startup_repeats=3,
)

QUICK = Plan(
    name="quick", judged=False, repeats=1, budget=5.0,
    image_cases=(
        ImageCase("classic-182x158", 91, 79, (("iters", 2),)),
        ImageCase("classic-1280x720", 160, 90, (("iters", 2),)),
        ImageCase("reduced-1280x720", 160, 90, (("iters", 2), ("octaves", 1))),
    ),
    bf16_cases=("classic-182x158",),
    sweep_size=(96, 80), sweep_iters=(1, 2), sweep_octaves=(1, 2), sweep_scales=(1.4,),
    sweep_layers=("block5", "block9"),
    channel_checks=(("effnet-lite0", "block9", (None, 0)),),
    clip_size=(160, 120), widths=(80, 160), presets=("realtime", "realtime-gradient", "classic"),
    run_frames=8, run_seconds=1.5, min_frames=2, window=(3, 5), live_seconds=1.5,
    live_size=(160, 120), iters_sweep=(1, 2), file_seconds=0.3, alone_frames=6, ladder_rungs=2,
    batches=(1, 2), scale_size=(96, 80), roofline_size=(96, 80), roofline_bf16_size=(64, 48),
    matmul_n=256, conv_size=(64, 28),
)


# -- timing ---------------------------------------------------------------------------------------
class Summary(TypedDict):
    """`summary()`: median and spread (max - min) of the samples, their count, the samples."""

    median: float
    spread: float
    runs: int
    samples: list[float]


class RunReport(TypedDict):
    """A pipeline run's report as `PipelineReport.as_dict()` gives it (see `run_report`)."""

    frames_in: int
    frames: int
    dropped: int
    wall_seconds: float
    fps: float
    busy_seconds: dict[str, float]
    queue_high_water: dict[str, int]
    latency_ms: dict[str, float]  # "p50", "p95"
    cold_starts: int
    interrupted: bool


def run_report(report: PipelineReport) -> RunReport:
    """`report.as_dict()`, with the types of its keys."""
    return cast(RunReport, report.as_dict())


def summary(samples: list[float]) -> Summary:
    """Median, spread (max - min) and the samples themselves, rounded for the report."""
    return {"median": round(statistics.median(samples), 4), "spread": round(max(samples) - min(samples), 4),
            "runs": len(samples), "samples": [round(s, 4) for s in samples]}


def repeat(fn: Callable[[], object], repeats: int, budget: float) -> list[float]:
    """Seconds of `repeats` calls of `fn`, fewer once `budget` seconds are spent (>= 1 call)."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - start < budget):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def verdict(measured: float | None, targets: Iterable[Target], judged: bool) -> str:
    """'ok', 'MISSED <targets missed>', 'not judged (--quick sizes)' or 'no target'."""
    targets = list(targets)
    if not targets:
        return "no target"
    if not judged:
        return "not judged (--quick sizes)"
    if measured is None:
        return "not measured"
    missed = [t.text() for t in targets if not t.met(measured)]
    return "ok" if not missed else "MISSED (target " + "; ".join(missed) + ")"


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def log(text: str) -> None:
    print(text, flush=True)


# -- inputs ---------------------------------------------------------------------------------------
def photo(width: int, height: int) -> torch.Tensor:
    """samples/fruits.jpg resized to width x height: (1, 3, H, W) float 0..255. Without the
    sample (an installed package), a synthetic textured frame of that size."""
    from livedream.dream import to_tensor

    path = SAMPLES / "fruits.jpg"
    if path.exists():
        from livedream.io.images import read_image

        rgb = cv2.resize(read_image(str(path)), (width, height), interpolation=cv2.INTER_AREA)
    else:
        from livedream.io.sources import SyntheticSource

        rgb = SyntheticSource(width, height).frame(0)
    return to_tensor(rgb)


@dataclass(frozen=True)
class Clip:
    """The sample clip decoded into memory, so that runs replay the same frames without a
    decoder in the way (decoding is measured once here, and in the file-to-file row). The
    frames are shared by every run: nothing may change them in place."""

    name: str
    frames: tuple[tuple[int, float, int | None, np.ndarray], ...]  # (index, time, pts, (H, W, 3) rgb)
    decode_seconds: float  # decoding (and resizing) every frame, in this thread

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.frames[0][3].shape[:2]
        return w, h


@functools.lru_cache(maxsize=1)
def load_clip(size: tuple[int, int] | None) -> Clip:
    """samples/box.mp4 (640x480, 30 fps, 150 frames), every frame, resized to `size` if given.
    Decoded to its natural end on purpose: closing a reader mid-stream while PyAV's frame
    threads are busy can deadlock (the close holds the GIL, a decoder thread waits for it in
    PyAV's log callback). Without the sample (an installed package): a synthetic 640x480 clip."""
    path = SAMPLES / "box.mp4"
    t = time.perf_counter()
    if path.exists():
        from livedream.io.video import VideoReader

        with VideoReader(str(path)) as reader:
            decoded = [(f.index, f.time, f.pts, f.rgb) for f in reader.frames()]
        name = path.name
    else:
        from livedream.io.sources import SyntheticSource

        decoded = [(f.index, f.time, f.pts, f.rgb) for f in SyntheticSource(640, 480, frames=150)]
        name = "synthetic 640x480"
    if size is not None:
        decoded = [(i, s, p, cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)) for i, s, p, rgb in decoded]
    return Clip(name, tuple(decoded), time.perf_counter() - t)


def replay(clip: Clip, start: int = 0) -> Iterator:
    """Fresh `Frame`s of `clip` from frame index `start` on (the pipeline fills them in)."""
    from livedream.frame import Frame

    for index, t, pts, rgb in clip.frames:
        if index >= start:
            yield Frame(index=index, time=t, pts=pts, rgb=rgb)


def limited(frames: Iterator, max_frames: int, seconds: float, min_frames: int = 1,
            stop_at: int | None = None) -> Iterator:
    """`frames` until `max_frames` were given or `seconds` passed since the first was asked for
    (but at least `min_frames`, and at least up to frame index `stop_at` when given)."""
    start = None
    for n, f in enumerate(frames):
        start = start if start is not None else time.monotonic()
        if n >= max_frames:
            break
        late = time.monotonic() - start > seconds
        if late and n >= min_frames and (stop_at is None or f.index >= stop_at):
            break
        yield f
