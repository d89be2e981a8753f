"""Networks by name. Each entry knows how to build itself with weights and its default layer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from livedream.models.base import DreamNet, LayerInfo, ModelError, prepare
from livedream.models.efficientnet_lite import EfficientNetLite0, load_effnet_lite0
from livedream.models.googlenet import GoogLeNet, load_googlenet

__all__ = ["MODELS", "DreamNet", "LayerInfo", "ModelError", "ModelSpec", "load_model", "model_spec"]


@dataclass(frozen=True)
class ModelSpec:
    load: Callable[[str | None], DreamNet]  # weights path or None -> network with weights
    arch: Callable[[], DreamNet]  # the bare architecture (random weights), e.g. to list layers
    default_layer: str


MODELS: dict[str, ModelSpec] = {
    "effnet-lite0": ModelSpec(load_effnet_lite0, EfficientNetLite0, default_layer="block9"),
    "googlenet": ModelSpec(load_googlenet, GoogLeNet, default_layer="inception4c"),
}


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return MODELS[name]


def load_model(
    name: str, layers: list[str], *, weights: str | None = None, device: str | torch.device = "cpu"
) -> tuple[DreamNet, list[str]]:
    """The network `name` prepared for dreaming at `layers`, and those layers as module paths."""
    net = model_spec(name).load(weights)
    paths = [net.resolve(layer) for layer in layers]
    return prepare(net, paths, torch.device(device)), paths
