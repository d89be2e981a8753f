"""The machine the numbers come from: CPU model, cores, instruction sets, torch and its threads."""

from __future__ import annotations

import os
import platform

import torch

from livedream.devices import BF16_MEASURED, STUDENT, bf16_units, choose_precision, cpu_has_fast_bf16
from livedream.devices import bf16_from as _bf16_from

__all__ = ["describe_machine"]


def _cpuinfo() -> tuple[str, int | None, set[str]]:
    """(model name, physical cores or None, flags) from /proc/cpuinfo (Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return platform.processor() or "unknown", None, set()
    model, phys = "unknown", "0"
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()  # (physical id, core id)
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "model name" and model == "unknown":
            model = value
        elif key == "flags" and not flags:
            flags = set(value.split())
        elif key == "physical id":
            phys = value
        elif key == "core id":
            cores.add((phys, value))
    return model, len(cores) or None, flags


def _auto_precision(model: str) -> str:
    """What precision `auto` picks for `model` on this CPU, by input size."""
    cpu = torch.device("cpu")
    if choose_precision("auto", cpu, model=model) == "fp32":
        return "fp32"
    side = _bf16_from(BF16_MEASURED[bf16_units() or ""][model])
    return f"bf16 from {side}x{side} px inputs (fp32 below)"


def describe_machine() -> dict[str, object]:
    model, cores, flags = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu": model, "physical_cores": cores, "logical_cpus": os.cpu_count(), "usable_cpus": usable,
        "hypervisor": "hypervisor" in flags,
        "isa": {name: name in flags for name in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")},
        "bf16_units": cpu_has_fast_bf16(),  # AMX or AVX512-BF16
        "bf16_kind": bf16_units(),  # "amx", "avx512_bf16" or None
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "auto_precision": {model: _auto_precision(model) for model in ("effnet-lite0", "googlenet", STUDENT)},
        "python": platform.python_version(), "platform": platform.platform(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
