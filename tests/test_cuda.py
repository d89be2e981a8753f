"""CUDA: what changes on an NVIDIA GPU, and the decisions taken for one.

Tests marked `cuda` run on a GPU (`pytest -m cuda`; scripts/gpu_check.sh runs them) and skip
elsewhere. The unmarked ones check the CUDA paths' logic on any machine, with torch.cuda mocked
where the code only decides (device lists, precision, threads) and computes nothing there.

fp16 tolerances, calibrated with fp16 autocast emulated on the CPU at these very configs
(Dreamer.precision set to "fp16" behind the config's back) and given ~2x to 6x headroom for
cuDNN's other kernels:
- one gradient step is a smooth function of the activations, so it is compared pixel by pixel:
  emulated, mean |fp16 - fp32| was 0.124 of the mean |change| and the changes correlated 0.989;
  asked: < 0.25 and > 0.95.
- a whole classic dream is not: gradient ascent is chaotic (in fp32, input noise of 0.01 levels
  already moves 3 steps' result by a third of its change; the emulated fp16 classic dream differs
  from the fp32 one by as much as it differs from its input). What must agree is the outcome:
  the energy gained (emulated: 2.3% apart; asked: 15%) and the size of the change (0.2%; 15%).
- the student is one forward pass: no chaos. Emulated, mean |fp16 - fp32| was 0.08% of the mean
  |residual|; asked: < 1%.
The fp32 references run with TF32 off (on by default for cuDNN convolutions: 10-bit mantissas).
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import ROOT, resized

from livedream import ConfigError, DreamConfig, Dreamer, preset
from livedream.config import video_preset
from livedream.devices import (
    autocast,
    bf16_units,
    choose_precision,
    parse_device,
    resolve_devices,
    worker_threads,
)
from livedream.dream import to_tensor
from livedream.frame import Frame
from livedream.io.sinks import ListSink
from livedream.io.sources import SyntheticSource
from livedream.pipeline import Pipeline, build_dreamers

HAS_CUDA = torch.cuda.is_available()


def cuda(test):
    """Mark `test` as needing an NVIDIA GPU: selected by `-m cuda`, skipped without one."""
    skip = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device here (torch.cuda.is_available() is False)")
    return pytest.mark.cuda(skip(test))


@pytest.fixture
def exact_fp32():
    """fp32 that is fp32: TF32 off for cuDNN and matmuls during the test, restored after."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.fixture(scope="module")
def photo(sample_rgb) -> torch.Tensor:
    """The sample photo 320 px wide (320x300), (1, 3, H, W) float 0..255."""
    return to_tensor(resized(sample_rgb, 320))


def _random_student(seed: int = 0):
    """A student with random weights (its output layer too: an untrained one outputs zeros)."""
    from livedream.student.net import StudentNet
    from livedream.student.weights import Student

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = StudentNet()
        torch.nn.init.normal_(net.out.weight, std=0.05)
    net.eval()
    teacher = {"model": "effnet-lite0", "layers": "('block9',)", "channel": "None"}
    return Student(net, teacher, {}, f"random-student-{seed}")


# -- on a GPU ---------------------------------------------------------------------------------------
@cuda
def test_one_fp16_step_is_close_to_the_fp32_step(photo, exact_fp32):
    cfg = DreamConfig(device="cuda", iters=1, octaves=1, seed=0)
    y32 = Dreamer(cfg.replace(precision="fp32")).dream(photo)
    d16 = Dreamer(cfg)  # precision auto: fp16 on CUDA
    assert d16.precision == "fp16"
    y16 = d16.dream(photo)
    r32, r16 = (y32 - photo).flatten(), (y16 - photo).flatten()
    rel = float((y16 - y32).abs().mean() / r32.abs().mean())
    corr = float(torch.corrcoef(torch.stack([r32, r16]))[0, 1])
    assert rel < 0.25 and corr > 0.95, (rel, corr)


@cuda
def test_an_fp16_classic_dream_reaches_what_the_fp32_one_does(photo, exact_fp32):
    d32 = Dreamer(preset("classic", device="cuda", precision="fp32"))
    d16 = Dreamer(preset("classic", device="cuda", precision="fp16"))
    y32, y16 = d32.dream(photo), d16.dream(photo)
    assert y16.device.type == "cpu" and y16.dtype == torch.float32 and y16.shape == photo.shape
    assert bool(torch.isfinite(y16).all()) and bool(torch.isfinite(y32).all())
    assert 0.0 <= float(y16.min()) and float(y16.max()) <= 255.0
    energy = lambda y: float(d32.energy(y)[0])  # noqa: E731 - both judged by the same (fp32) network
    e_in, e32, e16 = energy(photo), energy(y32), energy(y16)
    assert e16 > 1.5 * e_in and e32 > 1.5 * e_in, (e_in, e32, e16)  # the layer's energy rose
    assert abs(e16 - e32) < 0.15 * (e32 - e_in), (e_in, e32, e16)
    change32, change16 = float((y32 - photo).abs().mean()), float((y16 - photo).abs().mean())
    assert abs(change16 - change32) < 0.15 * change32, (change32, change16)


@cuda
def test_fp16_dreams_of_big_frames_stay_finite():
    """Tiled at 1920x1080 (every octave, moving tiles): no overflow to inf, no NaN."""
    d = Dreamer(DreamConfig(device="cuda", iters=2, octaves=3, seed=1))
    x = to_tensor(SyntheticSource(1920, 1080).frame(0))
    y = d.dream(x)
    assert bool(torch.isfinite(y).all())
    assert float(d.energy(y)[0]) > float(d.energy(x)[0])


def _coded_frames(n: int, width: int = 320, height: int = 240):
    """Frames whose index is written in their pixels: 6 black / white blocks along the bottom."""
    src = SyntheticSource(width, height)
    for i in range(n):
        rgb = src.frame(i)
        for bit in range(6):
            rgb[height - 24:, bit * 40 + 8:bit * 40 + 40] = 255 if i >> bit & 1 else 0
        yield Frame(index=i, time=i / 30, rgb=rgb)


def _code(rgb: np.ndarray) -> int:
    h = rgb.shape[0]
    return sum(1 << bit for bit in range(6) if rgb[h - 18:h - 6, bit * 40 + 14:bit * 40 + 34].mean() > 128)


@cuda
def test_two_replicas_on_one_gpu_give_the_frames_in_the_same_order_as_one():
    n = 20
    results = {}
    for devices in (("cuda:0",), ("cuda:0", "cuda:0")):
        cfg = video_preset("realtime", devices=devices).replace(student=None)
        dreamers = build_dreamers(cfg)
        assert [str(d.device) for d in dreamers] == list(devices)
        sink = ListSink()
        report = Pipeline(_coded_frames(n), [sink], cfg, dreamers).run()
        assert report.frames_out == n and report.dropped == 0
        results[devices] = sink.frames
    for frames in results.values():
        assert [f.index for f in frames] == list(range(n))
        assert [_code(f.out) for f in frames] == list(range(n))  # each picture is its own frame's
        for f in frames:
            assert np.isfinite(f.residual).all()
            assert np.abs(f.out.astype(int) - f.rgb.astype(int)).mean() > 0.3  # dreamed


def _released() -> tuple[int, int]:
    """(allocated, reserved) bytes on the GPU once every dropped tensor is freed and handed back."""
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return torch.cuda.memory_allocated(), torch.cuda.memory_reserved()


@cuda
def test_gpu_memory_is_returned_after_a_run(photo):
    cfg = DreamConfig(device="cuda", iters=2, octaves=2)
    vcfg = video_preset("realtime", devices=("cuda:0", "cuda:0")).replace(student=None)

    def run() -> None:
        dreamer = Dreamer(cfg)
        y = dreamer.dream(photo.expand(2, -1, -1, -1))
        pipeline = Pipeline(SyntheticSource(160, 120, frames=6), [ListSink()], vcfg, build_dreamers(vcfg))
        pipeline.run()
        assert y.device.type == "cpu"
        assert torch.cuda.memory_allocated() > allocated  # the networks are on the GPU

    allocated = 0
    run()  # once first: the libraries' handles and workspaces (per thread, pooled) are made once
    allocated, reserved = _released()
    run()  # and its Dreamers, pipeline and tensors dropped on return
    after_allocated, after_reserved = _released()
    mib = 2**20
    assert after_allocated <= allocated + mib, (allocated, after_allocated)
    assert after_reserved <= reserved + 2 * mib, (reserved, after_reserved)


@cuda
def test_the_automatic_choices_pick_cuda_and_fp16():
    gpus = tuple(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    assert resolve_devices(("auto",)) == gpus
    dreamers = build_dreamers(video_preset("realtime"))  # devices auto, precision auto
    assert tuple(str(d.device) for d in dreamers) == gpus
    assert {d.precision for d in dreamers} == {"fp16"}
    assert Dreamer(DreamConfig(device="cuda")).precision == "fp16"
    assert choose_precision("auto", torch.device("cuda"), model="googlenet") == "fp16"


def _student_close(student, x: torch.Tensor) -> None:
    from livedream.student.dreamer import StudentDreamer

    r32 = StudentDreamer(student, device="cuda", precision="fp32").residual(x)
    fp16 = StudentDreamer(student, device="cuda")  # precision auto: fp16 on CUDA
    assert fp16.precision == "fp16"
    r16 = fp16.residual(x)
    assert r16.device.type == "cpu" and r16.dtype == torch.float32 and r16.shape == x.shape
    assert bool(torch.isfinite(r16).all())
    scale = float(r32.abs().mean())
    assert scale > 0.01  # it dreams something
    assert float((r16 - r32).abs().mean()) < 0.01 * scale
    r_cpu = StudentDreamer(student, device="cpu", precision="fp32").residual(x)
    assert float((r32 - r_cpu).abs().mean()) < 1e-3 * scale  # the same network on either device
    out = fp16.dream(x)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0


@cuda
def test_a_student_in_fp16_on_cuda_is_close_to_fp32(photo, exact_fp32):
    _student_close(_random_student(), photo.expand(2, -1, -1, -1).contiguous())


def _shipped():
    from livedream.student.weights import shipped_students

    return shipped_students()


@cuda
@pytest.mark.parametrize("path", _shipped() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no shipped student (livedream/student/shipped/*.pt)"))])
def test_the_shipped_student_in_fp16_on_cuda_is_close_to_fp32(path, photo, exact_fp32):
    from livedream.student.weights import load_student

    _student_close(load_student(path), photo)


# -- anywhere: the decisions for CUDA ---------------------------------------------------------------
@pytest.fixture
def two_gpus(monkeypatch):
    """torch believes it has two CUDA devices (for code that only decides)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_precision_on_cuda_is_fp16_unless_asked():
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    for model in ("googlenet", "effnet-lite0"):
        assert choose_precision("auto", gpu, model=model) == "fp16"
        assert choose_precision("auto", torch.device("cuda:1"), model=model) == "fp16"
    for asked in ("fp32", "bf16", "fp16"):
        assert choose_precision(asked, gpu, model="googlenet") == asked
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        choose_precision("fp16", cpu, model="googlenet")


def test_cuda_devices_are_checked_against_what_torch_sees(monkeypatch, two_gpus):
    assert parse_device("cuda") == torch.device("cuda")
    assert parse_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="only 2 CUDA devices"):
        parse_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="sees no CUDA device"):
        parse_device("cuda:0")


def test_autocast_on_cuda_is_fp16_and_fp32_is_no_autocast():
    import contextlib

    assert isinstance(autocast("fp32", torch.device("cuda")), contextlib.nullcontext)
    with warnings.catch_warnings():  # without CUDA, torch warns that it would disable it
        warnings.simplefilter("ignore")
        ctx = autocast("fp16", torch.device("cuda", 0))
    assert isinstance(ctx, torch.autocast) and ctx.device == "cuda" and ctx.fast_dtype == torch.float16
    ctx = autocast("bf16", torch.device("cpu"))
    assert ctx.device == "cpu" and ctx.fast_dtype == torch.bfloat16


def test_auto_devices_build_one_replica_per_gpu(monkeypatch, two_gpus):
    import livedream.pipeline as pipeline

    built = []
    monkeypatch.setattr(pipeline, "dreamer_for", lambda cfg, device: built.append(device) or device)
    assert build_dreamers(video_preset("realtime")) == ["cuda:0", "cuda:1"]
    assert build_dreamers(video_preset("quality", devices=("cuda:0", "cuda:0"))) == ["cuda:0", "cuda:0"]
    # CUDA replicas take no share of the CPU threads: the CPU one gets them all
    assert worker_threads(("cuda:0", "cuda:1", "cpu"), budget=6) == 6


def test_the_student_picks_fp16_on_cuda_and_bf16_only_where_measured_faster(monkeypatch):
    import livedream.student.dreamer as student_dreamer

    class Net:
        def to(self, *args, **kwargs):
            return self

    student = _random_student()
    on_cpu = student_dreamer.StudentDreamer(student)
    assert on_cpu.precision == ("bf16" if bf16_units() == "amx" else "fp32")  # devices.BF16_MEASURED
    assert on_cpu.precision_for(torch.zeros(1, 3, 96, 96)) == "fp32"  # small inputs: slower in bf16
    monkeypatch.setattr(student_dreamer, "parse_device", lambda name: torch.device("cuda", 0))
    monkeypatch.setattr(student_dreamer, "_copy", lambda s: Net())  # nothing is moved to a GPU
    assert student_dreamer.StudentDreamer(student, device="cuda").precision == "fp16"
    assert student_dreamer.StudentDreamer(student, device="cuda", precision="fp32").precision == "fp32"


class _FakeGpuDreamer:
    """Stands for a Dreamer on a CUDA device: adds 20 to every pixel, on the CPU."""

    def __init__(self, device: str) -> None:
        self.device = torch.device(device)
        self.cfg = DreamConfig(device=device)
        self.precision = "fp16"
        self.asked: list[str] = []  # the devices of the configs it was asked to dream with

    def same_network(self, cfg: DreamConfig) -> bool:
        self.asked.append(cfg.device)
        return cfg.device == self.cfg.device

    def dream(self, x: torch.Tensor, cfg: DreamConfig | None = None) -> torch.Tensor:
        self.asked.append((cfg or self.cfg).device)
        return (x + 20.0).clamp(0, 255)


def test_cuda_replicas_keep_their_device_and_leave_torch_threads_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    fakes = [_FakeGpuDreamer("cuda:0"), _FakeGpuDreamer("cuda:1")]
    cfg = video_preset("realtime", devices=("cuda:0", "cuda:1"), dream_width=64).replace(student=None)
    sink = ListSink()
    report = Pipeline(SyntheticSource(96, 72, frames=8), [sink], cfg, fakes).run()
    assert [f.index for f in sink.frames] == list(range(8)) and report.frames_out == 8
    assert calls == []  # the workers of CUDA replicas do not touch torch's CPU threads
    for fake in fakes:  # frames dealt in turn; each replica kept (no rebuild) on its own device
        assert fake.asked and set(fake.asked) == {str(fake.device)}
    for f in sink.frames:  # the fake's +20 (warm starts add the earlier frames' residuals on top)
        assert float(f.residual.mean()) > 15 and float((f.out.astype(float) - f.rgb).mean()) > 15


def test_beside_a_cuda_replica_a_cpu_replica_gets_the_threads(monkeypatch):
    budget = torch.get_num_threads()
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    cfg = video_preset("realtime", devices=("cuda:0", "cpu"), dream_width=64, iters=1).replace(student=None)
    dreamers = [_FakeGpuDreamer("cuda:0"), build_dreamers(cfg.replace(devices=("cpu",)))[0]]
    sink = ListSink()
    Pipeline(SyntheticSource(96, 72, frames=4), [sink], cfg, dreamers).run()
    assert [f.index for f in sink.frames] == list(range(4))
    assert calls == [budget]  # one CPU worker: all of the caller's threads


# -- the GPU check's own pieces, anywhere ----------------------------------------------------------------
def _gpu_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "scripts" / "gpu_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_bench"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_gpu_report_compares_with_the_published_figures(tmp_path):
    gb = _gpu_bench()
    (tmp_path / "steps.jsonl").write_text(json.dumps({"step": "setup", "rc": 0, "seconds": 12}) + "\n")
    (tmp_path / "pytest.xml").write_text(
        '<testsuites><testsuite errors="0">'
        '<testcase classname="tests.test_cuda" name="test_a" time="1.5"/>'
        '<testcase classname="tests.test_cuda" name="test_b" time="0.1"><failure message="assert 1 &lt; 0"/>'
        '</testcase><testcase classname="tests.test_cuda" name="test_c"><skipped message="no GPU"/>'
        "</testcase></testsuite></testsuites>")
    video = dict(section="video", preset="quality", case="1080p", size="1920x1080", replicas=1,
                 precision="fp16")
    rows = [
        dict(section="image", id="classic 1280x720 fp16", case="hd", size="1280x720", precision="fp16",
             tile=512, cudnn_benchmark=False, seconds=0.5),
        dict(section="image", id="classic 182x158 fp32", case="small", size="182x158", precision="fp32",
             tile=512, cudnn_benchmark=False, seconds=2.0),
        dict(video, id="quality 1920x1080", batch=1, fps=20.0),
        dict(video, section="batch", id="quality 1920x1080 batch 4", batch=4, fps=45.0),
        dict(section="skipped", id="classic 3840x2160 fp32", skipped="3 s left"),
    ]
    data = gb.render(tmp_path, {"meta": {"plan": "gpu", "judged": True, "finished": False}, "rows": rows})
    verdicts = {c["what"]: (c["ratio"], c["verdict"]) for c in data["comparisons"]}
    assert verdicts["classic 1280x720 fp16 (one dream)"] == ("13.0x faster", "ok")
    assert verdicts["classic 182x158 fp32 (one dream)"][1] == "MISSED"  # slower than the K80's 1.6 s
    assert verdicts["quality 1920x1080 file to file, batch 1 (fp16)"][1] == "MISSED"
    assert verdicts["quality 1920x1080 file to file, best: batch 4 (fp16)"][1] == "ok"
    assert data["pytest"]["passed"] == 1 and data["pytest"]["failed"] == 1 and data["pytest"]["skipped"] == 1
    md = (tmp_path / "gpu.md").read_text()
    assert "| setup | 0 | 12 |" in md and "NOT finished" in md and "classic 3840x2160 fp32: 3 s left" in md
    assert json.loads((tmp_path / "gpu.json").read_text())["steps"][0]["step"] == "setup"
    # rendering again (as gpu_check.sh does at its end) keeps the bench's rows
    assert len(gb.render(tmp_path)["bench"]["rows"]) == len(rows)


def test_gpu_check_without_a_gpu_says_so_in_one_line_and_exits_3(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    (fake / "nvidia-smi").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ.get('PATH', '')}")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1 and "no NVIDIA GPU" in proc.stdout
    data = json.loads((out / "gpu.json").read_text())
    assert data["steps"][0]["step"] == "nvidia-smi" and data["steps"][0]["rc"] == 9
    assert "nvidia-smi" in (out / "gpu.md").read_text()


def test_gpu_bench_refuses_to_run_without_cuda_outside_the_smoke_mode(tmp_path):
    if HAS_CUDA:
        pytest.skip("this machine has CUDA")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_bench.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and "sees no CUDA device" in proc.stderr
    assert "no CUDA device" in (tmp_path / "gpu.md").read_text()
