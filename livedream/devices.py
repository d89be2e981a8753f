"""Device parsing and the precision choice: the one place that decides fp32 / bf16 / fp16."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys

import torch

from livedream.config import ConfigError

__all__ = [
    "parse_device", "parse_devices", "choose_precision", "autocast", "cpu_has_fast_bf16",
    "keep_freed_memory", "resolve_devices", "worker_threads", "AUTO",
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


def parse_devices(spec: str) -> list[torch.device]:
    """'cuda:0,cuda:1' or 'cpu,cpu' -> devices (repeats allowed: one model replica each)."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ConfigError("no device given")
    return [parse_device(n) for n in names]


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 matrix units (AMX or AVX512-BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def choose_precision(requested: str, device: torch.device, *, dense: bool) -> str:
    """The precision to run in. `auto`: fp16 on CUDA; bf16 on CPUs with bf16 units for dense
    networks (measured: ~2x on AMX for GoogLeNet; depthwise EfficientNet gains little); else fp32."""
    if requested == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 needs a CUDA device; on the CPU use bf16 or fp32")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "fp16"
    return "bf16" if dense and cpu_has_fast_bf16() else "fp32"


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
    Process-wide and done once; returns False where it does not apply (not glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        ok = libc.mallopt(m_mmap_max, 0) == 1
        return bool(libc.mallopt(m_trim_threshold, 1 << 30) == 1 and ok)
    except (OSError, AttributeError):
        return False
