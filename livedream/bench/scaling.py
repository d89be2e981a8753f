"""Scaling (throughput vs threads, batch size and devices; CUDA rows when there is CUDA) and the
roofline (achieved GFLOP/s of one dream step next to the measured matmul peak, fp32 and bf16).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import TypedDict

import cv2
import torch

from livedream.bench.common import (
    Plan,
    RunReport,
    limited,
    load_clip,
    log,
    repeat,
    replay,
    run_report,
    summary,
)
from livedream.bench.image import count_flops, network_weights
from livedream.config import DreamConfig, video_preset
from livedream.dream import Dreamer, to_tensor
from livedream.io.sinks import NullSink
from livedream.pipeline import Pipeline, build_dreamers

__all__ = ["bench_scaling", "bench_roofline", "matmul_peak", "conv_peak"]


def _frames(plan: Plan, size: tuple[int, int], n: int) -> torch.Tensor:
    """n frames of the clip at `size`: (n, 3, H, W) float 0..255."""
    frames = load_clip(plan.clip_size).frames[:n]
    return to_tensor([cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) for *_, rgb in frames])


def _fps(dreamer: Dreamer, x: torch.Tensor, cfg: DreamConfig, plan: Plan) -> dict[str, object]:
    """Frames per second dreaming the batch `x` (B, 3, H, W) at once: median over repeats."""
    dreamer.dream(x, cfg)  # warm-up at this batch size
    stats = summary(repeat(lambda: dreamer.dream(x, cfg), max(plan.repeats, 3), plan.budget / 3))
    return {"fps": round(x.shape[0] / float(stats["median"]), 2), "seconds": stats["median"],
            "spread": stats["spread"], "runs": stats["runs"]}


def bench_scaling(plan: Plan) -> dict[str, object]:
    """Dream stage throughput (`realtime` by gradient ascent: 1 iteration, 1 octave) vs threads
    and batch size; end to end (decoded frames .. NullSink) vs devices (frames dealt round-robin
    to one model replica per device)."""
    rt = video_preset("realtime").replace(student=None)
    dreamer = Dreamer(rt.dream)
    cfg = rt.dream
    size = plan.scale_size
    x = _frames(plan, size, max(plan.batches))
    result: dict[str, object] = {"size": list(size),
                                 "preset": "realtime by gradient ascent (dream stage: 1 iteration, 1 octave)"}

    before = torch.get_num_threads()
    threads = {}
    for n in sorted({1, before, os.cpu_count() or 1}):
        torch.set_num_threads(n)
        threads[str(n)] = _fps(dreamer, x[:1], cfg, plan)
    torch.set_num_threads(before)
    result["threads"] = threads
    log("scaling threads: " + ", ".join(f"{k}: {v['fps']} fps" for k, v in threads.items()))

    batch = {str(b): _fps(dreamer, x[:b], cfg, plan) for b in plan.batches}
    result["batch"] = batch
    log("scaling batch: " + ", ".join(f"{k}: {v['fps']} fps" for k, v in batch.items()))

    devices: dict[str, object] = {}
    for names in plan.device_sets + _cuda_sets():
        key = ",".join(names)
        vcfg = video_preset("realtime", devices=names, precision="auto").replace(student=None)
        dreamers = build_dreamers(vcfg)
        reports: list[RunReport] = []
        for _ in range(plan.repeats):
            frames = limited(replay(load_clip(plan.clip_size)), plan.run_frames, plan.run_seconds, 8)
            reports.append(run_report(Pipeline(frames, [NullSink()], vcfg, dreamers).run()))
        stats = summary([float(r["fps"]) for r in reports])
        devices[key] = {"fps": stats["median"], "spread": stats["spread"], "runs": stats["runs"],
                        "precision": dreamers[0].precision, "busy_seconds": reports[-1]["busy_seconds"]}
        log(f"scaling devices {key}: {stats['median']} fps end to end")
    if not torch.cuda.is_available():
        why = f"torch {torch.__version__} sees no CUDA device here"
        devices["cuda:0 (fp16)"] = {"fps": None, "skipped": why}
        devices["cuda:0,cuda:1,... (fp16, 1..N GPUs)"] = {"fps": None, "skipped": why}
    result["devices"] = devices
    return result


def _cuda_sets() -> tuple[tuple[str, ...], ...]:
    """('cuda:0',), ('cuda:0', 'cuda:1'), ... on a machine with CUDA; () here."""
    if not torch.cuda.is_available():
        return ()
    return tuple(tuple(f"cuda:{i}" for i in range(n)) for n in range(1, torch.cuda.device_count() + 1))


# -- roofline -------------------------------------------------------------------------------------
class Rate(TypedDict):
    """GFLOP/s: the median over the bursts, their spread (max - min) and count."""

    gflops_per_s: float
    spread: float
    runs: int


class MatmulPeak(Rate):
    n: int


class ConvPeak(Rate):
    shape: str


def matmul_peak(n: int, dtype: torch.dtype, repeats: int) -> MatmulPeak:
    """GFLOP/s of an n x n matmul (2 n^3 flops), median over repeats of >= 0.2 s each."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return {"n": n, **_rate(lambda: torch.mm(a, b), 2 * n**3, repeats)}


def conv_peak(channels: int, side: int, dtype: torch.dtype, repeats: int) -> ConvPeak:
    """GFLOP/s of a dense 3x3 convolution, channels -> channels on side x side, channels-last
    (oneDNN's path, the one the networks take), median over repeats of >= 0.2 s each."""
    x = torch.randn(1, channels, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
    flops = 2 * channels * channels * 9 * side * side
    with torch.no_grad():
        gflops = _rate(lambda: torch.nn.functional.conv2d(x, w, padding=1), flops, repeats)
    return {"shape": f"{channels}->{channels} ch, {side}x{side}", **gflops}


def _rate(fn: Callable[[], object], flops: int, repeats: int) -> Rate:
    """GFLOP/s of `fn` (doing `flops`): median over repeats of bursts of >= 0.2 s."""
    fn()
    t = time.perf_counter()
    fn()
    reps = max(1, int(0.2 / max(time.perf_counter() - t, 1e-6)))

    def burst() -> None:
        for _ in range(reps):
            fn()

    stats = summary(repeat(burst, max(repeats, 3), 30.0))
    gflops = sorted(flops * reps / s / 1e9 for s in stats["samples"])
    return {"gflops_per_s": round(gflops[len(gflops) // 2], 1), "spread": round(gflops[-1] - gflops[0], 1),
            "runs": len(gflops)}


def bench_roofline(plan: Plan) -> dict[str, object]:
    """One dream step (forward + backward at the target layer, FLOPs counted by torch's flop
    counter: convolutions and matmuls) per network and precision, against the matmul peak."""
    peak = {"fp32": matmul_peak(plan.matmul_n, torch.float32, plan.repeats),
            "bf16": matmul_peak(plan.matmul_n, torch.bfloat16, plan.repeats)}
    conv = {"fp32": conv_peak(*plan.conv_size, torch.float32, plan.repeats),
            "bf16": conv_peak(*plan.conv_size, torch.bfloat16, plan.repeats)}
    log("roofline peaks GFLOP/s: " + ", ".join(f"{kind} {p} {table[p]['gflops_per_s']}"
                                              for kind, table in (("matmul", peak), ("conv", conv))
                                              for p in table))
    steps: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as folder:
        for network in plan.networks:
            weights, _ = network_weights(network, folder)
            for precision in ("fp32", "bf16"):
                w, h = plan.roofline_size if precision == "fp32" else plan.roofline_bf16_size
                cfg = DreamConfig(model=network, weights=weights, precision=precision, iters=1, octaves=1)
                dreamer = Dreamer(cfg)
                x = _frames(plan, (w, h), 1)
                flops = count_flops(dreamer, x, cfg)  # also the warm-up

                def step(d: Dreamer = dreamer, c: DreamConfig = cfg, x: torch.Tensor = x) -> torch.Tensor:
                    return d.dream(x, c)

                stats = summary(repeat(step, max(plan.repeats, 3), plan.budget / 3))
                achieved = flops / float(stats["median"]) / 1e9
                top = float(peak[precision]["gflops_per_s"])
                conv_top = float(conv[precision]["gflops_per_s"])
                steps[f"{network}/{precision}"] = {
                    "width": w, "height": h, "gflop": round(flops / 1e9, 3), "seconds": stats["median"],
                    "spread": stats["spread"], "runs": stats["runs"], "gflops_per_s": round(achieved, 1),
                    "peak_gflops_per_s": top, "fraction_of_peak": round(achieved / top, 3),
                    "conv_peak_gflops_per_s": conv_top,
                    "fraction_of_conv_peak": round(achieved / conv_top, 3),
                }
                log(f"roofline {network} {precision} {w}x{h}: {flops / 1e9:.2f} GFLOP in {stats['median']} s "
                    f"= {achieved:.1f} GFLOP/s ({100 * achieved / top:.0f}% of the matmul peak)")
    return {"matmul_peak": peak, "conv_peak": conv, "dream_step": steps,
            "note": "flops: convolutions and matmuls of forward + backward (torch.utils.flop_counter); "
                    "elementwise work (activations, jitter, normalisation) is not counted"}
