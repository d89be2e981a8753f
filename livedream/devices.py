"""Device parsing and the precision choice: the one place that decides fp32 / bf16 / fp16."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys

import torch

from livedream.config import ConfigError

__all__ = [
    "parse_device", "parse_devices", "choose_precision", "autocast", "cpu_has_fast_bf16", "bf16_units",
    "cpu_flags", "BF16_MEASURED", "STUDENT",
    "keep_freed_memory", "resolve_devices", "worker_threads", "dream_workers", "AUTO",
]

AUTO = "auto"  # the default device list: every CUDA device, else CPU replicas
# At most this many model replicas on the CPU by default; beyond, threads per replica grow.
_MAX_CPU_REPLICAS = 4


def parse_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name} asked for, but torch sees no CUDA device here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name}: only {torch.cuda.device_count()} CUDA devices")
    elif device.type != "cpu":
        raise ConfigError(f"unsupported device {name!r}; use cpu, cuda or cuda:N")
    return device


def resolve_devices(names: tuple[str, ...] | list[str], budget: int | None = None) -> tuple[str, ...]:
    """The devices a video pipeline runs on, one model replica each. `auto` (the default) means
    every CUDA device, or, without CUDA, one CPU replica per core of `budget` (default: this
    thread's torch threads, i.e. the cores torch may use), at most four.

    Why replicas on the CPU: frames of a video are independent work, and one replica per core with
    one thread each keeps both cores busy, where one replica with two threads spends time waiting
    at each small layer's barrier and competes with decode and encode. Measured on this 2-core
    machine, `realtime` file to file on samples/box.mp4: 1 replica x 2 threads 13.0 fps,
    2 replicas x 1 thread 20.9 fps (`--devices cpu` vs the default)."""
    if list(names) != [AUTO]:
        if AUTO in names:
            raise ConfigError("device 'auto' cannot be mixed with other devices")
        return tuple(names)
    if torch.cuda.is_available():
        return tuple(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    budget = budget or torch.get_num_threads()
    return ("cpu",) * max(1, min(budget, _MAX_CPU_REPLICAS))


def worker_threads(devices: tuple[str, ...] | list[str], budget: int | None = None) -> int:
    """torch threads for each CPU replica's worker: the `budget` (default: this thread's torch
    threads) shared out, at least 1."""
    cpus = sum(1 for d in devices if torch.device(d).type == "cpu")
    budget = budget or torch.get_num_threads()
    return max(1, budget // max(1, cpus))


def dream_workers(device: torch.device, workers: int | None = None,
                  budget: int | None = None) -> tuple[int, int]:
    """(replicas, torch threads each) for one image's tiled gradient steps on `device`.

    `workers` None (the default): on the CPU one single-thread replica per thread of the `budget`
    (default: the calling thread's torch threads, i.e. one per core), at most four, the threads
    shared out; on CUDA one replica. A number: that many replicas. Untiled steps always run on one
    replica with the whole budget.

    Why: a 2-thread model waits at an OpenMP barrier after every layer, and EfficientNet's layers
    are small; two single-thread replicas, each on its own tiles, keep both cores busy. Measured on
    this 2-core machine, one 480x416 tile's gradient: 110 ms on one thread, 62 ms on one replica
    with two threads, two at once on two single-thread replicas 104-110 ms each (1.15x the
    throughput of OpenMP); the 1280x720 octave of `classic` (6 tiles) 627 ms a step on one thread,
    375 ms on 2 threads, 339 ms on 2 replicas. Deciding at each dream from the calling thread
    keeps the video pipeline's workers - already one single-thread replica per core - at one
    replica each: they never double up."""
    budget = budget or torch.get_num_threads()
    if workers is None:
        workers = 1 if device.type != "cpu" else max(1, min(budget, _MAX_CPU_REPLICAS))
    return workers, max(1, budget // workers)


def parse_devices(spec: str) -> list[torch.device]:
    """'cuda:0,cuda:1' or 'cpu,cpu' -> devices (repeats allowed: one model replica each)."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ConfigError("no device given")
    return [parse_device(n) for n in names]


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def bf16_units(flags: frozenset[str] | None = None) -> str | None:
    """The CPU's native bf16 matrix units: "amx" (AMX tiles, which imply AVX512-BF16 on every
    CPU that has them), "avx512_bf16" (dot products only), or None (bf16 is emulated)."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return None


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 matrix units (AMX or AVX512-BF16)."""
    return bf16_units() is not None


# Precision `auto` on the CPU, from measurements (not guesses): one gradient step, fp32 time over
# bf16-autocast time, per network and square input side, (1 thread, 2 threads). Measured on the
# development machine (Intel Xeon, 2 cores, AMX + AVX512-BF16; torch 2.13; fp32 with the fused
# ops of models.fused), medians of 3 runs of 2 steps each on a square photo.
# A table rather than a measurement at start-up: the same command gives the same pixels every
# time (a timing taken on a busy machine could flip the choice), and nothing is spent on probes.
# Only for CPUs with the units it was measured on; elsewhere `auto` is fp32 (without bf16 units
# autocast emulates bf16, ~20x slower; with AVX512-BF16 alone nothing was measured).
STUDENT = "student"  # BF16_MEASURED's name for the students' network
BF16_MEASURED: dict[str, dict[str, dict[int, tuple[float, float]]]] = {
    "amx": {
        "googlenet": {64: (0.78, 0.47), 96: (1.04, 1.36), 128: (1.18, 1.19), 160: (1.40, 1.17),
                      224: (1.64, 1.43), 320: (1.46, 1.57), 448: (2.04, 1.70)},
        "effnet-lite0": {96: (0.43, 0.53), 224: (0.48, 0.58), 448: (0.46, 0.52)},
        # a student's one pass (livedream.student, any teacher: one architecture), medians of 7
        STUDENT: {64: (0.68, 0.63), 96: (0.80, 0.71), 160: (1.07, 0.95), 224: (1.28, 1.16),
                  320: (1.58, 1.26), 448: (1.61, 1.47)},
    },
}
# bf16 is picked from the smallest measured side on which it was at least this much faster, at
# that side and every larger one, with either thread count: a margin over run-to-run noise.
BF16_MIN_GAIN = 1.1


def bf16_from(measured: dict[int, tuple[float, float]]) -> int | None:
    """The smallest input side from which bf16 was measured faster (by BF16_MIN_GAIN) at every
    measured side, or None: the size above which `auto` picks bf16."""
    start = None
    for side in sorted(measured, reverse=True):
        if min(measured[side]) < BF16_MIN_GAIN:
            break
        start = side
    return start


def choose_precision(requested: str, device: torch.device, *, model: str, pixels: int | None = None) -> str:
    """The precision to run in. `auto`: fp16 on CUDA; on the CPU bf16 only where BF16_MEASURED
    found it faster for this network (`model`) at inputs of `pixels` pixels (None: large inputs)
    on a CPU with the same bf16 units; fp32 everywhere else, so `auto` never picks what was
    measured slower."""
    if requested == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 needs a CUDA device; on the CPU use bf16 or fp32")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "fp16"
    measured = BF16_MEASURED.get(bf16_units() or "", {}).get(model)
    side = bf16_from(measured) if measured else None
    if side is None or (pixels is not None and pixels < side * side):
        return "fp32"
    return "bf16"


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[None]:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])




@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the OS at once.

    Activation tensors of a gradient step are tens of MB; by default glibc serves each from a
    fresh mmap and unmaps it on free, so every step page-faults its whole working set again.
    Measured here (one thread): 106k page faults and 0.33 s of system time per 1280x720 step,
    6k faults / 21 ms per 320x240 frame; with this, ~0 faults, and the peak RSS is unchanged.
    One arena for every thread: glibc gives each new thread its own arena, made of 64 MB heaps
    that it unmaps whenever one falls empty, whatever the trim threshold. The threads that dream
    an image's tiles in parallel (see `dream_workers`) then page-faulted again: measured, 914x514,
    3 steps on 2 replicas: 35-46k faults and 0.1 s of system time, peak RSS 846 MB; with one
    arena no faults and 615 MB. Allocations are few (hundreds per step), so the shared arena's
    lock costs nothing measurable.
    Process-wide and done once; returns False where it does not apply (not glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8
        ok = libc.mallopt(m_mmap_max, 0) == 1
        ok = libc.mallopt(m_arena_max, 1) == 1 and ok
        return bool(libc.mallopt(m_trim_threshold, 1 << 30) == 1 and ok)
    except (OSError, AttributeError):
        return False
