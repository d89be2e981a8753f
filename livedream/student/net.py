"""The student: a small fully convolutional network that paints a dream in one pass.

In: frames (B, 3, H, W) float 0..255, any size. Out: the dream's residual (B, 3, H, W) in pixel
units, to be added to the frame. Shapes: an encoder halves the size four times (to 1/16, where
a few residual blocks see ~150 px of context, the size of the eyes and faces a deep layer
dreams), a decoder climbs back with the encoder's features added at each level, and the last
layer, at half size, predicts 2x2 pixels per position (pixel shuffle) so the residual has
full-resolution detail without a convolution at full size. Upsampling is bilinear followed by a
convolution (no transposed convolutions: no checkerboard). The output layer starts at zero: an
untrained student changes nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["StudentSpec", "StudentNet"]


@dataclass(frozen=True)
class StudentSpec:
    """The architecture; stored with the weights."""

    channels: tuple[int, int, int, int] = (16, 32, 64, 96)  # at 1/2, 1/4, 1/8, 1/16 of the frame
    blocks: int = 4  # residual blocks at 1/16
    scale: float = 32.0  # the output layer's unit, in pixel levels
    antialias: bool = True  # blur before each stride-2 convolution (shift-stable, Zhang 2019)

    def as_dict(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> StudentSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
        return cls(**values)  # type: ignore[arg-type]


def _blur(t: torch.Tensor) -> torch.Tensor:
    """A [1 2 1] x [1 2 1] / 16 blur per channel, borders replicated: what a stride-2 convolution
    after it samples no longer aliases, so a picture moved by a pixel gives a dream moved by a
    pixel (not a different one)."""
    c = t.shape[1]
    k = torch.tensor([1.0, 2.0, 1.0], dtype=t.dtype, device=t.device)
    kernel = (k[:, None] * k[None, :] / 16.0).expand(c, 1, 3, 3)
    return F.conv2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)


class _Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(F.relu(self.a(x)))


class StudentNet(nn.Module):
    def __init__(self, spec: StudentSpec | None = None) -> None:
        super().__init__()
        self.spec = spec = spec or StudentSpec()
        c1, c2, c3, c4 = spec.channels
        pairs = ((3, c1), (c1, c2), (c2, c3), (c3, c4))
        self.down = nn.ModuleList([nn.Conv2d(a, b, 3, 2, 1) for a, b in pairs])
        self.core = nn.Sequential(*[_Block(c4) for _ in range(spec.blocks)])
        self.project = nn.ModuleList([nn.Conv2d(a, b, 1) for a, b in ((c4, c3), (c3, c2), (c2, c1))])
        self.up = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1) for c in (c3, c2, c1)])
        self.out = nn.Conv2d(c1, 12, 3, padding=1)  # 3 colours x 2 x 2 pixels, see pixel_shuffle
        nn.init.zeros_(self.out.weight)
        assert self.out.bias is not None  # Conv2d's default
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) 0..255 -> residual (B, 3, H, W)."""
        h, w = x.shape[-2:]
        feats = []
        t = (x - 127.0) / 128.0
        for conv in self.down:
            t = F.relu(conv(_blur(t) if self.spec.antialias else t))
            feats.append(t)  # 1/2, 1/4, 1/8, 1/16
        t = self.core(t)
        for project, conv, skip in zip(self.project, self.up, reversed(feats[:-1]), strict=True):
            t = F.interpolate(project(t), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            t = F.relu(conv(t + skip))
        res = F.pixel_shuffle(self.out(t), 2)  # (B, 3, 2 * ceil(H / 2), 2 * ceil(W / 2))
        return res[..., :h, :w] * self.spec.scale
