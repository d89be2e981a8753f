"""The suite's results as Markdown tables and PNG plots (plots need matplotlib, an optional extra)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["to_markdown", "write_plots", "headline", "plot_curve"]

Row = Sequence[object]


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    if isinstance(v, list):
        return " ".join(_fmt(x) for x in v)
    return str(v).replace("|", "/")


def _table(headers: Row, rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _med(row: dict, key: str = "seconds", spread: str = "spread") -> str:
    """'median ± spread/2 (n)': the median and the spread (max - min) over the runs."""
    if row.get(key) is None:
        return "-"
    text = _fmt(row[key])
    if row.get(spread) is not None and row.get("runs", 1) > 1:
        text += f" (spread {_fmt(row[spread])}, {row['runs']} runs)"
    return text


# -- sections -------------------------------------------------------------------------------------
def _machine(m: dict) -> str:
    isa = ", ".join(k for k, v in m["isa"].items() if v) or "none listed"
    rows = [
        ("CPU", f"{m['cpu']}{' (virtual machine)' if m['hypervisor'] else ''}"),
        ("cores", f"{m['physical_cores']} physical, {m['logical_cpus']} logical, {m['usable_cpus']} usable"),
        ("instruction sets", isa),
        ("bf16 units", _bf16_units(m)),
        ("torch", f"{m['torch']} ({m['torch_cpu_capability']}, oneDNN {'yes' if m['mkldnn'] else 'no'})"),
        ("threads", f"{m['torch_threads']} intra-op, {m['torch_interop_threads']} inter-op"),
        ("precision `auto` picks", _fmt(m["auto_precision"])),
        ("CUDA devices", m["cuda_devices"]),
        ("Python", f"{m['python']} on {m['platform']}"),
    ]
    return "## Machine\n\n" + _table(("", ""), rows)


def _bf16_units(m: dict) -> str:
    kind = m.get("bf16_kind")
    if kind == "amx":
        return "AMX and AVX512-BF16: bf16 runs natively"
    if kind == "avx512_bf16":
        return "AVX512-BF16 (no AMX): bf16 runs natively"
    return "yes" if m["bf16_units"] else "no (neither AMX nor AVX512-BF16): bf16 autocast is emulated"


def _step_profile(r: dict) -> str:
    """'fwd / bwd / rest' ms per gradient step, and the share of steps with parallel tiles."""
    p = r.get("step_ms")
    if not p:
        return "-"
    text = f"{_fmt(p['forward'])} / {_fmt(p['backward'])} / {_fmt(p['rest'])}"
    if r.get("parallel_steps"):
        text += f" ({_fmt(100 * r['parallel_steps'])}% of steps on {r.get('replicas')} replicas)"
    return text


def _share(r: dict) -> str:
    share = r.get("share_of_peak")
    return " / ".join(f"{100 * share[k]:.1f}%" for k in ("matmul", "conv") if k in share) if share else "-"


def _image(image: dict) -> str:
    rows = []
    for key, r in image.items():
        if r.get("skipped"):
            rows.append((key, "-", "-", "-", "-", "-", "-", "-", "-", "-", f"skipped: {r['skipped']}"))
            continue
        size = f"{r['width']}x{r['height']}" if "width" in r else ("3840x2160" if "3840" in key else "")
        params = (f"{r['iters']} it x {r['octaves']} oct" if "octaves" in r else "")
        extra = f"peak RSS {r['peak_rss_gb']} GB" if "peak_rss_gb" in r else ""
        gain = r.get("strength")
        strength = f"{gain}x" if gain is not None else ("n/a (random weights)" if r.get("note") else "-")
        rows.append((key, f"{size} {params}".strip(), _med(r), r.get("gflop"), r.get("gflops_per_s"),
                     r.get("gflops_per_s_needed"), _share(r), _step_profile(r), strength, extra, r["status"]))
    return ("## Single image\n\nSeconds for the dream itself (model loaded, photo in memory), median over "
            "the runs after a warm-up; spread = slowest - fastest. GFLOP: convolutions and matmuls, "
            "forward + backward; GFLOP/s needed: what the fastest target would take. Of peak: the achieved "
            "GFLOP/s over this machine's measured matmul / dense 3x3 conv peak at the same threads (the "
            "roofline section's measurement). Per step: milliseconds of the network's forward pass, its "
            "backward pass and the rest (jitter, crops, the normalised update) per gradient step, averaged "
            "over the timed runs; with tiles on several replicas the gradient phase's wall time is shared "
            "between forward and backward in proportion. Strength: the target layer's energy, output / "
            "input.\n\n"
            + _table(("row", "size, parameters", "seconds", "GFLOP", "GFLOP/s", "GFLOP/s needed", "of peak",
                      "per step ms: fwd / bwd / rest", "strength", "", "status"), rows))


def _sweep(s: dict) -> str:
    rows: list[Row] = [(r["layer"], r["iters"], r["octaves"], r["octave_scale"], _med(r), f"{r['strength']}x")
                       for r in s["rows"]]
    text = (f"## Parameter sweep\n\n{s['network']}, {s['precision']}, {s['width']}x{s['height']}, step and "
            "jitter of `classic`. Strength: the layer's energy, output / input.\n\n"
            + _table(("layer", "iterations", "octaves", "octave scale", "seconds", "strength"), rows))
    for c in s["channels"]:
        rows = [(r["channel"], _med(r)) for r in c["rows"]]
        text += (f"\nChannel (\"filter\") check, {c['network']} `{c['layer']}` ({c['channels']} channels), "
                 f"5 iterations x 1 octave: slowest / fastest channel = {c['slowest_over_fastest']}: "
                 f"**{c['status']}**\n\n" + _table(("channel", "seconds"), rows))
    return text


def _profile(name: str, r: dict) -> Row:
    share = r.get("busy_share", {})
    return (name, r.get("wall_seconds"), *(f"{_fmt(r['busy_seconds'].get(s))} ({_fmt(share.get(s))})"
                                           for s in ("source", "preprocess", "dream", "postprocess", "sink")))


def _video(v: dict) -> str:
    clip = v["clip"]
    text = (f"## Video\n\nClip: `{clip['name']}` ({clip['width']}x{clip['height']}, {clip['frames']} "
            f"frames; decoding alone: {clip['decode_fps']} fps), {clip['note']}. Strength: {v['strength']}. "
            f"Flicker: {v['flicker']}.\n\n### Frames per second by preset and dream width\n\n"
            "End to end: decoded frames -> preprocess -> dream -> postprocess -> NullSink, median over "
            "runs. Dream alone: the dream stage by itself (warm start + dream, batch 1), median seconds per "
            "warm frame.\n\n")
    rows: list[Row] = []
    for name, widths in v["widths"].items():
        for width, r in widths.items():
            rows.append((name, width, "x".join(map(str, r["dream_size"])),
                         _med(r, "end_to_end_fps", "end_to_end_spread"), r["dream_fps"],
                         _med({**r, "runs": r["dream_frames"]}, "dream_seconds_per_frame", "dream_spread"),
                         r["status"]))
    text += _table(("preset", "dream width", "dream size", "end to end fps", "dream alone fps",
                    "dream s/frame", "status"), rows)
    window = next(iter(v["presets"].values()))["window"]
    text += (f"\n### Per preset on the same frames ({window[0]}..{window[1] - 1})\n\nEach preset at its own "
             "dream width; presets with warm starts run from frame 0 so the warm start has built up, "
             "`classic` dreams the window only. fps: end to end of that run.\n\n")
    rows = [(n, "x".join(map(str, r["dream_size"])),
             "one pass" if r.get("one_pass") else f"{r['iters']} x {r['octaves']}", r["fps"],
             f"{r['strength']}x",
             f"{r['strength_common_scale']}x", f"{r['flicker']}x", r["warping_error"])
            for n, r in v["presets"].items()]
    text += _table(("preset", "dream size", "iters x octaves", "fps", "strength (full size)",
                    "strength (judged at realtime's dream size)", "flicker / input's", "warping error"), rows)
    if "realtime_vs_classic" in v:
        c = v["realtime_vs_classic"]
        judged = [("fps ratio", c["fps_ratio"]), ("strength ratio (full size)", c["strength_ratio"]),
                  ("realtime flicker / input's", c["flicker_vs_input"])]
        rows = [(label, j["value"], j["target"], j["status"]) for label, j in judged]
        rows += [("strength ratio (judged at realtime's dream size)", c["strength_ratio_common_scale"], "-",
                  "for reference"),
                 ("classic flicker / input's", c["classic_flicker_vs_input"], "-", "for reference")]
        text += ("\n### `realtime` vs `classic`, same frames\n\n"
                 + _table(("", "value", "target", "status"), rows))
    rows = [(n, "-", "-", "-", "-", f"skipped: {r['skipped']}") if r.get("skipped") else
            (n, r["p50_ms"], r["p95_ms"], r["fps"], r["dropped"], f"{r['size'][0]}x{r['size'][1]}, "
             f"{r['seconds']:g} s paced at 30 fps") for n, r in v["live"].items()]
    text += ("\n### Live mode, paced synthetic camera\n\nLatency from capture to sink; frames the dream "
             "could not take in time are dropped (counted).\n\n"
             + _table(("preset", "p50 ms", "p95 ms", "fps out", "dropped", ""), rows))
    rows = [(r["iters"], r["dream_fps"], _med({**r, "runs": r["frames"]}, "seconds_per_frame"))
            for r in v["iters"]]
    size = "x".join(map(str, v["iters"][0]["dream_size"])) if v["iters"] else ""
    text += (f"\n### fps vs iterations per frame (`realtime` by gradient ascent, dream alone, {size})\n\n"
             + _table(("iterations", "dream fps", "s/frame"), rows))
    f = v["file_to_file"]
    if f.get("skipped"):
        text += f"\n### File to file\n\nskipped: {f['skipped']}\n"
    else:
        text += ("\n### File to file, whole process (`livedream video`, `realtime`, H.264 + audio)\n\n"
                 + _table(("fps (wall clock, process start to file)", "pipeline fps", "frames", "target",
                           "status"),
                          [(_med(f, "fps"), f["pipeline_fps"], f["frames"], ", ".join(f["targets"]),
                            f["status"])]))
    rows = [_profile("file to file, realtime", f)] if not f.get("skipped") else []
    rows += [_profile(f"same frames, {n}", r) for n, r in v["presets"].items()]
    rows += [_profile(f"end to end, {n} @{w}", r) for n, ws in v["widths"].items() for w, r in ws.items()]
    text += ("\n### Stage profile\n\nBusy seconds per stage (share of the run's wall time). Stages run "
             "in parallel threads, so shares add up to more than 1 when they overlap; the stage near 1 is "
             "the bottleneck.\n\n"
             + _table(("run", "wall s", "source", "preprocess", "dream", "postprocess", "sink"), rows))
    return text


def _student(s: dict) -> str:
    if s.get("skipped"):
        return f"## Student\n\nskipped: {s['skipped']}\n"
    t = s.get("training", {})
    text = (f"## Student\n\nWeights `{os.path.basename(s['weights'])}`"
            + (f", trained {t.get('steps')} steps in {_fmt(t.get('seconds'))} s" if t.get("steps") else "")
            + ". Inference: one forward pass of the student at the live size, median seconds.\n\n")
    inf = s["inference"]
    text += _table(("threads, scale", "seconds"), [(k, _med(v, "median")) for k, v in inf.items()
                                                   if isinstance(v, dict)])
    p = s["photo"]
    text += ("\n### The app's photo through the student\n\nDecode a JPEG, dream, encode.\n\n"
             + _table(("size", "seconds", "target", "status"),
                      [(f"{p['size'][0]}x{p['size'][1]}", _med(p), p["target"], p["status"])]))
    u = s["unseen"]
    text += ("\n### Strength on frames it never saw\n\nThe target layer's energy, output / input, on the "
             "sample clip's frames; classic on the same frames for scale.\n\n"
             + _table(("frames", "student", "classic", "student / classic", "target", "status"),
                      [(u["frames"], f"{u['student_gain']}x", f"{u['classic_gain']}x", u["ratio"],
                        u["target"], u["status"])]))
    return text


def _adaptive(a: dict) -> str:
    rows = [(name, f"{r['size'][0]}x{r['size'][1]}", r["fps_out"], r["p50_ms"], r["p95_ms"], r["dropped"],
             (r.get("quality") or {}).get("level"), r.get("strength"), r["status"]) for name, r in a.items()]
    return ("## Adaptive quality\n\nA paced 30 fps source (the sample clip, looped) dreamed live; the "
            "quality controller picks the rung. Strength: energy gain of the last frames out.\n\n"
            + _table(("run", "size", "fps out", "p50 ms", "p95 ms", "dropped", "rung", "strength", "status"),
                     rows))


def _ladder(a: dict) -> str:
    text = ("## The adaptive ladders, rung by rung\n\nEach rung of `config.QUALITY_LADDERS` on the same "
            "frames as the presets: strength (the layer's energy, output / input) and flicker (x the "
            "input's); a ladder stops at its first rung below its plan's fps floor.\n\n")
    rows = []
    for kind, rungs in a.items():
        if isinstance(rungs, dict):
            rows.append((kind, "-", f"skipped: {rungs['skipped']}", "-", "-", "-"))
            continue
        rows += [(kind, r["rung"], ", ".join(f"{k} {v}" for k, v in r["settings"].items()), r["fps"],
                  f"{r['strength']}x", f"{r['flicker']}x") for r in rungs]
    return text + _table(("ladder", "rung", "settings", "fps", "strength", "flicker"), rows)


def _scaling(s: dict) -> str:
    text = f"## Scaling\n\n{s['preset']}, {s['size'][0]}x{s['size'][1]}.\n\n"
    text += _table(("torch threads", "dream fps", "s per frame"),
                   [(k, r["fps"], _med(r)) for k, r in s["threads"].items()])
    text += "\n" + _table(("batch", "dream fps", "s per batch"),
                          [(k, r["fps"], _med(r)) for k, r in s["batch"].items()])
    rows = [(k, "-", "-", f"skipped: {r['skipped']}") if r.get("skipped") else
            (k, _med(r, "fps"), r["precision"], _fmt(r["busy_seconds"])) for k, r in s["devices"].items()]
    text += ("\nDevices: `realtime` by gradient ascent end to end (decoded frames .. NullSink), frames "
             "dealt round-robin to one model replica per device.\n\n"
             + _table(("devices", "fps", "precision", "busy seconds"), rows))
    return text


def _roofline(r: dict) -> str:
    peaks = [(f"matmul {k}", f"{p['n']}x{p['n']}", _med(p, "gflops_per_s"))
             for k, p in r["matmul_peak"].items()]
    peaks += [(f"conv 3x3 {k}", p["shape"], _med(p, "gflops_per_s")) for k, p in r["conv_peak"].items()]
    text = "## Roofline\n\n" + _table(("peak", "shape", "GFLOP/s"), peaks)
    rows = [(k, f"{s['width']}x{s['height']}", s["gflop"], _med(s), s["gflops_per_s"], s["peak_gflops_per_s"],
             f"{100 * s['fraction_of_peak']:.1f}%", s["conv_peak_gflops_per_s"],
             f"{100 * s['fraction_of_conv_peak']:.1f}%") for k, s in r["dream_step"].items()]
    return text + f"\nOne dream step ({r['note']}).\n\n" + _table(
        ("network / precision", "size", "GFLOP", "seconds", "GFLOP/s", "matmul peak", "of it", "conv peak",
         "of it"), rows)


def _loads(data: dict) -> str:
    rows = [(name, s["wall_seconds"], s["cpu_seconds"], _fmt(s["load_before"]), _fmt(s["load_after"]))
            for name, s in data["sections"].items()]
    return ("## Load while it ran\n\nLoad average (1, 5, 15 min) before and after each section; CPU seconds "
            "of this process and its children. A load above the core count means other work shared the "
            "CPU.\n\n"
            + _table(("section", "wall s", "CPU s", "load before", "load after"), rows))


def to_markdown(data: dict) -> str:
    meta = data["meta"]
    note = meta["note"][:1].upper() + meta["note"][1:]
    text = (f"# livedream bench ({meta['plan']})\n\n{meta['started']}, {meta['wall_seconds']:.0f} s, "
            f"`{meta['command']}`, {meta['threads']} torch thread(s). {note}.\n\n")
    if meta["plan"] != "full":
        text += "Quick sizes: every path runs, nothing is judged against a target.\n\n"
    parts = {"machine": _machine, "image": _image, "sweep": _sweep, "video": _video, "scaling": _scaling,
             "student": _student, "adaptive": _adaptive, "ladder": _ladder, "roofline": _roofline}
    for name, fn in parts.items():
        if name in data:
            text += fn(data[name]) + "\n"
    return text + _loads(data)


def headline(data: dict) -> list[str]:
    """A few lines for the console: the rows that carry targets, and how they did."""
    lines = []
    for key, r in data.get("image", {}).items():
        if r.get("status") not in (None, "no target"):
            lines.append(f"image {key}: {r['seconds']} s  {r['status']}")
    v = data.get("video", {})
    if "file_to_file" in v and not v["file_to_file"].get("skipped"):
        lines.append(f"video file to file: {v['file_to_file']['fps']} fps  {v['file_to_file']['status']}")
    for k, c in v.get("realtime_vs_classic", {}).items():
        if isinstance(c, dict):
            lines.append(f"video realtime vs classic {k}: {c['value']}  {c['status']}")
    s = data.get("student", {})
    for key in ("photo", "unseen"):
        if isinstance(s.get(key), dict):
            r = s[key]
            value = f"{r['seconds']} s" if key == "photo" else f"{r['student_gain']}x"
            lines.append(f"student {key}: {value}  {r['status']}")
    for name, r in data.get("adaptive", {}).items():
        lines.append(f"adaptive {name}: {r['fps_out']} fps, p95 {r['p95_ms']} ms  {r['status']}")
    return lines


# -- plots ----------------------------------------------------------------------------------------
def write_plots(data: dict, folder: str) -> list[str] | str:
    """docs-style PNGs into `folder`; the paths written, or why none were (no matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib, or the `plots` extra)"
    os.makedirs(folder, exist_ok=True)
    written = []
    image = data.get("image", {})
    series: dict[str, list[tuple[float, float, float]]] = {}
    params = set()
    for key, r in image.items():
        network, _, rest = key.partition("/")
        precision, _, case = rest.partition("/")
        if case.startswith("classic-") and r.get("seconds") is not None:
            params.add(f"{r['iters']} it x {r['octaves']} oct")
            series.setdefault(f"{network} {precision}", []).append(
                (r["width"] * r["height"] / 1e6, r["seconds"], r.get("spread") or 0.0))
    if series:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for label, points in sorted(series.items()):
            points.sort()
            ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] / 2 for p in points],
                        marker="o", capsize=3, label=f"livedream {label}")
        for mp, s, label in [(182 * 158 / 1e6, 11.0, "Caffe 4-vCPU"), (182 * 158 / 1e6, 1.6, "Caffe K80"),
                             (1280 * 720 / 1e6, 6.5, "2x 1080 Ti XLA")]:  # published, classic parameters
            ax.scatter([mp], [s], marker="x", color="black")
            ax.annotate(label, (mp, s), textcoords="offset points", xytext=(5, 3), fontsize=8)
        cpu = data.get("machine", {}).get("cpu", "this CPU")
        ax.set(xscale="log", yscale="log", xlabel="megapixels", ylabel="seconds per image",
               title=f"classic ({', '.join(sorted(params))}) on {cpu}")
        ax.grid(True, which="both", alpha=0.3)
        written.append(_save(plt, fig, ax, os.path.join(folder, "bench_seconds_vs_resolution.png")))
    rows = data.get("video", {}).get("iters", [])
    if rows:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        size = "x".join(map(str, rows[0]["dream_size"]))
        ax.plot([r["iters"] for r in rows], [r["dream_fps"] for r in rows], marker="o",
                label=f"realtime by gradient ascent, dream alone, {size}")
        ax.axhline(20, color="red", linestyle="--", linewidth=1, label="target 20 fps (file to file)")
        ax.set(xlabel="iterations per frame", ylabel="frames per second", ylim=(0, None),
               title="fps vs iterations per frame")
        ax.grid(True, alpha=0.3)
        written.append(_save(plt, fig, ax, os.path.join(folder, "bench_fps_vs_iters.png")))
    curve = data.get("student", {}).get("curve") or []
    if curve:
        written.append(plot_curve(curve, os.path.join(folder, "distill_curve.png")))
    return written


def plot_curve(curve: list[dict], path: str) -> str:
    """The student's validation gain (and loss, where recorded) against training steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    steps = [r["step"] for r in curve]
    ax.plot(steps, [r.get("gain", 1 + r.get("strength", 0)) for r in curve], marker="o", markersize=3,
            label="validation: energy out / in (photos it never saw)")
    ax.axhline(1.5, color="red", linestyle="--", linewidth=1, label="target 1.5x")
    ax.set(xlabel="training step", ylabel="energy gain", title="student distillation")
    ax.grid(True, alpha=0.3)
    if all("loss" in r for r in curve):
        loss = ax.twinx()
        loss.plot(steps, [r["loss"] for r in curve], color="gray", alpha=0.6)
        loss.set_ylabel("training loss (gray)")
    return _save(plt, fig, ax, path)


def _save(plt: Any, fig: Any, ax: Any, path: str) -> str:
    """Add the legend, write `fig` to `path` as PNG, free it; the path."""
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
