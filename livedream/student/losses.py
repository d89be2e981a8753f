"""What a student is trained to do, as differentiable losses. No I/O here.

The teacher's dream cannot be copied pixel for pixel: where exactly an eye appears depends on
details a small network cannot see, and a pixel loss makes it paint the blurred average of all
possible dreams, i.e. nothing (tried: it learns the identity). So the student is asked for what a
dream *is*, on each training crop `x` (B, 3, h, w) 0..255 with the teacher's dream `t` of it:

- objective: the teacher's own objective (the layer's energy, a channel, a guide) must rise on
  the student's output as far as the teacher raised it, measured through a random shift, so only
  patterns that hold up under a small move count (not pixel-exact adversarial noise);
- texture: the Gram matrices of the network's features at several depths match the teacher's
  (the look of the dream: which patterns, how dense, in which colours; Gatys et al. 2016);
- tone: the low frequencies (1/16 size) match the teacher's: its colour cast and contrast;
- size: the residual's mean magnitude matches the teacher's, so the energy is not bought with
  an ever brighter, more saturated picture;
- stability: the student's residual moves with the picture (a shifted, noisier crop gives the
  shifted residual), which is what keeps video from flickering.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "LossWeights", "gram", "texture_loss", "tone_loss", "size_loss", "stability_loss", "shift_pair",
    "objective_shortfall",
]


@dataclass(frozen=True)
class LossWeights:
    """Each loss's weight. The objective leads; the others are squared, so their pull fades as
    they are met instead of fighting the objective with a constant push (as L1 terms did)."""

    objective: float = 1.0
    texture: float = 3.0  # the learnable part: the dream's texture statistics (style transfer's)
    tone: float = 0.5  # per (10 levels)^2 of the 1/16-size pictures' difference
    size: float = 0.1  # per (10 levels)^2 of mean |residual| above the teacher's
    stability: float = 0.3  # per (10 levels)^2 of the residual's change after the shift


def gram(f: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, C) channel co-activations, averaged over positions."""
    b, c, h, w = f.shape
    flat = f.float().reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (h * w)


def texture_loss(feats_y: dict[str, torch.Tensor], feats_t: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B,) mean over layers of the Gram difference, relative to the teacher's Gram's size."""
    total = torch.zeros(())
    for path, ft in feats_t.items():
        gy, gt = gram(feats_y[path]), gram(ft)
        diff = (gy - gt).pow(2).sum(dim=(1, 2))
        total = total + diff / (gt.pow(2).sum(dim=(1, 2)) + 1e-6)
    return total / max(1, len(feats_t))


def tone_loss(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(B,) mean squared difference of the 1/16-size pictures, in (10 levels)^2."""
    low = (F.avg_pool2d(v, 16, ceil_mode=True) for v in (y, t))
    return ((next(low) - next(low)) / 10.0).pow(2).mean(dim=(1, 2, 3))


def size_loss(r: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(B,) how far the residual's mean magnitude exceeds the teacher's, in (10 levels)^2."""
    excess = F.relu(r.abs().mean(dim=(1, 2, 3)) - (t - x).abs().mean(dim=(1, 2, 3)))
    return (excess / 10.0).pow(2)


def objective_shortfall(obj_y: torch.Tensor, obj_t: torch.Tensor, obj_x: torch.Tensor) -> torch.Tensor:
    """(B,) how far the student's objective stays below the teacher's, as a share of what the
    teacher gained over the input (0 once the student is as strong)."""
    return F.relu(obj_t - obj_y) / ((obj_t - obj_x).abs() + 1e-6)


def shift_pair(x: torch.Tensor, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor,
                                                                             tuple[int, int]]:
    """Two `size` x `size` crops of `x` (B, 3, H, W), the second (dy, dx) further down-right
    (1..15 px each) and with a little noise and a brightness change, as the next frame of a
    slowly moving camera would be. Returns (first, second, (dy, dx))."""
    dy, dx = (int(v) for v in torch.randint(1, 16, (2,), generator=generator))
    a = x[..., :size, :size]
    b = x[..., dy:dy + size, dx:dx + size]
    noise = torch.randn(b.shape, generator=generator) * 2.0
    gain = 1.0 + (torch.rand((b.shape[0], 1, 1, 1), generator=generator) - 0.5) * 0.1
    return a, (b * gain + noise).clamp(0, 255), (dy, dx)


def stability_loss(r_a: torch.Tensor, r_b: torch.Tensor, shift: tuple[int, int], margin: int = 16
                   ) -> torch.Tensor:
    """(B,) mean squared r_a - r_b in (10 levels)^2 where the two crops overlap (away from their
    borders by `margin`): a residual that moves with the picture gives 0."""
    dy, dx = shift
    h, w = r_a.shape[-2:]
    a = r_a[..., dy + margin:h - margin, dx + margin:w - margin]
    b = r_b[..., margin:h - dy - margin, margin:w - dx - margin]
    return ((a - b) / 10.0).pow(2).mean(dim=(1, 2, 3))


Objective = Callable[[dict[str, torch.Tensor]], torch.Tensor]  # features -> (B,) objective
