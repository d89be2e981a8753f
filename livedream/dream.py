"""DeepDream by gradient ascent: objectives, jitter, octaves, tiles, precision. No I/O here.

Pixels are float tensors (B, 3, H, W) in RGB 0..255. `Dreamer.dream` takes such a batch and
returns one of the same shape: the frames changed so the chosen layer's activations grow.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from livedream.config import ConfigError, DreamConfig, check_channel
from livedream.devices import autocast, choose_precision, keep_freed_memory, parse_device
from livedream.models import DreamNet, load_model, model_spec

__all__ = ["Dreamer", "to_tensor", "to_image"]

_ALIGN = 32  # the largest stride of the networks here: tiles start on multiples of it
_MIN_OCTAVE_SIDE = 32  # smaller pyramid levels carry no useful detail for these networks
# The fields that shape the network: a config differing in them needs another Dreamer.
_FIXED = ("model", "weights", "layers", "layer_weights", "device", "precision")


class Dreamer:
    """Holds one prepared network; dreams batches with any config that shares its network fields."""

    def __init__(self, cfg: DreamConfig | None = None) -> None:
        cfg = cfg or DreamConfig()
        self.cfg = cfg
        self.device = parse_device(cfg.device)
        keep_freed_memory()
        spec = model_spec(cfg.model)
        self.precision = choose_precision(cfg.precision, self.device, dense=spec.dense)
        layers = list(cfg.layers) or [spec.default_layer]
        self.net: DreamNet
        self.net, self.paths = load_model(cfg.model, layers, weights=cfg.weights, device=self.device)
        self.weights = list(cfg.layer_weights) or [1.0] * len(self.paths)
        self.channels = self.net.channels(self.paths[0])
        self._guide: torch.Tensor | None = None  # (C, N) guide features of the first layer
        self._check(cfg)

    # -- public -------------------------------------------------------------------------------
    def dream(self, x: torch.Tensor, cfg: DreamConfig | None = None) -> torch.Tensor:
        """Dream `x` (B, 3, H, W) float 0..255 -> same shape, dtype float32, on the input's device."""
        cfg = cfg or self.cfg
        self._check(cfg)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected frames (B, 3, H, W), got {tuple(x.shape)}")
        gen = torch.Generator().manual_seed(cfg.seed if cfg.seed is not None else _random_seed())
        start = x.to(self.device, torch.float32)
        pyramid = [start]
        for _ in range(cfg.octaves - 1):
            h, w = pyramid[-1].shape[-2:]
            size = (round(h / cfg.octave_scale), round(w / cfg.octave_scale))
            if min(size) < _MIN_OCTAVE_SIDE:
                break
            pyramid.append(_resize(pyramid[-1], size))
        detail = torch.zeros_like(pyramid[-1])
        img = pyramid[-1]
        for base in reversed(pyramid):
            if detail.shape != base.shape:
                detail = _resize(detail, tuple(base.shape[-2:]))
            img = base + detail
            for _ in range(cfg.iters):
                img = self._step(img, cfg, gen)
            detail = img - base
        return img.to(x.device)

    def energy(self, x: torch.Tensor, cfg: DreamConfig | None = None) -> torch.Tensor:
        """The objective per frame (B,) for `x` (B, 3, H, W): how strongly the layer responds."""
        cfg = cfg or self.cfg
        with torch.no_grad(), autocast(self.precision, self.device):
            x = x.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)
            acts = self.net.features(x, self.paths)
            return self.objective(acts, cfg).float().cpu()

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel mean activation (B, C) of the first layer, e.g. to compare channels."""
        with torch.no_grad():
            x = x.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)
            act = self.net.features(x, self.paths[:1])[self.paths[0]]
            return act.float().mean(dim=(2, 3)).cpu()

    def set_guide(self, image: torch.Tensor | None) -> None:
        """Steer towards the features of `image` (1, 3, H, W) 0..255 at the first layer; None: off."""
        if image is None:
            self._guide = None
            return
        with torch.no_grad():
            x = image.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)
            act = self.net.features(x, self.paths[:1])[self.paths[0]].float()  # (1, C, h, w)
        self._guide = act[0].flatten(1)  # (C, N)

    def same_network(self, cfg: DreamConfig) -> bool:
        """True when `cfg` can be dreamed by this Dreamer (same model, weights, layers, device)."""
        return all(getattr(cfg, name) == getattr(self.cfg, name) for name in _FIXED)

    # -- inside ---------------------------------------------------------------------------------
    def _check(self, cfg: DreamConfig) -> None:
        for name in _FIXED:
            if getattr(cfg, name) != getattr(self.cfg, name):
                raise ConfigError(f"{name} differs from this Dreamer's; build a new Dreamer for it")
        check_channel(cfg.channel, self.paths[0], self.channels)

    def _step(self, img: torch.Tensor, cfg: DreamConfig, gen: torch.Generator) -> torch.Tensor:
        """One gradient-ascent step: jitter, normalised gradient, step, undo jitter, clamp."""
        oy, ox = (int(v) for v in torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=gen))
        rolled = torch.roll(img, shifts=(oy, ox), dims=(2, 3))
        g = self._gradient(rolled, cfg, gen)
        g = g / (g.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-8)  # per frame
        rolled = rolled + cfg.step * g
        return torch.roll(rolled, shifts=(-oy, -ox), dims=(2, 3)).clamp_(0.0, 255.0)

    def _gradient(self, img: torch.Tensor, cfg: DreamConfig, gen: torch.Generator) -> torch.Tensor:
        h, w = img.shape[-2:]
        if cfg.tile == 0 or (h <= cfg.tile and w <= cfg.tile):
            return self._gradient_of(img, cfg)
        # Tiles of equal size with a margin of context; the grid moves randomly each step so
        # seams never stay in one place.
        sy, sx = (int(v) for v in torch.randint(0, cfg.tile, (2,), generator=gen))
        img = torch.roll(img, shifts=(sy, sx), dims=(2, 3))
        grad = torch.empty_like(img)
        # Tile edges and margins on multiples of the network's largest stride, so each tile
        # samples the frame on the same grid as the whole frame would.
        margin = max(_ALIGN, cfg.tile // 8 // _ALIGN * _ALIGN)
        for y0, y1 in _spans(h, cfg.tile):
            for x0, x1 in _spans(w, cfg.tile):
                ya, yb = max(0, y0 - margin), min(h, y1 + margin)
                xa, xb = max(0, x0 - margin), min(w, x1 + margin)
                g = self._gradient_of(img[:, :, ya:yb, xa:xb], cfg)
                grad[:, :, y0:y1, x0:x1] = g[:, :, y0 - ya : y1 - ya, x0 - xa : x1 - xa]
        return torch.roll(grad, shifts=(-sy, -sx), dims=(2, 3))

    def _gradient_of(self, img: torch.Tensor, cfg: DreamConfig) -> torch.Tensor:
        x = img.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
        with torch.enable_grad(), autocast(self.precision, self.device):
            acts = self.net.features(x, self.paths)
            loss = self.objective(acts, cfg).sum()
        (grad,) = torch.autograd.grad(loss, x)
        return grad.float()

    def objective(self, acts: dict[str, torch.Tensor], cfg: DreamConfig) -> torch.Tensor:
        """(B,) objective: guide features, one channel, or the weighted L2 energy of the layers."""
        first = acts[self.paths[0]].float()  # (B, C, h, w)
        if self._guide is not None:
            feats = first.flatten(2)  # (B, C, N)
            best = torch.einsum("bcn,cm->bnm", feats.detach(), self._guide).argmax(dim=2)  # (B, N)
            target = self._guide[:, best].permute(1, 0, 2)  # (B, C, N)
            return (feats * target).mean(dim=(1, 2))
        if cfg.channel is not None:
            return first[:, cfg.channel].mean(dim=(1, 2))
        total = torch.zeros(first.shape[0], device=first.device)
        for path, weight in zip(self.paths, self.weights, strict=True):
            total = total + weight * acts[path].float().pow(2).mean(dim=(1, 2, 3))
        return total


def _spans(n: int, tile: int) -> list[tuple[int, int]]:
    """Split 0..n into ceil(n / tile) nearly equal spans, inner edges on multiples of _ALIGN."""
    count = math.ceil(n / tile)
    edges = [0] + [round(i * n / count / _ALIGN) * _ALIGN for i in range(1, count)] + [n]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _resize(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _random_seed() -> int:
    return int(torch.randint(0, 2**31 - 1, (1,)).item())


def to_tensor(images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """RGB uint8 image(s) (H, W, 3) or (B, H, W, 3) -> float tensor (B, 3, H, W) 0..255."""
    arr = np.stack(images) if isinstance(images, list) else images
    if arr.ndim == 3:
        arr = arr[None]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()


def to_image(x: torch.Tensor) -> np.ndarray:
    """Float tensor (B, 3, H, W) 0..255 -> RGB uint8 (B, H, W, 3)."""
    return x.detach().round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
