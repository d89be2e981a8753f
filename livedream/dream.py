"""DeepDream by gradient ascent: objectives, jitter, octaves, tiles, precision. No I/O here.

Pixels are float tensors (B, 3, H, W) in RGB 0..255. `Dreamer.dream` takes such a batch and
returns one of the same shape: the frames changed so the chosen layer's activations grow.
"""

from __future__ import annotations

import copy
import math
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from livedream.config import ConfigError, DreamConfig, check_channel
from livedream.devices import autocast, choose_precision, dream_workers, keep_freed_memory, parse_device
from livedream.models import DreamNet, load_model, model_spec

__all__ = ["Dreamer", "StepProfile", "to_tensor", "to_image"]

_ALIGN = 32  # the largest stride of the networks here: tiles start on multiples of it
_MIN_OCTAVE_SIDE = 32  # smaller pyramid levels carry no useful detail for these networks
# The fields that shape the network: a config differing in them needs another Dreamer.
_FIXED = ("model", "weights", "layers", "layer_weights", "device", "precision")


@dataclass
class StepProfile:
    """Where the gradient steps' time went, summed over steps until `reset`.

    `forward_s` and `backward_s` are the network's forward and backward passes, measured inside
    each tile and summed over the tiles (with tiles in parallel that is core-seconds); `grad_s`
    is the wall time of the steps' gradient phases, `step_s` of whole steps."""

    steps: int = 0
    step_s: float = 0.0
    grad_s: float = 0.0
    forward_s: float = 0.0
    backward_s: float = 0.0
    tile_s: float = 0.0  # whole tile tasks (crop, forward, backward, sum), summed over tiles
    tiles: int = 0
    parallel_steps: int = 0  # steps whose tiles ran on several replicas at once

    def reset(self) -> None:
        for f in self.__dataclass_fields__:
            setattr(self, f, 0 if f in ("steps", "tiles", "parallel_steps") else 0.0)

    def per_step_ms(self) -> dict[str, float]:
        """Wall milliseconds per step: forward, backward, and the rest (jitter, crops, the
        normalised update, clamp, waiting). With parallel tiles, the gradient phase's wall time is
        shared between forward and backward in proportion to their summed times."""
        n = max(1, self.steps)
        share = self.grad_s / self.tile_s if self.tile_s > 0 else 0.0
        fwd, bwd = self.forward_s * share, self.backward_s * share
        return {"step": 1e3 * self.step_s / n, "forward": 1e3 * fwd / n, "backward": 1e3 * bwd / n,
                "rest": 1e3 * (self.step_s - fwd - bwd) / n}


@dataclass(frozen=True)
class _Tile:
    """A tile in the step's rolled frame: core rows y0:y1, columns x0:x1; with its margin of
    context ya:yb, xa:xb (what the network sees)."""

    y0: int
    y1: int
    x0: int
    x1: int
    ya: int
    yb: int
    xa: int
    xb: int

    def core(self, t: torch.Tensor) -> torch.Tensor:
        """The core's part of `t`, a (..., yb - ya, xb - xa) tensor over the tile with its margin."""
        return t[..., self.y0 - self.ya : self.y1 - self.ya, self.x0 - self.xa : self.x1 - self.xa]


@dataclass
class _TileResult:
    grad: torch.Tensor  # (B, 3, yb - ya, xb - xa): the gradient over the tile with its margin
    abs_sum: list[float]  # per frame: sum of |gradient| over the core
    forward_s: float
    backward_s: float
    total_s: float


_FP16_LOSS_SCALE = 2.0 ** 12  # see Dreamer._gradient_of


class Dreamer:
    """Holds one prepared network; dreams batches with any config that shares its network fields.

    `workers`: model replicas that share a step's tiles (frames bigger than `cfg.tile`), each on
    its own thread; None (the default) lets `devices.dream_workers` decide at each dream from the
    calling thread's torch threads (one single-thread replica per core), 1 keeps one replica.
    Untiled steps always run on one replica with all of the caller's threads. The result does not
    depend on the number of replicas: see `_step`."""

    def __init__(self, cfg: DreamConfig | None = None, *, workers: int | None = None) -> None:
        cfg = cfg or DreamConfig()
        self.cfg = cfg
        self.device = parse_device(cfg.device)
        keep_freed_memory()
        if self.device.type == "cuda":  # a dream runs the same few tile and octave shapes again
            torch.backends.cudnn.benchmark = True  # and again: cuDNN picks each one's fastest
        spec = model_spec(cfg.model)
        # the precision of large inputs; `precision_for` gives each input's (`auto` may differ by size)
        self.precision = choose_precision(cfg.precision, self.device, model=cfg.model)
        layers = list(cfg.layers) or [spec.default_layer]
        self.net: DreamNet
        self.net, self.paths = load_model(cfg.model, layers, weights=cfg.weights, device=self.device)
        self.weights = list(cfg.layer_weights) or [1.0] * len(self.paths)
        self.channels = self.net.channels(self.paths[0])
        self._guide: torch.Tensor | None = None  # (C, N) guide features of the first layer
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.profile = StepProfile()
        self._replicas: list[DreamNet] = []  # copies of self.net for parallel tiles
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self.replicas_used = 1  # replicas the last dream dealt its tiles to
        self._check(cfg)

    # -- public -------------------------------------------------------------------------------
    def dream(self, x: torch.Tensor, cfg: DreamConfig | None = None) -> torch.Tensor:
        """Dream `x` (B, 3, H, W) float 0..255 -> same shape, dtype float32, on the input's device."""
        cfg = cfg or self.cfg
        self._check(cfg)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected frames (B, 3, H, W), got {tuple(x.shape)}")
        gen = torch.Generator().manual_seed(cfg.seed if cfg.seed is not None else _random_seed())
        replicas, threads = dream_workers(self.device, self.workers)
        self.replicas_used = replicas
        # channels-last throughout: the networks' memory format, so crops are plain block copies
        start = x.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)
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
            img = base + detail  # a new tensor: the steps change it in place
            for _ in range(cfg.iters):
                self._step(img, cfg, gen, replicas, threads)
            detail = img - base
        return img.to(x.device).contiguous()

    def precision_for(self, x: torch.Tensor) -> str:
        """The precision the network runs in on `x` (..., H, W): `auto` picks by size, see
        `devices.choose_precision`."""
        return choose_precision(self.cfg.precision, self.device, model=self.cfg.model,
                                pixels=x.shape[-1] * x.shape[-2])

    def energy(self, x: torch.Tensor, cfg: DreamConfig | None = None) -> torch.Tensor:
        """The objective per frame (B,) for `x` (B, 3, H, W): how strongly the layer responds."""
        cfg = cfg or self.cfg
        with torch.no_grad(), autocast(self.precision_for(x), self.device):
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

    def _step(self, img: torch.Tensor, cfg: DreamConfig, gen: torch.Generator, replicas: int = 1,
              threads: int = 1) -> None:
        """One gradient-ascent step on `img`, in place: jitter, normalised gradient, step, clamp.

        The jitter (a random roll of the frame) and, for frames bigger than `cfg.tile`, a random
        roll of the tile grid are never materialised: each tile is cut from `img` with the roll's
        wrap-around, and its gradient added back where its pixels came from. The gradient is
        normalised per frame by its mean |g|, summed tile by tile in a fixed order; each tile's
        crop, gradient and sum are computed the same way whichever replica or thread does it, so
        the result does not depend on the number of replicas."""
        t0 = time.perf_counter()
        oy, ox = (int(v) for v in torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=gen))
        b, _, h, w = img.shape
        if cfg.tile == 0 or (h <= cfg.tile and w <= cfg.tile):
            tiles = [_Tile(0, h, 0, w, 0, h, 0, w)]
        else:
            # Tiles of equal size with a margin of context; the grid moves randomly each step so
            # seams never stay in one place. Tile edges and margins on multiples of the network's
            # largest stride, so each tile samples the frame on the same grid as the whole frame.
            sy, sx = (int(v) for v in torch.randint(0, cfg.tile, (2,), generator=gen))
            oy, ox = oy + sy, ox + sx
            margin = max(_ALIGN, cfg.tile // 8 // _ALIGN * _ALIGN)
            tiles = [_Tile(y0, y1, x0, x1, max(0, y0 - margin), min(h, y1 + margin),
                           max(0, x0 - margin), min(w, x1 + margin))
                     for y0, y1 in _spans(h, cfg.tile) for x0, x1 in _spans(w, cfg.tile)]
        shift = (oy % h, ox % w)
        t1 = time.perf_counter()
        results = self._tile_gradients(img, tiles, shift, cfg, replicas, threads)
        t2 = time.perf_counter()
        totals = [sum(r.abs_sum[i] for r in results) for i in range(b)]  # fixed order: tile order
        n = img[0].numel()
        scale = torch.tensor([cfg.step / (t / n + 1e-8) for t in totals], dtype=img.dtype,
                             device=img.device).view(b, 1, 1, 1)
        for tile, r in zip(tiles, results, strict=True):
            core = tile.core(r.grad)
            for dst, src in _wrapped(tile.y0, tile.y1, tile.x0, tile.x1, shift, (h, w)):
                img[dst].addcmul_(core[src], scale)
        img.clamp_(0.0, 255.0)
        p = self.profile
        p.steps += 1
        p.step_s += time.perf_counter() - t0
        p.grad_s += t2 - t1
        p.tiles += len(results)
        p.parallel_steps += replicas > 1 and len(tiles) > 1
        for r in results:
            p.forward_s += r.forward_s
            p.backward_s += r.backward_s
            p.tile_s += r.total_s

    def _tile_gradients(self, img: torch.Tensor, tiles: list[_Tile], shift: tuple[int, int],
                        cfg: DreamConfig, replicas: int, threads: int) -> list[_TileResult]:
        """Each tile's gradient: on this thread with self.net, or dealt to `replicas` replicas
        on as many threads (of `threads` torch threads each) when there are several tiles."""
        if replicas <= 1 or len(tiles) == 1:
            return [self._tile_gradient(self.net, img, t, shift, cfg) for t in tiles]
        nets = self._replica_nets(replicas)
        free: queue.SimpleQueue[DreamNet] = queue.SimpleQueue()
        for net in nets:
            free.put(net)
        budget = torch.get_num_threads()

        def task(tile: _Tile) -> _TileResult:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)  # this worker thread's own OpenMP team
            net = free.get()  # a replica no other thread is running
            try:
                return self._tile_gradient(net, img, tile, shift, cfg)
            finally:
                free.put(net)

        try:
            return list(self._executor(replicas).map(task, tiles))
        finally:
            # torch gives new threads the thread count set last, by any thread: put the caller's back
            torch.set_num_threads(budget)

    def _tile_gradient(self, net: DreamNet, img: torch.Tensor, tile: _Tile, shift: tuple[int, int],
                       cfg: DreamConfig) -> _TileResult:
        t0 = time.perf_counter()
        b, c, h, w = img.shape
        x = torch.empty((b, c, tile.yb - tile.ya, tile.xb - tile.xa), dtype=img.dtype, device=img.device,
                        memory_format=torch.channels_last)
        for dst, src in _wrapped(tile.ya, tile.yb, tile.xa, tile.xb, shift, (h, w)):
            x[src].copy_(img[dst])
        grad, fwd, bwd = self._gradient_of(x, cfg, net)
        abs_sum = tile.core(grad).abs().sum(dim=(1, 2, 3)).tolist()
        return _TileResult(grad, abs_sum, fwd, bwd, time.perf_counter() - t0)

    def _gradient_of(self, img: torch.Tensor, cfg: DreamConfig,
                     net: DreamNet | None = None) -> tuple[torch.Tensor, float, float]:
        """(d objective / d img, forward seconds, backward seconds) for `img` (B, 3, h, w)."""
        net = net or self.net
        x = img.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
        precision = self.precision_for(x)
        t0 = time.perf_counter()
        with torch.enable_grad(), autocast(precision, self.device):
            acts = net.features(x, self.paths)
            loss = self.objective(acts, cfg).sum()
        t1 = time.perf_counter()
        # In fp16 the gradient of a mean over ~1e5 activations (~1e-5 each) falls below fp16's
        # smallest normal number: scale the loss by a power of two (exact) before going back;
        # each step normalises the gradient anyway, so the scale never shows.
        scale = _FP16_LOSS_SCALE if precision == "fp16" else 1.0
        (grad,) = torch.autograd.grad(loss * scale, x)
        return grad.float(), t1 - t0, time.perf_counter() - t1

    def _replica_nets(self, n: int) -> list[DreamNet]:
        """self.net and n - 1 copies of it that share its (frozen, read-only) weights."""
        while len(self._replicas) < n - 1:
            shared = {id(t): t for t in (*self.net.parameters(), *self.net.buffers())}
            self._replicas.append(copy.deepcopy(self.net, shared))
        return [self.net, *self._replicas[: n - 1]]

    def _executor(self, n: int) -> ThreadPoolExecutor:
        """A pool of `n` threads, kept between dreams (its idle threads exit with the Dreamer)."""
        if self._pool is None or self._pool_size != n:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            self._pool, self._pool_size = ThreadPoolExecutor(n, thread_name_prefix="livedream-tile"), n
        return self._pool

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


_Index = tuple[slice, slice, slice, slice]


def _pieces(a: int, b: int, shift: int, n: int) -> list[tuple[int, int, int]]:
    """Rows a..b of a frame rolled by `shift` come from rows (i - shift) mod n of the frame:
    at most two runs, as (offset from a, first source row, end source row)."""
    out = []
    i = a
    while i < b:
        s = (i - shift) % n
        length = min(b - i, n - s)
        out.append((i - a, s, s + length))
        i += length
    return out


def _wrapped(ya: int, yb: int, xa: int, xb: int, shift: tuple[int, int],
             size: tuple[int, int]) -> list[tuple[_Index, _Index]]:
    """(frame index, crop index) pairs that copy rows ya:yb, columns xa:xb of the frame rolled by
    `shift` out of the unrolled frame (up to four blocks: the roll wraps around)."""
    every = slice(None)
    return [((every, every, slice(sy, ey), slice(sx, ex)),
             (every, every, slice(dy, dy + ey - sy), slice(dx, dx + ex - sx)))
            for dy, sy, ey in _pieces(ya, yb, shift[0], size[0])
            for dx, sx, ex in _pieces(xa, xb, shift[1], size[1])]


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
