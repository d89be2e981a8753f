"""The benchmark suite runs every section at tiny sizes and reports what it documents.

No timed assertions: times only have to be positive and ratios finite (benchmarks never fail on
speed). The full suite's sizes are exercised by `livedream bench` itself, not here.
"""

from __future__ import annotations

import json
import math

import pytest

from livedream.bench import SECTIONS, run_suite
from livedream.bench.common import QUICK, ImageCase, Target, verdict
from livedream.bench.report import to_markdown, write_plots
from livedream.cli import build_parser
from livedream.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("one_thread")

# Smaller than --quick: one network, one image case, no separate processes.
TINY = QUICK.but(
    name="tiny", networks=("effnet-lite0",), bf16_cases=(), processes=False,
    image_cases=(ImageCase("classic-182x158", 64, 56, (("iters", 1), ("octaves", 2)),
                           targets=(Target("a target", 1e-9),)),),
    sweep_size=(64, 48), sweep_iters=(1,), sweep_octaves=(1, 2), sweep_layers=("block5",),
    channel_checks=(("effnet-lite0", "block5", (None, 0)),),
    clip_size=(96, 72), widths=(64,), run_frames=6, run_seconds=0.5, window=(2, 4),
    live_seconds=1.0, live_size=(96, 72), iters_sweep=(1, 2),
    batches=(1, 2), scale_size=(64, 48), roofline_size=(64, 48), roofline_bf16_size=(32, 32),
    matmul_n=64, conv_size=(16, 16),
)


@pytest.fixture(scope="module")
def results() -> dict:
    return run_suite(TINY, SECTIONS)


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.slow  # the module fixture runs the whole quick bench
def test_every_section_reports_its_load_and_time(results):
    assert set(SECTIONS) <= set(results), f"missing sections: {set(SECTIONS) - set(results)}"
    for name in SECTIONS:
        s = results["sections"][name]
        assert len(s["load_before"]) == 3 and len(s["load_after"]) == 3, s
        assert s["wall_seconds"] >= 0 and s["cpu_seconds"] >= 0, s
    json.dumps(results, allow_nan=False)  # the JSON is strict: no NaN or infinity anywhere


@pytest.mark.slow  # the module fixture runs the whole quick bench
def test_machine_says_whether_bf16_units_are_used(results):
    m = results["machine"]
    assert isinstance(m["bf16_units"], bool)
    assert m["bf16_kind"] in ("amx", "avx512_bf16", None) and m["bf16_units"] == (m["bf16_kind"] is not None)
    assert m["torch"] and m["torch_threads"] >= 1 and m["logical_cpus"] >= 1, m
    assert m["auto_precision"]["effnet-lite0"] == "fp32"  # bf16 measured slower on every size


@pytest.mark.slow  # the module fixture runs the whole quick bench
def test_image_rows_have_seconds_or_say_why_not(results):
    image = results["image"]
    row = image["effnet-lite0/fp32/classic-182x158"]
    assert _positive(row["seconds"]) and _positive(row["gflop"]) and _positive(row["strength"]), row
    assert row["status"] == "not judged (--quick sizes)", row  # tiny sizes: no verdict
    # the per-step profile and the share of the measured peaks
    step = row["step_ms"]
    assert _positive(step["forward"]) and _positive(step["backward"]) and step["rest"] >= 0, step
    assert abs(step["forward"] + step["backward"] + step["rest"] - step["step"]) < 0.2, step
    assert _positive(row["peak_gflops_per_s"]["matmul"]) and _positive(row["peak_gflops_per_s"]["conv"]), row
    assert 0 < row["share_of_peak"]["matmul"] < 1.5 and 0 < row["share_of_peak"]["conv"] < 1.5, row
    bf16 = image["effnet-lite0/bf16/classic-182x158"]
    if results["machine"]["bf16_units"]:  # native bf16: every case runs in bf16 too
        assert _positive(bf16["seconds"]), bf16
    else:  # emulated: skipped, and the reason names what this CPU has
        assert "neither AMX nor AVX512-BF16" in bf16["skipped"], bf16
    for key, r in image.items():
        assert _positive(r["seconds"]) or r.get("skipped"), (key, r)


def test_the_bf16_skip_message_says_what_the_cpu_has():
    from livedream.bench.image import bf16_why

    amx = bf16_why(("classic-182x158",), frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))
    assert "has AMX and AVX512-BF16" in amx and "no AMX" not in amx and "emulates" not in amx
    only = bf16_why(("a",), frozenset({"avx512f", "avx512_bf16"}))
    assert "AVX512-BF16 (no AMX)" in only and "emulates" not in only
    avx2 = bf16_why(("classic-182x158",), frozenset({"avx2", "fma"}))
    assert "(AVX2, FMA) has neither AMX nor AVX512-BF16" in avx2 and "emulates bf16" in avx2


@pytest.mark.slow  # the module fixture runs the whole quick bench
def test_sweep_has_time_and_strength_per_setting_and_the_channel_check(results):
    sweep = results["sweep"]
    assert len(sweep["rows"]) == 2  # 1 iteration x (1 octave, 2 octaves) x 1 scale x 1 layer
    for r in sweep["rows"]:
        assert _positive(r["seconds"]) and _positive(r["strength"]), r
    check = sweep["channels"][0]
    assert [r["channel"] for r in check["rows"]] == ["all (layer energy)", 0]
    assert _positive(check["slowest_over_fastest"]) and check["status"], check


@pytest.mark.slow  # the module fixture runs the whole quick bench
def test_video_has_the_documented_keys(results):
    video = results["video"]
    for name in ("realtime", "realtime-gradient", "classic"):
        p = video["presets"][name]
        for key in ("fps", "strength", "strength_common_scale", "flicker"):
            assert _positive(p[key]), (name, key, p)
        assert set(p["busy_seconds"]) >= {"source", "dream", "sink"}, p
    # realtime dreams with the shipped student; the same preset by gradient ascent beside it
    assert video["presets"]["realtime"]["one_pass"] and not video["presets"]["realtime-gradient"]["one_pass"]
    assert set(video["widths"]) == {"realtime-gradient", "classic"}  # dream widths: gradient ascent's
    for w in (ws["64"] for ws in video["widths"].values()):
        assert _positive(w["end_to_end_fps"]) and _positive(w["dream_fps"]), w
    assert _positive(video["ratio_realtime_vs_classic"])
    for key in ("fps_ratio", "strength_ratio", "flicker_vs_input"):
        assert _positive(video["realtime_vs_classic"][key]["value"]), key
    live = video["live"]["realtime"]
    assert _positive(live["p50_ms"]) and live["p95_ms"] >= live["p50_ms"], live
    assert [r["iters"] for r in video["iters"]] == [1, 2]
    assert all(_positive(r["dream_fps"]) for r in video["iters"])
    assert video["file_to_file"]["skipped"]  # no separate processes in this plan


@pytest.mark.slow  # the module fixture runs the whole quick bench
def test_the_ladder_measures_its_first_rungs_on_the_same_frames(results):
    from livedream.config import QUALITY_LADDERS

    rows = results["ladder"]["gradient"]
    assert [r["rung"] for r in rows] == [0, 1]  # the plan's ladder_rungs
    assert [r["settings"] for r in rows] == QUALITY_LADDERS["gradient"]["rungs"][:2]
    assert all(_positive(r["fps"]) and _positive(r["strength"]) and _positive(r["flicker"]) for r in rows)
    assert rows[0]["dream_size"] == rows[1]["dream_size"] == [96, 72]  # 192 and 256 px, capped by the clip
    student = results["ladder"]["student"]
    assert isinstance(student, list) and len(student) == 2 or "skipped" in student


@pytest.mark.slow  # the module fixture runs the whole quick bench
def test_scaling_and_roofline(results):
    s = results["scaling"]
    assert all(_positive(r["fps"]) for r in s["batch"].values())
    assert _positive(s["devices"]["cpu,cpu"]["fps"])
    if not any(k.startswith("cuda") and not r.get("skipped") for k, r in s["devices"].items()):
        assert all(r["skipped"] for k, r in s["devices"].items() if k.startswith("cuda"))
    r = results["roofline"]
    for precision in ("fp32", "bf16"):
        assert _positive(r["matmul_peak"][precision]["gflops_per_s"])
        assert _positive(r["conv_peak"][precision]["gflops_per_s"])
        step = r["dream_step"][f"effnet-lite0/{precision}"]
        assert _positive(step["gflop"]) and _positive(step["gflops_per_s"]), step


@pytest.mark.slow  # the module fixture runs the whole quick bench
def test_markdown_and_plots(results, tmp_path):
    text = to_markdown(results)
    assert "per step ms: fwd / bwd / rest" in text and "of peak" in text
    for heading in ("## Machine", "## Single image", "## Parameter sweep", "## Video", "## Scaling",
                    "## Roofline", "## Student", "## Adaptive quality", "## The adaptive ladders",
                    "## Load while it ran",
                    "### Stage profile"):
        assert heading in text, heading
    plots = write_plots(results, str(tmp_path))
    if isinstance(plots, str):
        assert "matplotlib" in plots
    else:
        curve = {"distill_curve.png"} if results["student"].get("curve") else set()
        assert {p.rsplit("/", 1)[1] for p in plots} == {"bench_seconds_vs_resolution.png",
                                                         "bench_fps_vs_iters.png", *curve}
        assert all((tmp_path / p.rsplit("/", 1)[1]).stat().st_size > 1000 for p in plots)


def test_a_missed_target_says_so_with_the_target():
    fast = Target("K80 (published)", 1.6)
    assert verdict(1.0, [fast], judged=True) == "ok"
    missed = verdict(2.0, [fast, Target("CPU (published)", 11.0)], judged=True)
    assert missed.startswith("MISSED") and "1.6 s: K80 (published)" in missed and "11" not in missed
    ratio = Target("ratio", 20.0, "x", higher=True)
    assert verdict(2.0, [ratio], judged=True) == "MISSED (target >= 20x: ratio)"
    assert verdict(2.0, [fast], judged=False) == "not judged (--quick sizes)"
    assert verdict(2.0, [], judged=True) == "no target"


def test_command_line(tmp_path, capsys):
    args = build_parser().parse_args(["bench", "--quick", "--json", "x.json", "--plots", "docs"])
    assert args.quick and args.json == "x.json" and args.plots == "docs" and callable(args.run)
    assert cli_main(["bench", "--sections", "image,nope"]) == 2
    assert "unknown section(s) nope" in capsys.readouterr().err
    assert cli_main(["bench", "--json", str(tmp_path / "missing" / "x.json")]) == 2
    assert "output folder does not exist" in capsys.readouterr().err
