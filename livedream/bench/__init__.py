"""`livedream bench`: the benchmark suite, measured the same way every time, side by side with the
published figures and the classic per-frame baseline.

    livedream bench [--quick] [--json PATH] [--markdown PATH] [--plots DIR] [--sections LIST] [--threads N]

(the command line is `livedream.cli.bench`; this package is the suite.)

Sections: machine, image (per network and precision, against the published figures), sweep
(iterations x octaves x octave scale x layer; the channel check), video (fps per preset and
dream width, strength and flicker, realtime vs classic, live latency, file to file), student
(the shipped student's speed, photo time, strength on unseen frames, training curve), adaptive
(adaptive quality live: where it settles, fps, latency), ladder (each rung of the adaptive
ladders on the same frames: fps, strength, flicker), scaling (threads, batch, devices) and
roofline (achieved GFLOP/s vs the matmul and conv peaks). Every row that
misses its target says so ("MISSED", with the target). Benchmarks never fail on speed: the exit
code is 0 whatever the numbers. `--quick` runs every path at tiny sizes (CI) and judges nothing.

The JSON: `machine`, `image.<network>/<precision>/<case>.seconds`, `sweep.rows`,
`video.presets.<name>.{fps, strength, flicker}`, `video.ratio_realtime_vs_classic`,
`video.widths.<preset>.<width>`, `video.live`, `video.iters`, `video.file_to_file`,
`student.{inference, photo, unseen, curve}`, `adaptive.live <preset>`, `ladder.<kind>[rung]`,
`scaling.{threads, batch, devices}`, `roofline.{matmul_peak, conv_peak, dream_step}`, and per section
`sections.<name>.{wall_seconds, cpu_seconds, load_before, load_after}`.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the suite imports torch; importing the package must stay cheap
    from livedream.bench.common import Plan

__all__ = ["SECTIONS", "run_suite"]

SECTIONS = ("machine", "image", "sweep", "video", "student", "adaptive", "ladder", "scaling", "roofline")


def _section(name: str, plan: Plan, env: dict[str, str]) -> object:
    """One section's results; its module (and torch) imported only now."""
    if name == "machine":
        from livedream.bench.machine import describe_machine

        return describe_machine()
    if name == "image":
        from livedream.bench.image import bench_image

        return bench_image(plan, env)
    if name == "sweep":
        from livedream.bench.image import bench_sweep

        return bench_sweep(plan)
    if name == "video":
        from livedream.bench.video import bench_video

        return bench_video(plan, env)
    if name == "student":
        from livedream.bench.student import bench_student

        return bench_student(plan)
    if name == "adaptive":
        from livedream.bench.student import bench_adaptive

        return bench_adaptive(plan)
    if name == "ladder":
        from livedream.bench.ladder import bench_ladder

        return bench_ladder(plan)
    if name == "scaling":
        from livedream.bench.scaling import bench_scaling

        return bench_scaling(plan)
    from livedream.bench.scaling import bench_roofline

    return bench_roofline(plan)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_suite(plan: Plan, sections: Sequence[str] = SECTIONS, *, threads: int | None = None,
              command: str = "", on_section: Callable[[dict], None] | None = None) -> dict[str, object]:
    """Run `sections` of the suite at `plan`'s sizes -> the results (JSON-ready).

    threads: torch intra-op threads for this process (and OMP_NUM_THREADS for the processes it
    starts); None keeps torch's default. `on_section(results so far)` after each section.
    Plans: `livedream.bench.common.FULL` (the published table) and `QUICK` (CI).
    """
    import torch

    from livedream.bench.common import load_average, log

    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(sorted(unknown))}; available: {', '.join(SECTIONS)}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    started = time.perf_counter()
    meta: dict[str, object] = {
        "plan": plan.name, "command": command or "livedream bench",
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "threads": torch.get_num_threads(), "wall_seconds": 0.0,
        "note": "the CPU may have been shared with other work: see sections.*.load_before/after",
    }
    timings: dict[str, object] = {}  # data["sections"]
    data: dict[str, object] = {"meta": meta, "sections": timings}
    try:
        for name in (s for s in SECTIONS if s in sections):
            load, cpu, t = load_average(), _cpu_seconds(), time.perf_counter()
            log(f"== {name} (load average {load})")
            data[name] = _section(name, plan, env)
            timings[name] = {
                "wall_seconds": round(time.perf_counter() - t, 1),
                "cpu_seconds": round(_cpu_seconds() - cpu, 1),
                "load_before": load, "load_after": load_average()}
            meta["wall_seconds"] = round(time.perf_counter() - started, 1)
            if on_section is not None:
                on_section(data)
    finally:
        torch.set_num_threads(before)
    return data
