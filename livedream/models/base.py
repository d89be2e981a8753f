"""What every network offers the dream engine, and the load-time work shared by all of them.

A network is a `nn.Module` split into ordered top-level *stages* (stem, blocks, head ...).
The engine reads activations at named layers through forward hooks; a friendly name
(`block7`, `inception4c`) maps to a dotted module path, and any dotted path works too.
At load the network is frozen, its BatchNorms folded into the convolutions before them,
truncated after the stage holding the deepest layer asked for, and put in channels-last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from livedream.errors import LivedreamError
from livedream.models.fused import set_fused

_Pair = tuple[int, int]


class ModelError(LivedreamError, ValueError):
    """A model or layer request that cannot be met (unknown name, missing weights ...)."""


@dataclass(frozen=True)
class LayerInfo:
    name: str  # friendly name, e.g. "block7"
    path: str  # dotted module path, e.g. "blocks.7"
    channels: int
    stride: int  # input pixels per activation pixel


class DreamNet(nn.Module):
    """Base for the networks: ordered stages, layers by friendly name, pixel normalization.

    Subclasses list `stage_names` (dotted paths of the modules run one after another), their
    friendly layers and the (conv, bn) pairs to fold, and how to turn `rgb` in 0..255 into the
    network's input.
    """

    model_name = "?"
    stage_names: list[str]

    def layers(self) -> list[LayerInfo]:
        raise NotImplementedError

    def conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        """(parent module, conv attribute, bn attribute) for every BatchNorm that follows a conv."""
        raise NotImplementedError

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Classifier on the last stage's output (only on an untruncated network)."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------
    def resolve(self, layer: str) -> str:
        """A friendly name or a dotted module path -> the dotted path (checked to exist)."""
        by_name = {info.name: info.path for info in self.layers()}
        path = by_name.get(layer, layer)
        if path == "" or path not in dict(self.named_modules()) or self.stage_of(path) is None:
            names = ", ".join(by_name)
            raise ModelError(
                f"unknown layer {layer!r} for {self.model_name}; valid: {names} "
                "(or a dotted module path from `livedream layers --all`)"
            )
        return path

    def stage_of(self, path: str) -> int | None:
        for i, stage in enumerate(self.stage_names):
            if path == stage or path.startswith(stage + "."):
                return i
        return None

    def channels(self, path: str) -> int:
        """Channels the module at `path` outputs (by a tiny forward pass, so any path works)."""
        for info in self.layers():
            if info.path == path:
                return info.channels
        with torch.no_grad():
            acts = self.features(torch.zeros(1, 3, 64, 64, device=self._device()), [path])
        return int(acts[path].shape[1])

    def features(self, x: torch.Tensor, paths: list[str]) -> dict[str, torch.Tensor]:
        """Activations at `paths` for `x` (B, 3, H, W) in 0..255; stops after the last one needed."""
        last = max(self.stage_of(p) or 0 for p in paths)
        out: dict[str, torch.Tensor] = {}
        hooks = [
            self.get_submodule(p).register_forward_hook(
                lambda _m, _i, o, p=p: out.__setitem__(p, o)
            )
            for p in paths
        ]
        try:
            h = self.normalize(x)
            for stage in self.stage_names[: last + 1]:
                h = self.get_submodule(stage)(h)
        finally:
            for hook in hooks:
                hook.remove()
        return out

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000) for `x` (B, 3, H, W) in 0..255."""
        h = self.normalize(x)
        for stage in self.stage_names:
            h = self.get_submodule(stage)(h)
        return self.logits(h)

    def _device(self) -> torch.device:
        return next(self.parameters()).device


def fold_batchnorms(net: DreamNet) -> None:
    """Merge each BatchNorm into the conv before it (eval-mode statistics), leaving Identity."""
    for parent, conv_attr, bn_attr in net.conv_bn_pairs():
        conv: nn.Conv2d = getattr(parent, conv_attr)
        bn: nn.BatchNorm2d = getattr(parent, bn_attr)
        # the networks' BatchNorms keep running statistics (track_running_stats, the default)
        assert bn.running_mean is not None and bn.running_var is not None
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        bias = (bias - bn.running_mean) * scale + bn.bias
        # a Conv2d holds its sizes as pairs (padding: a pair or a string); typed tuple[int, ...]
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, cast(_Pair, conv.kernel_size), cast(_Pair, conv.stride),
            cast("_Pair | str", conv.padding), cast(_Pair, conv.dilation), conv.groups, bias=True,
        )
        assert fused.bias is not None  # bias=True
        with torch.no_grad():
            fused.weight.copy_(weight)
            fused.bias.copy_(bias)
        setattr(parent, conv_attr, fused)
        setattr(parent, bn_attr, nn.Identity())


def truncate_after(net: DreamNet, paths: list[str]) -> None:
    """Replace the stages after the one holding the deepest of `paths` (and the head) by Identity."""
    last = max(net.stage_of(p) or 0 for p in paths)
    for stage in net.stage_names[last + 1:]:
        net.set_submodule(stage, nn.Identity())
    for name in getattr(net, "head_names", []):
        setattr(net, name, nn.Identity())
    net.stage_names = net.stage_names[: last + 1]


def prepare(net: DreamNet, paths: list[str], device: torch.device) -> DreamNet:
    """Freeze, fold BatchNorm, truncate after the deepest layer in `paths`, channels-last, move;
    on the CPU, conv + activation fused (models.fused)."""
    truncate_after(net, paths)
    fold_batchnorms(net)  # new convs: freeze and set eval mode after this, not before
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    set_fused(net, device.type == "cpu")
    # Module.to takes memory_format (documented), missing from torch's overloads
    return net.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]
