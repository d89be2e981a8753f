"""Devices and precision: the one place that decides where and how precisely a network runs."""

from __future__ import annotations

import pytest
import torch

from livedream import ConfigError, DreamConfig, Dreamer
from livedream.devices import choose_precision, parse_devices, resolve_devices


def test_fp16_on_the_cpu_is_a_config_error():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Dreamer(DreamConfig(precision="fp16"))


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "mps"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_unusable_devices_are_config_errors(device):
    with pytest.raises(ConfigError):
        Dreamer(DreamConfig(device=device))


def test_automatic_precision_on_the_cpu(monkeypatch):
    import livedream.devices as devices

    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: False)
    assert choose_precision("auto", cpu, dense=True) == "fp32"
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: True)
    assert choose_precision("auto", cpu, dense=True) == "bf16"
    assert choose_precision("auto", cpu, dense=False) == "fp32"  # depthwise nets gain nothing
    assert choose_precision("fp32", cpu, dense=True) == "fp32"


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
