"""Devices and precision: the one place that decides where and how precisely a network runs."""

from __future__ import annotations

import pytest
import torch

from livedream import ConfigError, DreamConfig, Dreamer
from livedream.devices import (
    BF16_MEASURED,
    bf16_from,
    bf16_units,
    choose_precision,
    dream_workers,
    parse_devices,
    resolve_devices,
)


def test_fp16_on_the_cpu_is_a_config_error():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Dreamer(DreamConfig(precision="fp16"))


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "mps"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_unusable_devices_are_config_errors(device):
    with pytest.raises(ConfigError):
        Dreamer(DreamConfig(device=device))


def test_automatic_precision_on_the_cpu_follows_the_measurements(monkeypatch):
    import livedream.devices as devices

    cpu = torch.device("cpu")
    # Mocked measurements (fp32 time / bf16 time at (1 thread, 2 threads)) per input side.
    table = {"amx": {
        "dense": {64: (0.8, 0.5), 96: (1.05, 1.4), 128: (1.2, 1.2), 224: (1.6, 1.4), 448: (2.0, 1.7)},
        "slower": {96: (0.4, 0.5), 448: (0.5, 0.5)},
        "noisy": {128: (1.3, 1.3), 224: (0.9, 1.5), 448: (1.8, 1.9)},  # slower once, at 224
    }}
    monkeypatch.setattr(devices, "BF16_MEASURED", table)
    monkeypatch.setattr(devices, "bf16_units", lambda flags=None: "amx")
    pick = lambda model, side: choose_precision("auto", cpu, model=model, pixels=side * side)  # noqa: E731
    assert [pick("dense", s) for s in (32, 64, 96, 127, 128, 224, 448, 2000)] == ["fp32"] * 4 + ["bf16"] * 4
    assert {pick("slower", s) for s in (32, 96, 448, 4000)} == {"fp32"}
    assert {pick("noisy", s) for s in (128, 224, 300)} == {"fp32"}  # bf16 only above every slower point
    assert pick("noisy", 448) == "bf16"
    assert pick("unmeasured", 448) == "fp32"
    assert choose_precision("auto", cpu, model="dense") == "bf16"  # no size: large inputs
    assert choose_precision("fp32", cpu, model="dense", pixels=448 * 448) == "fp32"  # asked for
    assert choose_precision("bf16", cpu, model="slower", pixels=64) == "bf16"
    # The rule itself: never bf16 at a size where any measurement at that size or above was slower.
    for measured in table["amx"].values():
        side = bf16_from(measured)
        for s, gains in measured.items():
            if side is not None and s >= side:
                assert min(gains) >= devices.BF16_MIN_GAIN
    # Measured on AMX only: an AVX512-BF16-only CPU and one without bf16 units stay in fp32.
    for units in ("avx512_bf16", None):
        monkeypatch.setattr(devices, "bf16_units", lambda flags=None, u=units: u)
        assert {pick("dense", s) for s in (64, 448)} == {"fp32"}


def test_the_shipped_table_keeps_effnet_in_fp32_and_googlenet_large_in_bf16(monkeypatch):
    import livedream.devices as devices

    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "bf16_units", lambda flags=None: "amx")
    effnet = {choose_precision("auto", cpu, model="effnet-lite0", pixels=s * s) for s in (64, 448, 1000)}
    assert effnet == {"fp32"}
    assert choose_precision("auto", cpu, model="googlenet", pixels=64 * 64) == "fp32"
    assert choose_precision("auto", cpu, model="googlenet", pixels=448 * 448) == "bf16"
    assert choose_precision("auto", cpu, model="googlenet") == "bf16"  # no size: large inputs
    assert choose_precision("auto", cpu, model="effnet-lite0") == "fp32"
    assert set(BF16_MEASURED) == {"amx"}


def test_bf16_units_from_the_cpu_flags():
    assert bf16_units(frozenset({"avx2", "fma"})) is None
    assert bf16_units(frozenset({"avx512f", "avx512_bf16"})) == "avx512_bf16"
    assert bf16_units(frozenset({"avx512_bf16", "amx_bf16", "amx_tile"})) == "amx"


def test_dream_workers_one_single_thread_replica_per_core():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert dream_workers(cpu, budget=2) == (2, 1)
    assert dream_workers(cpu, budget=1) == (1, 1)  # e.g. a video pipeline's worker: no doubling up
    assert dream_workers(cpu, budget=16) == (4, 4)
    assert dream_workers(cpu, 1, budget=2) == (1, 2)  # one replica asked for: all the threads
    assert dream_workers(cpu, 3, budget=2) == (3, 1)
    assert dream_workers(cuda, budget=8) == (1, 8)


def test_auto_devices_are_cpu_replicas_sharing_the_threads(monkeypatch):
    import torch

    import livedream.devices as devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_devices(("auto",), budget=2) == ("cpu", "cpu")
    assert resolve_devices(("auto",), budget=16) == ("cpu",) * 4
    assert resolve_devices(("cpu",), budget=16) == ("cpu",)
    assert devices.worker_threads(("cpu",) * 4, budget=16) == 4
    assert devices.worker_threads(("cpu", "cpu"), budget=1) == 1
    with pytest.raises(ConfigError):
        resolve_devices(("auto", "cpu"))
    # With CUDA: every GPU, one replica each (the logic only; no GPU is needed to check it).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_devices(("auto",), budget=2) == ("cuda:0", "cuda:1")
    assert devices.worker_threads(("cuda:0", "cuda:1", "cpu"), budget=4) == 4


def test_device_lists():
    assert [d.type for d in parse_devices("cpu, cpu")] == ["cpu", "cpu"]
    with pytest.raises(ConfigError, match="no device given"):
        parse_devices(" , ")
    with pytest.raises(ConfigError, match="unknown device"):
        parse_devices("cpu,gpu0")
