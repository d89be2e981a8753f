"""livedream on an NVIDIA GPU: what it does there, measured, next to the figures the project cites.

    python scripts/gpu_bench.py [--out DIR] [--budget SECONDS] [--student PATH]   # on a GPU
    python scripts/gpu_bench.py --cpu-smoke [--out DIR]     # every path, tiny sizes, on the CPU
    python scripts/gpu_bench.py --render DIR                # rewrite DIR/gpu.json + gpu.md only

Rows, most important first (a row starts only while the time budget allows it; the rest are
listed as skipped):
- image: the classic preset (10 iterations x 4 octaves, tiles of 512) at 1280x720 and 182x158,
  fp32 and fp16, then 3840x2160; extras: no tiling, cudnn.benchmark. Median of a few runs after
  a warm-up, torch.cuda.synchronize() around each; the dream's energy gain and a NaN/inf check.
- video: presets realtime / balanced / quality / classic at 640x480 and 1920x1080, file to
  file (livedream.video_job.dream_video) on H.264 clips generated here with PyAV: fps by the
  wall clock, the pipeline's fps, the GPU's busy share (NVML sampled every 50 ms; else
  torch.cuda.utilization(); else only the dream stage's busy share from the pipeline report).
- batch: quality at 1920x1080 with VideoConfig.batch 1 / 2 / 4 / 8.
- student: the shipped student (livedream/student/shipped/*.pt, or --student) in fp16 and
  fp32, the network alone and file to file; skipped with a note when there is none.
- extras: two replicas on one GPU, quality at 1080p in fp32.
Every row records the peak GPU memory (torch.cuda.max_memory_allocated) since its start.

Compared with: 6.5 s for a classic 1280x720 dream on two GTX 1080 Ti with XLA (the 2017
hackathon), ~1.6 s for classic 182x158 with Caffe on a K80 (published), and the target
"quality preset at 1920x1080 at >= 30 fps".

DIR/gpu.json and DIR/gpu.md are rewritten after every row, so a run cut short by a timeout
keeps what it measured. They also take in what scripts/gpu_check.sh leaves in DIR
(steps.jsonl: its steps; pytest.xml: the CUDA tests). `--render` needs only the standard
library (no torch): gpu_check.sh uses it to write the files even when nothing else ran.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import datetime
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file from a source checkout: `livedream` importable
    sys.path.insert(0, str(ROOT))

# The figures the project cites (README, BENCHMARKS.md, livedream.bench.common).
HACKATHON_SECONDS = 6.5  # classic 1280x720, two GTX 1080 Ti with XLA (2017 hackathon)
K80_SECONDS = 1.6  # classic 182x158, Caffe on a K80 (published)
TARGET_FPS = 30.0  # the quality preset at 1920x1080, file to file
CLIP_FPS = 30


# -- the plan ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """Sizes and repeats: the real ones on a GPU, tiny ones for --cpu-smoke (nothing judged)."""

    name: str
    judged: bool
    device: str  # where the image rows and the auto-device check run
    video_devices: tuple[str, ...]  # VideoConfig.devices of the video rows
    replicas: tuple[str, ...]  # two replicas on one device
    precisions: tuple[str, str]  # (full, reduced)
    image_small: tuple[int, int]  # stands in for 182x158
    image_hd: tuple[int, int]  # for 1280x720
    image_4k: tuple[int, int]  # for 3840x2160
    image_overrides: dict[str, object]  # DreamConfig fields over `classic`
    video_sizes: tuple[tuple[int, int], tuple[int, int]]  # for 640x480 and 1920x1080
    warm_frames: tuple[int, int]  # frames per timed run of the warm presets, per size
    classic_frames: tuple[int, int]  # ... of the classic preset (every frame from scratch)
    warmup_frames: int  # frames of the warm-up run before a row's timed runs
    batches: tuple[int, ...] = (1, 2, 4, 8)
    image_repeats: int = 3
    big_repeats: int = 2  # 3840x2160
    video_repeats: int = 3
    classic_repeats: int = 2
    student_batches: tuple[int, ...] = (1, 8)
    budget: float = 300.0  # seconds; no row or run starts after it
    reserve_scale: float = 1.0  # x each row's seconds needed to start it (tiny sizes: less)


GPU = Plan(
    name="gpu", judged=True, device="cuda:0", video_devices=("auto",), replicas=("cuda:0", "cuda:0"),
    precisions=("fp32", "fp16"), image_small=(182, 158), image_hd=(1280, 720), image_4k=(3840, 2160),
    image_overrides={}, video_sizes=((640, 480), (1920, 1080)), warm_frames=(150, 120),
    classic_frames=(6, 3), warmup_frames=8,
)

# bf16 stands in for fp16 on the CPU (fp16 there is a ConfigError), at sizes that take seconds.
SMOKE = Plan(
    name="cpu-smoke", judged=False, device="cpu", video_devices=("cpu",), replicas=("cpu", "cpu"),
    precisions=("fp32", "bf16"), image_small=(64, 56), image_hd=(96, 64), image_4k=(128, 72),
    image_overrides={"iters": 2, "octaves": 2}, video_sizes=((64, 48), (96, 54)), warm_frames=(8, 6),
    classic_frames=(2, 1), warmup_frames=2, batches=(1, 2, 4), image_repeats=1, big_repeats=1,
    video_repeats=1, classic_repeats=1, student_batches=(1, 2), budget=75.0, reserve_scale=0.1,
)


# -- results: gpu.json and gpu.md ------------------------------------------------------------------
def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_steps(out: Path) -> list[dict[str, Any]]:
    """gpu_check.sh's steps: one JSON object per line of steps.jsonl (bad lines kept as text)."""
    path = out / "steps.jsonl"
    if not path.exists():
        return []
    steps = []
    for line in path.read_text(errors="replace").splitlines():
        if line.strip():
            try:
                steps.append(json.loads(line))
            except ValueError:
                steps.append({"step": "?", "note": line[:200]})
    return steps


def read_junit(out: Path) -> dict[str, Any] | None:
    """The CUDA tests' outcomes from pytest.xml (pytest --junitxml); None without the file."""
    path = out / "pytest.xml"
    if not path.exists():
        return None
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        return {"error": f"unreadable pytest.xml: {e}"}
    tests, counts = [], {"passed": 0, "failed": 0, "skipped": 0}
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, message = "failed", child.get("message") or (child.text or "")
            elif child.tag == "skipped":
                outcome, message = "skipped", child.get("message") or ""
        counts[outcome] += 1
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name', '')}"
        tests.append({"test": name, "outcome": outcome, "seconds": float(case.get("time") or 0),
                      "message": message.strip().splitlines()[0][:300] if message.strip() else ""})
    return {**counts, "tests": tests}


def comparisons(bench: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The measured rows next to the published figures and the target."""
    if not bench:
        return []
    judged = bool(bench.get("meta", {}).get("judged"))
    rows = bench.get("rows", [])
    out = []

    def find(**want: object) -> list[dict[str, Any]]:
        return [r for r in rows if all(r.get(k) == v for k, v in want.items()) and not r.get("error")
                and not r.get("skipped")]

    for case, published, label in (("hd", HACKATHON_SECONDS, "2x GTX 1080 Ti + XLA, 2017 hackathon"),
                                   ("small", K80_SECONDS, "Caffe on a K80, published")):
        for r in find(section="image", case=case, tile=512, cudnn_benchmark=False):
            seconds = r["seconds"]
            out.append({
                "what": f"classic {r['size']} {r['precision']} (one dream)", "measured": f"{seconds:.3f} s",
                "reference": f"{published:g} s ({label})",
                "ratio": f"{published / seconds:.1f}x faster" if seconds > 0 else "",
                "verdict": _verdict(seconds <= published, judged)})
    quality = find(section="video", preset="quality", case="1080p", replicas=1) + find(
        section="batch", preset="quality", case="1080p", replicas=1)
    if quality:
        by_batch = sorted(quality, key=lambda r: r["batch"])
        best = max(by_batch, key=lambda r: r["fps"])
        first = by_batch[0]
        for r, what in ((first, f"batch {first['batch']}"), (best, f"best: batch {best['batch']}")):
            out.append({
                "what": f"quality {r['size']} file to file, {what} ({r['precision']})",
                "measured": f"{r['fps']:.1f} fps", "reference": f">= {TARGET_FPS:g} fps (the target)",
                "ratio": f"{r['fps'] / TARGET_FPS:.2f}x the target",
                "verdict": _verdict(r["fps"] >= TARGET_FPS, judged)})
            if best is by_batch[0]:
                break
    return out


def _verdict(met: bool, judged: bool) -> str:
    if not judged:
        return "not judged (cpu-smoke sizes)"
    return "ok" if met else "MISSED"


def render(out: Path, bench: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write out/gpu.json and out/gpu.md from `bench` (or the bench results already in gpu.json),
    gpu_check.sh's steps and the CUDA tests' outcomes. Standard library only."""
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    path = out / "gpu.json"
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    if bench is not None:
        data["bench"] = bench
    data["steps"] = read_steps(out)
    data["pytest"] = read_junit(out)
    data["comparisons"] = comparisons(data.get("bench"))
    data["written"] = _now()
    _atomic_write(path, json.dumps(data, indent=1, default=str) + "\n")
    _atomic_write(out / "gpu.md", markdown(data))
    return data


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value).replace("|", "/").replace("\n", " ")


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, Callable[[dict[str, Any]], object]]]) -> str:
    head = "| " + " | ".join(h for h, _ in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(_cell(get(r)) for _, get in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def _status(r: dict[str, Any]) -> str:
    if r.get("error"):
        return "ERROR: " + r["error"]
    if r.get("skipped"):
        return "skipped: " + r["skipped"]
    return r.get("note", "")


def _mib(r: dict[str, Any]) -> object:
    return r.get("peak_mib")


def markdown(data: dict[str, Any]) -> str:
    lines = ["# livedream on the GPU", ""]
    bench = data.get("bench") or {}
    meta = bench.get("meta", {})
    if meta:
        machine = meta.get("machine", {})
        lines += [f"Plan `{meta.get('plan')}`, started {meta.get('started')}, "
                  f"{meta.get('wall_seconds')} s, {'finished' if meta.get('finished') else 'NOT finished'}"
                  + (f" ({meta['stopped']})" if meta.get("stopped") else "") + ".", ""]
        if machine:
            lines += [_table([{"k": k, "v": v} for k, v in machine.items()],
                             [("machine", lambda r: r["k"]), ("", lambda r: r["v"])]), ""]
    steps = data.get("steps") or []
    if steps:
        lines += ["## Steps (scripts/gpu_check.sh)", "",
                  _table(steps, [("step", lambda r: r.get("step")), ("exit", lambda r: r.get("rc")),
                                 ("seconds", lambda r: r.get("seconds")), ("note", lambda r: r.get("note"))]),
                  ""]
    tests = data.get("pytest")
    if tests:
        lines += ["## CUDA tests (pytest -m cuda)", ""]
        if tests.get("error"):
            lines += [tests["error"], ""]
        else:
            lines += [f"{tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped.", "",
                      _table(tests["tests"], [
                          ("test", lambda r: r["test"]), ("outcome", lambda r: r["outcome"]),
                          ("s", lambda r: r["seconds"]), ("message", lambda r: r["message"])]),
                      ""]
    comp = data.get("comparisons") or []
    if comp:
        lines += ["## Against the published figures and the target", "",
                  _table(comp, [("what", lambda r: r["what"]), ("measured", lambda r: r["measured"]),
                                ("reference", lambda r: r["reference"]), ("ratio", lambda r: r["ratio"]),
                                ("verdict", lambda r: r["verdict"])]), ""]
    rows = bench.get("rows", [])
    image = [r for r in rows if r.get("section") == "image"]
    if image:
        lines += ["## Images: classic preset, one dream (median of the runs after a warm-up)", "",
                  _table(image, [
                      ("case", lambda r: r["id"]), ("precision", lambda r: r.get("precision")),
                      ("tile", lambda r: r.get("tile")), ("seconds", lambda r: r.get("seconds")),
                      ("spread", lambda r: r.get("spread")), ("runs", lambda r: r.get("runs")),
                      ("peak MiB", _mib), ("energy gain", lambda r: r.get("energy_gain")),
                      ("finite", lambda r: r.get("finite")), ("status", _status)]), ""]
    video = [r for r in rows if r.get("section") in ("video", "batch", "extra-video", "student-video")]
    if video:
        lines += ["## Video, file to file (fps: frames / wall seconds of dream_video, median of the runs)",
                  "",
                  "GPU busy: NVML's utilization sampled every 50 ms during the runs (share of time a kernel "
                  "ran); dream busy: the dream workers' busy seconds / (wall x workers), from the "
                  "pipeline report.", "",
                  _table(video, [
                      ("row", lambda r: r["id"]), ("dream size", lambda r: r.get("dream_size")),
                      ("batch", lambda r: r.get("batch")), ("replicas", lambda r: r.get("replicas")),
                      ("precision", lambda r: r.get("precision")), ("fps", lambda r: r.get("fps")),
                      ("spread", lambda r: r.get("spread")),
                      ("pipeline fps", lambda r: r.get("pipeline_fps")),
                      ("frames", lambda r: r.get("frames")),
                      ("GPU busy %", lambda r: r.get("gpu_busy_pct")),
                      ("dream busy", lambda r: r.get("dream_busy_share")), ("peak MiB", _mib),
                      ("stage busy shares", lambda r: _shares(r.get("busy_share"))), ("status", _status)]),
                  ""]
    student = [r for r in rows if r.get("section") == "student"]
    if student:
        lines += ["## Student network alone (frames in, residual out, host copies included)", "",
                  _table(student, [
                      ("row", lambda r: r["id"]), ("precision", lambda r: r.get("precision")),
                      ("batch", lambda r: r.get("batch")), ("ms / frame", lambda r: r.get("ms_per_frame")),
                      ("fps", lambda r: r.get("fps")), ("peak MiB", _mib),
                      ("vs fp32 (mean abs diff / mean abs residual)", lambda r: r.get("rel_diff_vs_fp32")),
                      ("status", _status)]), ""]
    notes = bench.get("notes", [])
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    skipped = [r for r in rows if r.get("section") == "skipped"]
    if skipped:
        lines += ["## Not run (time budget)", "", *[f"- {r['id']}: {r['skipped']}" for r in skipped], ""]
    if not bench and not steps:
        lines += ["Nothing was measured.", ""]
    return "\n".join(lines)


def _shares(shares: dict[str, float] | None) -> str:
    if not shares:
        return ""
    return ", ".join(f"{k} {v:.2f}" for k, v in shares.items())


# -- GPU busy share --------------------------------------------------------------------------------
class _NvmlUtilization(ctypes.Structure):
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


def nvml_utilization() -> Callable[[], float | None] | None:
    """A function giving the GPU's utilization in % (NVML through ctypes: no package needed), or
    torch.cuda.utilization (needs pynvml), or None when neither works. Device: the one
    CUDA_VISIBLE_DEVICES names, else NVML's index 0."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    index = int(visible) if visible.isdigit() else 0
    try:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
        if lib.nvmlInit_v2() != 0:
            raise OSError("nvmlInit failed")
        handle = ctypes.c_void_p()
        if lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle)) != 0:
            raise OSError("no NVML device")

        def read() -> float | None:
            u = _NvmlUtilization()
            return float(u.gpu) if lib.nvmlDeviceGetUtilizationRates(handle, ctypes.byref(u)) == 0 else None

        if read() is not None:
            return read
    except (OSError, AttributeError):
        pass
    try:
        import torch

        torch.cuda.utilization(0)
        return lambda: float(torch.cuda.utilization(0))
    except Exception:  # noqa: BLE001 - pynvml missing, no driver...: no sampling
        return None


class Sampler:
    """Samples `read()` every `period` seconds in a thread while in its `with` block."""

    def __init__(self, read: Callable[[], float | None] | None, period: float = 0.05) -> None:
        self.read, self.period = read, period
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        if self.read is not None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="gpu-sampler")
            self._thread.start()
        return self

    def _run(self) -> None:
        assert self.read is not None
        while not self._stop.wait(self.period):
            v = self.read()
            if v is not None:
                self.values.append(v)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def mean(self) -> float | None:
        return round(statistics.fmean(self.values), 1) if self.values else None


# -- the bench ----------------------------------------------------------------------------------
class TimeUp(Exception):
    """No time left in the budget for this row."""


TERMINATED = threading.Event()  # SIGTERM (the `timeout` around the script): start nothing more


@dataclass
class Bench:
    plan: Plan
    out: Path
    student: str | None = None
    only: tuple[str, ...] = ()  # run only the rows whose section or id contains one of these
    started: float = field(default_factory=time.monotonic)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="livedream-gpu-")))
    _clips: dict[tuple[int, int, int], str] = field(default_factory=dict)
    _dreamers: dict[object, Any] = field(default_factory=dict)
    util: Callable[[], float | None] | None = None

    # -- bookkeeping -----------------------------------------------------------------------------
    def left(self) -> float:
        if TERMINATED.is_set():
            return -1.0
        return self.plan.budget - (time.monotonic() - self.started)

    def save(self) -> None:
        self.meta["wall_seconds"] = round(time.monotonic() - self.started, 1)
        render(self.out, {"meta": self.meta, "rows": self.rows, "notes": self.notes})

    def run(self, section: str, row_id: str, min_left: float, fn: Callable[[], dict[str, Any]],
            **fields: Any) -> dict[str, Any] | None:
        """Run one row (unless fewer than `min_left` seconds are left), record it, save."""
        import torch

        if self.only and not any(w in f"{section} {row_id}" for w in self.only):
            return None
        min_left *= self.plan.reserve_scale
        if self.left() < min_left:
            left = max(0.0, self.left())
            row = {"section": "skipped", "id": row_id,
                   "skipped": f"{left:.0f} s left of the budget, the row needs ~{min_left:g}"}
            self.rows.append(row)
            self.save()
            print(f"[gpu_bench] skip {row_id}: out of time", flush=True)
            return None
        print(f"[gpu_bench] {row_id} ...", flush=True)
        t = time.monotonic()
        row: dict[str, Any] = {"section": section, "id": row_id, **fields}
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            row.update(fn())
        except KeyboardInterrupt:  # SIGTERM: say which row was cut short, then stop
            row["skipped"] = f"interrupted after {time.monotonic() - t:.0f} s (SIGTERM or Ctrl-C)"
            self.rows.append(row)
            raise
        except TimeUp as e:
            row["skipped"] = str(e)
        except Exception as e:  # noqa: BLE001 - one row's failure is recorded, the others run
            row["error"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
            row["traceback"] = traceback.format_exc(limit=6)[-2000:]
            if self.cuda and isinstance(e, torch.cuda.OutOfMemoryError):
                self._dreamers.clear()
                torch.cuda.empty_cache()
        if self.cuda:
            row["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            row["peak_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
        row["row_seconds"] = round(time.monotonic() - t, 1)
        self.rows.append(row)
        self.save()
        print(f"[gpu_bench] {row_id}: {_summary(row)}", flush=True)
        return row

    @property
    def cuda(self) -> bool:
        return self.plan.device.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def timed(self, fn: Callable[[], object], repeats: int) -> list[float]:
        """Seconds of up to `repeats` calls of `fn` (synchronized), fewer when the next would
        end past the budget (at least one)."""
        samples: list[float] = []
        while len(samples) < repeats:
            if samples and self.left() < 1.3 * samples[-1] + 2:
                break
            self.sync()
            t = time.perf_counter()
            fn()
            self.sync()
            samples.append(time.perf_counter() - t)
        return samples

    # -- inputs ------------------------------------------------------------------------------------
    def photo(self, width: int, height: int) -> Any:
        """samples/fruits.jpg at width x height, (1, 3, H, W) float 0..255 on the CPU (a
        synthetic texture without the sample)."""
        import cv2

        from livedream.dream import to_tensor
        from livedream.io.sources import SyntheticSource

        bgr = cv2.imread(str(ROOT / "samples" / "fruits.jpg"), cv2.IMREAD_COLOR)
        if bgr is None:
            rgb = SyntheticSource(width, height).frame(0)
        else:
            small = width * height <= bgr.shape[0] * bgr.shape[1]
            rgb = cv2.resize(bgr[:, :, ::-1], (width, height),
                             interpolation=cv2.INTER_AREA if small else cv2.INTER_CUBIC)
        return to_tensor(rgb.copy())

    def clip(self, width: int, height: int, frames: int) -> str:
        """An H.264 clip (30 fps, no sound) of a panning texture with a moving disc, made with PyAV."""
        key = (width, height, frames)
        if key not in self._clips:
            import av

            from livedream.io.sources import SyntheticSource

            path = self.tmp / f"clip-{width}x{height}-{frames}.mp4"
            with av.open(str(path), "w") as container:
                stream = container.add_stream("libx264", rate=CLIP_FPS,
                                              options={"preset": "ultrafast", "crf": "18"})
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                for f in SyntheticSource(width, height, frames=frames, fps=CLIP_FPS):
                    for packet in stream.encode(av.VideoFrame.from_ndarray(f.rgb, format="rgb24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            self._clips[key] = str(path)
        return self._clips[key]

    def dreamer(self, precision: str) -> Any:
        from livedream.config import preset
        from livedream.dream import Dreamer

        key = ("image", precision)
        if key not in self._dreamers:
            self._dreamers[key] = Dreamer(preset("classic", device=self.plan.device, precision=precision))
        return self._dreamers[key]

    def video_dreamers(self, cfg: Any) -> list[Any]:
        """One replica per device of `cfg` (build_dreamers), shared by the rows that dream the
        same network on the same devices."""
        from livedream.pipeline import build_dreamers

        key = ("video", cfg.devices, cfg.student, cfg.dream.precision, cfg.dream.layers, cfg.dream.model)
        if key not in self._dreamers:
            self._dreamers[key] = build_dreamers(cfg)
        return self._dreamers[key]

    # -- rows ------------------------------------------------------------------------------------
    def image(self, size: tuple[int, int], precision: str, repeats: int, *, tile: int = 512,
              cudnn_benchmark: bool = False, light_warmup: bool = False) -> dict[str, Any]:
        """One classic dream of the sample photo at `size`."""
        import torch

        from livedream.config import preset

        dreamer = self.dreamer(precision)
        cfg = preset("classic", device=self.plan.device, precision=precision, tile=tile,
                     **self.plan.image_overrides)  # type: ignore[arg-type]
        x = self.photo(*size)
        before = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = cudnn_benchmark
        try:
            self.sync()
            t = time.perf_counter()
            # the same shapes as a full dream (every octave, every tile), fewer steps
            dreamer.dream(x, cfg.replace(iters=1) if light_warmup else cfg)
            self.sync()
            warmup = time.perf_counter() - t
            if self.left() < warmup * (8 if light_warmup else 1.2):
                raise TimeUp(f"warm-up took {warmup:.1f} s; no time left for a timed run")
            out: list[Any] = []
            samples = self.timed(lambda: out.append(dreamer.dream(x, cfg)), repeats)
        finally:
            torch.backends.cudnn.benchmark = before
        y = out[-1]
        e_in, e_out = float(dreamer.energy(x, cfg)[0]), float(dreamer.energy(y, cfg)[0])
        return {**_stats(samples, "seconds"), "warmup_seconds": round(warmup, 3),
                "actual_precision": dreamer.precision, "finite": bool(torch.isfinite(y).all()),
                "energy_gain": round(e_out / e_in, 3),
                "mean_abs_change": round(float((y - x).abs().mean()), 2)}

    def video(self, cfg: Any, size: tuple[int, int], frames: int, repeats: int) -> dict[str, Any]:
        """`cfg` file to file on a generated clip of `size` with `frames` frames."""
        from livedream.frame import dream_size
        from livedream.video_job import dream_video

        dreamers = self.video_dreamers(cfg)
        src = self.clip(*size, frames)
        # the warm-up: the same shapes, a few frames (one for presets that dream every frame cold)
        warm_frames = min(frames, self.plan.warmup_frames) if cfg.warm else 1
        warm_src = self.clip(*size, warm_frames)
        dst = str(self.tmp / "out.mp4")
        t = time.perf_counter()
        dream_video(warm_src, dst, cfg, dreamers, progress=False)
        warmup = time.perf_counter() - t
        runs: list[dict[str, Any]] = []
        while len(runs) < repeats:
            if runs and self.left() < 1.3 * runs[-1]["wall"] + 2:
                break
            if not runs and self.left() < warmup * frames / warm_frames:
                raise TimeUp(f"the warm-up ({warm_frames} frames) took {warmup:.1f} s; "
                             f"{frames} frames would pass the budget")
            with Sampler(self.util) as sampler:
                t = time.perf_counter()
                result = dream_video(src, dst, cfg, dreamers, progress=False)
                wall = time.perf_counter() - t
            if result.failed is not None:
                raise result.failed
            if result.interrupted:  # SIGTERM: the pipeline stopped early, the run does not count
                raise TimeUp("interrupted (SIGTERM)")
            rep = result.report
            runs.append({"wall": wall, "fps": result.frames / wall, "pipeline_fps": rep.fps,
                         "frames": result.frames, "gpu": sampler.mean(), "report": rep,
                         "samples": len(sampler.values)})
        fps = _stats([r["fps"] for r in runs], "median", 2)
        last = runs[-1]["report"]
        wall = last.wall_seconds or 1.0
        busy = {k: round(v / wall, 2) for k, v in last.busy_seconds.items()}
        workers = len(dreamers)
        dream_share = round(last.busy_seconds.get("dream", 0.0) / (wall * workers), 2)
        gpu = [r["gpu"] for r in runs if r["gpu"] is not None]
        precision = getattr(dreamers[0], "precision", None)
        return {
            "fps": fps["median"], "spread": fps["spread"], "runs": fps["runs"], "fps_samples": fps["samples"],
            "pipeline_fps": round(statistics.median(r["pipeline_fps"] for r in runs), 2),
            "frames": runs[-1]["frames"], "warmup_seconds": round(warmup, 2),
            "dream_size": "x".join(map(str, dream_size(*size, cfg.dream_width))),
            "devices": [str(d.device) for d in dreamers], "precision": precision,
            "gpu_busy_pct": round(statistics.median(gpu), 1) if gpu else None,
            "gpu_busy_source": ("NVML / torch.cuda.utilization" if gpu else
                                "none: see dream_busy_share (the pipeline's dream stage)"),
            "dream_busy_share": dream_share, "busy_share": busy, "cold_starts": last.cold_starts,
            "latency_ms": last.as_dict()["latency_ms"],
        }

    def student_alone(self, student: Any, size: tuple[int, int], batch: int, precision: str,
                      reference: dict[tuple[int, int, int], Any]) -> dict[str, Any]:
        from livedream.student.dreamer import StudentDreamer

        dreamer = StudentDreamer(student, device=self.plan.device, precision=precision)
        x = self.photo(*size).expand(batch, -1, -1, -1).contiguous()
        for _ in range(2):
            dreamer.residual(x)
        samples = self.timed(lambda: dreamer.residual(x), 5)
        r = dreamer.residual(x)
        median = statistics.median(samples)
        row = {**_stats(samples, "seconds"), "ms_per_frame": round(1000 * median / batch, 2),
               "fps": round(batch / statistics.median(samples), 1), "finite": bool(r.isfinite().all())}
        key = (size[0], size[1], batch)
        if precision == self.plan.precisions[0]:
            reference[key] = r
        elif key in reference:
            ref = reference[key]
            row["rel_diff_vs_fp32"] = round(float((r - ref).abs().mean() / (ref.abs().mean() + 1e-6)), 4)
        return row

    # -- the whole run -----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        import av
        import cv2
        import torch

        info: dict[str, Any] = {
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda (torch)": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "PyAV": av.__version__, "OpenCV": cv2.__version__, "CPUs": os.cpu_count(),
            "torch threads": torch.get_num_threads(),
        }
        if self.cuda:
            p = torch.cuda.get_device_properties(0)
            info.update({"GPU": p.name, "GPU memory GiB": round(p.total_memory / 2**30, 1),
                         "compute capability": f"{p.major}.{p.minor}", "SMs": p.multi_processor_count,
                         "GPUs": torch.cuda.device_count(),
                         "cudnn.benchmark (default)": torch.backends.cudnn.benchmark,
                         "cudnn.allow_tf32 (fp32 convolutions in TF32)": torch.backends.cudnn.allow_tf32,
                         "GPU busy share from": ("NVML / torch.cuda.utilization" if self.util
                                                 else "not available")})
        return info

    def tasks(self) -> Iterator[tuple[str, str, float, Callable[[], dict[str, Any]], dict[str, Any]]]:
        """(section, id, min seconds left to start it, fn, fields), most important first."""
        from livedream.config import video_preset

        p = self.plan
        full, low = p.precisions
        sd, hd = p.video_sizes
        cases = {"small": p.image_small, "hd": p.image_hd, "4k": p.image_4k}

        def image(case: str, precision: str, repeats: int, min_left: float, tile: int = 512,
                  bench: bool = False, light: bool = False) -> tuple:
            size = cases[case]
            label = f"classic {size[0]}x{size[1]} {precision}" + (f" tile {tile}" if tile != 512 else "") + (
                " cudnn.benchmark" if bench else "")
            return ("image", label, min_left,
                    lambda: self.image(size, precision, repeats, tile=tile, cudnn_benchmark=bench,
                                       light_warmup=light),
                    {"case": case, "size": f"{size[0]}x{size[1]}", "precision": precision, "tile": tile,
                     "cudnn_benchmark": bench})

        def video(name: str, size: tuple[int, int], batch: int = 1, section: str = "video",
                  devices: tuple[str, ...] | None = None, precision: str = "auto",
                  min_left: float = 15) -> tuple:
            cfg = video_preset(name, batch=batch, devices=devices or p.video_devices, precision=precision)
            case = "1080p" if size == hd else "480p"
            frames = p.warm_frames[size == hd] if cfg.warm else p.classic_frames[size == hd]
            repeats = p.video_repeats if cfg.warm else p.classic_repeats
            n = len(cfg.devices) if devices else 1
            label = f"{name} {size[0]}x{size[1]}" + (f" batch {batch}" if batch > 1 else "") + (
                f" {n} replicas on {cfg.devices[0]}" if n > 1 else "") + (
                f" {precision}" if precision != "auto" else "")
            return (section, label, min_left, lambda: self.video(cfg, size, frames, repeats),
                    {"preset": name, "case": case, "size": f"{size[0]}x{size[1]}", "batch": batch,
                     "replicas": n})

        yield image("hd", full, p.image_repeats, 20)
        yield image("hd", low, p.image_repeats, 15)
        yield image("small", full, p.image_repeats, 8)
        yield image("small", low, p.image_repeats, 8)
        yield video("quality", hd, min_left=20)
        for b in p.batches[1:]:
            yield video("quality", hd, batch=b, section="batch", min_left=20)
        for name, size in (("realtime", hd), ("balanced", hd), ("realtime", sd), ("balanced", sd),
                           ("quality", sd), ("classic", sd), ("classic", hd)):
            yield video(name, size, min_left=25 if name == "classic" and size == hd else 12)
        yield image("4k", low, p.big_repeats, 45, light=True)
        yield image("4k", full, p.big_repeats, 60, light=True)
        yield from self.student_tasks()
        yield video("quality", hd, section="extra-video", devices=p.replicas, min_left=20)
        yield video("quality", hd, batch=4, section="extra-video", devices=p.replicas, min_left=20)
        yield image("hd", low, p.image_repeats, 15, tile=0)
        yield image("hd", low, p.image_repeats, 15, bench=True)
        yield video("quality", hd, section="extra-video", precision=full, min_left=20)
        yield image("4k", low, p.big_repeats, 45, tile=0, light=True)
        for b in p.batches[1:]:
            yield video("realtime", sd, batch=b, section="extra-video", min_left=12)

    def student_tasks(self) -> Iterator[tuple[str, str, float, Callable[[], dict[str, Any]], dict[str, Any]]]:
        from livedream.config import video_preset
        from livedream.student.weights import load_student, shipped_students

        paths = [Path(self.student)] if self.student else shipped_students()
        if not paths:
            self.notes.append("student: no shipped student (livedream/student/shipped/*.pt absent): its rows "
                              "are skipped; give one with --student PATH")
            return
        student = load_student(paths[0])
        self.notes.append(f"student: {paths[0].name}, dreams {student.describe()}")
        reference: dict[tuple[int, int, int], Any] = {}
        for size in self.plan.video_sizes:
            for batch in self.plan.student_batches:
                for precision in self.plan.precisions:
                    yield ("student", f"student {size[0]}x{size[1]} batch {batch} {precision}", 8,
                           lambda size=size, batch=batch, precision=precision:
                           self.student_alone(student, size, batch, precision, reference),
                           {"precision": precision, "batch": batch, "size": f"{size[0]}x{size[1]}"})
        hd = self.plan.video_sizes[1]
        cfg = video_preset("realtime", student=str(paths[0]), model=student.model,
                           layers=student.layers or None, channel=student.channel,
                           devices=self.plan.video_devices)
        yield ("student-video", f"student (realtime preset) {hd[0]}x{hd[1]}", 15,
               lambda: self.video(cfg, hd, self.plan.warm_frames[1], self.plan.video_repeats),
               {"preset": "student", "case": "1080p-student", "size": f"{hd[0]}x{hd[1]}", "batch": 1,
                "replicas": 1})

    def auto_check(self) -> None:
        """What the automatic choices pick here: devices and precision."""
        import torch

        from livedream.config import DreamConfig
        from livedream.devices import choose_precision, resolve_devices

        devices = resolve_devices(("auto",))
        self.meta["auto"] = {
            "devices": list(devices),
            **{f"precision {m}": choose_precision("auto", torch.device(devices[0]), model=m)
               for m in ("effnet-lite0", "googlenet")},
            "DreamConfig().device": DreamConfig().device,
        }
        if self.cuda and not devices[0].startswith("cuda"):
            self.notes.append(f"auto devices resolved to {devices}, not CUDA")

    def main(self) -> None:
        import torch

        self.meta.update({"plan": self.plan.name, "judged": self.plan.judged, "started": _now(),
                          "budget_seconds": self.plan.budget, "finished": False,
                          "command": " ".join([Path(sys.executable).name, *sys.argv])})
        if self.cuda:
            self.util = nvml_utilization()
        else:
            torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
            self.notes.append("cpu-smoke: tiny sizes, bf16 in place of fp16, nothing judged")
        self.meta["machine"] = self.describe()
        self.auto_check()
        self.save()
        for section, row_id, min_left, fn, fields in self.tasks():
            self.run(section, row_id, min_left, fn, **fields)
        self.meta["finished"] = True


def _stats(samples: list[float], key: str, digits: int = 4) -> dict[str, Any]:
    """{key: median, spread: max - min, runs, samples}, rounded."""
    return {key: round(statistics.median(samples), digits),
            "spread": round(max(samples) - min(samples), digits), "runs": len(samples),
            "samples": [round(s, digits) for s in samples]}


def _summary(row: dict[str, Any]) -> str:
    if row.get("error"):
        return "ERROR " + row["error"]
    if row.get("skipped"):
        return "skipped: " + row["skipped"]
    parts = []
    for key, unit in (("seconds", "s"), ("fps", "fps"), ("ms_per_frame", "ms/frame"),
                      ("gpu_busy_pct", "% GPU"), ("peak_mib", "MiB peak")):
        if row.get(key) is not None:
            parts.append(f"{row[key]} {unit}")
    return ", ".join(parts)


@contextmanager
def _terminated_is_exit() -> Iterator[None]:
    """SIGTERM (`timeout`) ends the run like Ctrl-C: nothing new starts (the pipeline catches the
    KeyboardInterrupt itself and ends its run early), the results so far are saved on the way out."""
    def handler(signum: int, frame: object) -> None:
        TERMINATED.set()
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "out" / "gpu"), help="folder for gpu.json and gpu.md")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU, to check the script")
    parser.add_argument("--budget", type=float, help="seconds; no row starts after them (default: plan's)")
    parser.add_argument("--student", help="a student weights file (default: the shipped one, if any)")
    parser.add_argument("--only", help="comma-separated words: run only the rows whose section or name "
                                       "has one (e.g. image,batch or '1920x1080')")
    parser.add_argument("--render", metavar="DIR", help="only rewrite DIR/gpu.json and DIR/gpu.md (no torch)")
    args = parser.parse_args(argv)
    if args.render:
        render(Path(args.render))
        return 0
    out = Path(args.out)
    plan = SMOKE if args.cpu_smoke else GPU
    if args.budget is not None:
        plan = dataclasses.replace(plan, budget=args.budget)
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print(f"gpu_bench: torch {torch.__version__} sees no CUDA device (use --cpu-smoke on a CPU)",
              file=sys.stderr)
        render(out, {"meta": {"plan": plan.name, "started": _now(), "finished": False,
                              "stopped": "no CUDA device"}, "rows": [], "notes": []})
        return 3
    only = tuple(w.strip() for w in (args.only or "").split(",") if w.strip())
    bench = Bench(plan, out, student=args.student, only=only)
    status = 0
    try:
        with _terminated_is_exit():
            bench.main()
    except KeyboardInterrupt as e:
        bench.meta["stopped"] = f"interrupted ({e or 'Ctrl-C'})"
        status = 130
    except Exception as e:  # noqa: BLE001 - whatever happened, what was measured is written
        bench.meta["stopped"] = f"{type(e).__name__}: {e}"
        bench.notes.append(traceback.format_exc(limit=8)[-2000:])
        status = 1
    finally:
        bench.save()
        import shutil

        shutil.rmtree(bench.tmp, ignore_errors=True)
    errors = sum(1 for r in bench.rows if r.get("error"))
    print(f"gpu_bench: {len(bench.rows)} rows ({errors} errors) in {bench.meta.get('wall_seconds')} s -> "
          f"{out / 'gpu.json'}, {out / 'gpu.md'}", flush=True)
    if status == 130:  # interrupted: pipeline threads may still be inside torch; do not wait for them
        sys.stderr.flush()
        os._exit(status)
    return status or (1 if errors else 0)


if __name__ == "__main__":
    sys.exit(main())
