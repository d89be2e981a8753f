"""GoogLeNet / Inception v1 (Szegedy et al., 2014), the network of the original DeepDream.

Module names follow torchvision's `googlenet`, so its state dict (`googlenet-1378be20.pth`) loads
as it is; its auxiliary classifiers are ignored. No weights ship with a pip package: the user
passes `--weights PATH`, or we look in the torch hub cache. Input: `(rgb - 127.5) / 127.5`, what
torchvision's `transform_input=True` amounts to. Default layer `inception4c`, the original's
`inception_4c/output`; the hackathon's `mixed4d_3x3_bottleneck_pre_relu` is
`inception4d.branch2.0.conv` (after BatchNorm folding that conv's output is the pre-ReLU value).
"""

from __future__ import annotations

import glob
import os

import torch
from torch import nn

from livedream.models.base import DreamNet, LayerInfo, ModelError


class BasicConv2d(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self, c_in: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(c_in, c1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(c_in, c3r, 1), BasicConv2d(c3r, c3, 3, padding=1))
        # torchvision's "5x5" branch uses a 3x3 kernel; kept so its weights load.
        self.branch3 = nn.Sequential(BasicConv2d(c_in, c5r, 1), BasicConv2d(c5r, c5, 3, padding=1))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(c_in, pool, 1)
        )
        self.out_channels = c1 + c3 + c5 + pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


# name: (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj, stride at its output)
_INCEPTIONS = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32, 8),
    "inception3b": (256, 128, 128, 192, 32, 96, 64, 8),
    "inception4a": (480, 192, 96, 208, 16, 48, 64, 16),
    "inception4b": (512, 160, 112, 224, 24, 64, 64, 16),
    "inception4c": (512, 128, 128, 256, 24, 64, 64, 16),
    "inception4d": (512, 112, 144, 288, 32, 64, 64, 16),
    "inception4e": (528, 256, 160, 320, 32, 128, 128, 16),
    "inception5a": (832, 256, 160, 320, 32, 128, 128, 32),
    "inception5b": (832, 384, 192, 384, 48, 128, 128, 32),
}
_POOL_BEFORE = {"inception3a": "maxpool2", "inception4a": "maxpool3", "inception5a": "maxpool4"}


class GoogLeNet(DreamNet):
    model_name = "googlenet"
    head_names = ["fc"]

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.stage_names = ["conv1", "maxpool1", "conv2", "conv3"]
        self._info = [
            LayerInfo("conv1", "conv1", 64, 2),
            LayerInfo("conv2", "conv2", 64, 4),
            LayerInfo("conv3", "conv3", 192, 4),
        ]
        for name, (*channels, stride) in _INCEPTIONS.items():
            if name in _POOL_BEFORE:
                self.stage_names.append(_POOL_BEFORE[name])
            block = Inception(*channels)
            setattr(self, name, block)
            self.stage_names.append(name)
            self._info.append(LayerInfo(name, name, block.out_channels, stride))
        self.fc = nn.Linear(1024, num_classes)

    def layers(self) -> list[LayerInfo]:
        return list(self._info)

    def conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        return [
            (m, "conv", "bn")
            for m in self.modules()
            if isinstance(m, BasicConv2d) and isinstance(m.bn, nn.BatchNorm2d)
        ]

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        return (rgb - 127.5) / 127.5

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h.mean(dim=(2, 3)))


def hub_weights() -> str | None:
    """torchvision's GoogLeNet file in the torch hub cache, if the user has one there."""
    found = sorted(glob.glob(os.path.join(torch.hub.get_dir(), "checkpoints", "googlenet-*.pth")))
    return found[0] if found else None


def load_googlenet(weights: str | None = None) -> GoogLeNet:
    from livedream.models.weights import load_state_dict

    weights = weights or hub_weights()
    if weights is None:
        raise ModelError(
            "googlenet has no bundled weights: pass --weights PATH to a torchvision googlenet "
            "state dict (googlenet-1378be20.pth), or use the default model effnet-lite0"
        )
    net = GoogLeNet()
    load_state_dict(net, weights, ignore_prefixes=("aux1.", "aux2."))
    return net
