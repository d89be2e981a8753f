"""Single images per network and precision against the published figures, and the parameter
sweep (iterations x octaves x octave scale x layer -> time and strength; the channel check).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from itertools import product
from typing import TypedDict

import torch
from torch.utils.flop_counter import FlopCounterMode

from livedream.bench.common import ImageCase, Plan, Summary, Target, log, photo, repeat, summary, verdict
from livedream.config import DreamConfig, preset
from livedream.devices import bf16_units, cpu_flags
from livedream.dream import Dreamer
from livedream.models.fused import fused_enabled, set_fused

__all__ = ["bench_image", "bench_sweep", "network_weights", "count_flops", "bf16_why", "measure_peaks"]

RANDOM_WHY = ("random weights (no pretrained GoogLeNet ships with a package): the time does not depend "
              "on the weight values, the strength does, so it is not reported")


def bf16_why(cases: tuple[str, ...], flags: frozenset[str] | None = None) -> str:
    """Why a bf16 row is skipped, naming what this CPU really has."""
    flags = cpu_flags() if flags is None else flags
    only = f"bf16 only on {', '.join(cases) or 'none'}"
    units = bf16_units(flags)
    if units is not None:
        kind = "AMX and AVX512-BF16" if units == "amx" else "AVX512-BF16 (no AMX)"
        return f"{only}, as the plan asks (this CPU has {kind}: bf16 runs natively)"
    has = [name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("fma", "FMA")) if flag in flags]
    return (f"{only}: this CPU ({', '.join(has) or 'no AVX'}) has neither AMX nor AVX512-BF16, so CPU "
            "autocast emulates bf16 and runs ~15-20x slower than fp32 (larger sizes would take minutes "
            "per row)")


def bf16_cases(plan: Plan) -> tuple[str, ...]:
    """The image cases run in bf16: all of them where the CPU computes bf16 natively (AMX or
    AVX512-BF16), else the plan's few (emulated bf16 is slow)."""
    return tuple(c.id for c in plan.image_cases) if bf16_units() else plan.bf16_cases


def measure_peaks(plan: Plan, precisions: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """The roofline section's matmul and dense-conv peaks (GFLOP/s) per precision, measured here
    (at this process's threads) so the image rows can say what share of them they reach."""
    from livedream.bench.scaling import conv_peak, matmul_peak

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    return {p: {"matmul": matmul_peak(plan.matmul_n, dtypes[p], plan.repeats)["gflops_per_s"],
                "conv": conv_peak(*plan.conv_size, dtypes[p], plan.repeats)["gflops_per_s"]}
            for p in precisions}


def network_weights(network: str, folder: str) -> tuple[str | None, bool]:
    """(weights path for DreamConfig, pretrained?). GoogLeNet: the torch hub's file when it is
    cached, else a state dict of random weights saved into `folder` (same shapes, same time)."""
    if network != "googlenet":
        return None, True
    from livedream.models.googlenet import GoogLeNet, hub_weights

    found = hub_weights()
    if found:
        return found, True
    path = os.path.join(folder, "googlenet-random.pth")
    if not os.path.exists(path):
        torch.manual_seed(0)
        torch.save(GoogLeNet().state_dict(), path)
    return path, False


def count_flops(dreamer: Dreamer, x: torch.Tensor, cfg: DreamConfig) -> int:
    """Floating-point operations (convolutions and matmuls, forward + backward) of one dream.

    Counted on the plain layers with one replica: the counter sees only standard aten ops, on this
    thread; the fused ops and parallel tiles do the same arithmetic."""
    counter = FlopCounterMode(display=False)
    workers, fused = dreamer.workers, fused_enabled(dreamer.net)
    dreamer.workers = 1
    set_fused(dreamer.net, False)
    try:
        with counter:
            dreamer.dream(x, cfg)
    finally:
        dreamer.workers = workers
        set_fused(dreamer.net, fused)
    return int(counter.get_total_flops())


def _gain(dreamer: Dreamer, x: torch.Tensor, y: torch.Tensor) -> float:
    """The target layer's energy on the output over the input."""
    return float(dreamer.energy(y)[0] / dreamer.energy(x)[0])


def image_row(dreamer: Dreamer, case: ImageCase, plan: Plan, pretrained: bool,
              targets: tuple[Target, ...], peaks: dict[str, float] | None = None) -> dict[str, object]:
    cfg = preset("classic", dreamer.cfg, **dict(case.overrides))
    x = photo(case.width, case.height)  # (1, 3, H, W)
    # One iteration per octave under the flop counter counts the work (each further iteration
    # repeats it exactly); one more, as it runs, warms every octave size up (oneDNN builds its
    # kernels on first use).
    flops = count_flops(dreamer, x, cfg.replace(iters=1)) * cfg.iters
    dreamer.dream(x, cfg.replace(iters=1))
    outs: list[torch.Tensor] = []
    dreamer.profile.reset()
    times = repeat(lambda: outs.append(dreamer.dream(x, cfg)), plan.repeats, plan.budget)
    stats = summary(times)
    med = float(stats["median"])
    rate = flops / 1e9 / med
    step = dreamer.profile.per_step_ms()
    return {
        "seconds": med, "spread": stats["spread"], "runs": stats["runs"], "samples": stats["samples"],
        "width": case.width, "height": case.height, "iters": cfg.iters, "octaves": cfg.octaves,
        "octave_scale": cfg.octave_scale, "tile": cfg.tile, "layer": dreamer.paths[0],
        "gflop": round(flops / 1e9, 2), "gflops_per_s": round(flops / 1e9 / med, 1),
        # the rate the fastest target would need, to compare with the roofline's peaks
        "gflops_per_s_needed": round(flops / 1e9 / min(t.value for t in targets), 1) if targets else None,
        "strength": round(_gain(dreamer, x, outs[-1]), 3) if pretrained else None,
        # per gradient step, averaged over the timed runs: the network's forward and backward
        # passes and the rest (jitter, crops, the normalised update); see dream.StepProfile
        "step_ms": {k: round(v, 1) for k, v in step.items()},
        "parallel_steps": round(dreamer.profile.parallel_steps / max(1, dreamer.profile.steps), 2),
        "replicas": dreamer.replicas_used,
        # the machine's matmul and dense-conv peaks at these threads (the roofline section's
        # measurement, taken again here) and the share of them this dream reaches
        "peak_gflops_per_s": peaks,
        "share_of_peak": ({k: round(rate / v, 3) for k, v in peaks.items() if v > 0} if peaks else None),
        "targets": [t.text() for t in targets], "status": verdict(med, targets, plan.judged),
    }


def tiled_4k(env: dict[str, str]) -> dict[str, object]:
    """Peak RSS of a separate process dreaming 3840x2160 (classic, 2 iterations, tiles of 512)."""
    code = (
        "import json, resource, time\n"
        "from livedream.bench.common import photo\n"
        "from livedream.config import preset\nfrom livedream.dream import Dreamer\n"
        "d = Dreamer(preset('classic', iters=2))\nx = photo(3840, 2160)\n"
        "t = time.perf_counter(); d.dream(x); s = time.perf_counter() - t\n"
        "print(json.dumps({'seconds': s, 'kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    rss = data["kb"] / 1024**2
    target = Target("peak RSS, tiles on every core", 2.2, "GB")
    return {"seconds": round(data["seconds"], 3), "peak_rss_gb": round(rss, 2), "iters": 2, "octaves": 4,
            "tile": 512, "runs": 1, "targets": [target.text()], "status": verdict(rss, [target], True)}


def startup(repeats: int, env: dict[str, str], judged: bool) -> dict[str, object]:
    """Process start to model ready (`Dreamer()` built), as `livedream image` does it."""
    code = "from livedream.dream import Dreamer\nDreamer()\n"
    times = repeat(lambda: subprocess.run([sys.executable, "-c", code], check=True, env=env,
                                          capture_output=True), repeats, 60.0)
    stats = summary(times)
    target = Target("issue 2, process start to model ready", 3.0)
    return {"seconds": stats["median"], "spread": stats["spread"], "runs": stats["runs"],
            "samples": stats["samples"], "targets": [target.text()],
            "status": verdict(float(stats["median"]), [target], judged)}


def bench_image(plan: Plan, env: dict[str, str]) -> dict[str, dict[str, object]]:
    """`image.<network>/<precision>/<case>` -> seconds (median), spread, GFLOP/s, strength, status."""
    rows: dict[str, dict[str, object]] = {}
    in_bf16 = bf16_cases(plan)
    peaks = measure_peaks(plan, ("fp32", "bf16") if in_bf16 else ("fp32",))
    log("image peaks GFLOP/s: " + ", ".join(f"{p} {k} {v}" for p, t in peaks.items() for k, v in t.items()))
    with tempfile.TemporaryDirectory() as folder:
        for network, precision in product(plan.networks, ("fp32", "bf16")):
            cases = [c for c in plan.image_cases if precision == "fp32" or c.id in in_bf16]
            skipped = {"seconds": None, "skipped": bf16_why(plan.bf16_cases)}
            for case in plan.image_cases:  # every row in order; the measured ones are filled in below
                rows[f"{network}/{precision}/{case.id}"] = {} if case in cases else dict(skipped)
            if not cases:
                continue
            weights, pretrained = network_weights(network, folder)
            dreamer = Dreamer(DreamConfig(model=network, weights=weights, precision=precision))
            for case in cases:
                key = f"{network}/{precision}/{case.id}"
                targets = case.targets + (case.default_network_only if network == "effnet-lite0" else ())
                row = image_row(dreamer, case, plan, pretrained, targets, peaks.get(precision))
                if not pretrained:
                    row["note"] = RANDOM_WHY
                rows[key] = row
                log(f"image {key} {case.width}x{case.height}: {row['seconds']:.3f} s "
                    f"(spread {row['spread']:.3f}, {row['runs']} runs) per step {row['step_ms']} ms "
                    f"{row['status']}")
    rows["effnet-lite0/fp32/tiled-3840x2160"] = (
        tiled_4k(env) if plan.tiled_4k else {"seconds": None, "skipped": "full run only (minutes)"})
    rows["startup"] = (startup(plan.startup_repeats, env, plan.judged) if plan.processes
                       else {"seconds": None, "skipped": "no separate processes in this plan"})
    log(f"image startup: {rows['startup']['seconds']} s {rows['startup'].get('status', '')}")
    return rows


# -- sweep ----------------------------------------------------------------------------------------
def bench_sweep(plan: Plan) -> dict[str, object]:
    """Time and strength over iterations x octaves x octave scale x layer (effnet-lite0, fp32,
    step and jitter of `classic`), and whether the chosen channel changes the time."""
    x = photo(*plan.sweep_size)
    rows = []
    for layer in plan.sweep_layers:
        dreamer = Dreamer(DreamConfig(layers=(layer,), precision="fp32"))
        e_in = float(dreamer.energy(x)[0])
        dreamer.dream(x, dreamer.cfg.replace(iters=1))  # warm-up at every octave size
        for octaves, scale, iters in product(plan.sweep_octaves, plan.sweep_scales, plan.sweep_iters):
            if octaves == 1 and scale != plan.sweep_scales[0]:
                continue  # the scale does nothing with one octave
            cfg = dreamer.cfg.replace(iters=iters, octaves=octaves, octave_scale=scale)
            outs: list[torch.Tensor] = []

            def run(d: Dreamer = dreamer, c: DreamConfig = cfg, o: list[torch.Tensor] = outs) -> None:
                o.append(d.dream(x, c))

            stats = summary(repeat(run, plan.repeats, plan.budget))
            rows.append({"layer": layer, "iters": iters, "octaves": octaves, "octave_scale": scale,
                         "seconds": stats["median"], "spread": stats["spread"], "runs": stats["runs"],
                         "strength": round(float(dreamer.energy(outs[-1])[0]) / e_in, 3)})
        log(f"sweep {layer}: {sum(1 for r in rows if r['layer'] == layer)} settings")
    with tempfile.TemporaryDirectory() as folder:
        channels = [channel_check(plan, network, layer, picks, folder)
                    for network, layer, picks in plan.channel_checks]
    return {"network": "effnet-lite0", "precision": "fp32", "width": plan.sweep_size[0],
            "height": plan.sweep_size[1], "strength": "target layer energy, output / input",
            "rows": rows, "channels": channels}


def channel_check(plan: Plan, network: str, layer: str, picks: tuple[int | None, ...],
                  folder: str) -> dict[str, object]:
    """The hackathon saw the chosen channel (filter) not change the time: dream 5 iterations x
    1 octave per channel, interleaved round by round so a change in load hits all alike."""
    weights, _ = network_weights(network, folder)
    dreamer = Dreamer(DreamConfig(model=network, weights=weights, layers=(layer,), precision="fp32",
                                  iters=5, octaves=1))
    x = photo(*plan.sweep_size)
    dreamer.dream(x, dreamer.cfg.replace(iters=1))
    times: dict[int | None, list[float]] = {c: [] for c in picks}
    for _ in range(max(plan.repeats, 2)):
        for c in picks:
            cfg = dreamer.cfg.replace(channel=c)

            def run(cfg: DreamConfig = cfg) -> torch.Tensor:
                return dreamer.dream(x, cfg)

            times[c] += repeat(run, 1, 0.0)
    rows: list[_ChannelRow] = [{"channel": "all (layer energy)" if c is None else c, **_brief(summary(t))}
                               for c, t in times.items()]
    # The claim is about channels among themselves; the whole layer's energy is listed beside them.
    picked = [r for r in rows if isinstance(r["channel"], int)] or rows
    medians = [float(r["seconds"]) for r in picked]
    ratio = max(medians) / min(medians)
    noise = max(float(r["spread"]) for r in picked)
    if ratio <= 1.10:
        status = "confirmed: the channel does not change the time (medians within 10%)"
    elif max(medians) - min(medians) <= noise:
        status = "confirmed within noise: the medians differ by less than one run's spread"
    else:
        status = "NOT confirmed: the times differ by more than 10% and more than the spread"
    log(f"channels {network} {layer}: slowest / fastest channel {ratio:.3f}")
    return {"network": network, "layer": layer, "channels": dreamer.channels, "rows": rows,
            "slowest_over_fastest": round(ratio, 3), "status": status}


class _Brief(TypedDict):
    seconds: float  # the median
    spread: float
    runs: int


class _ChannelRow(_Brief):
    channel: int | str  # a channel, or "all (layer energy)"


def _brief(stats: Summary) -> _Brief:
    return {"seconds": stats["median"], "spread": stats["spread"], "runs": stats["runs"]}
