"""Temporal coherence for video dreams: optical flow, warping, occlusions, scene cuts, warm starts.

A frame is dreamed from a warm start: the newest finished dream's residual (dream minus its own
source frame), warped onto the current frame with backward optical flow, masked where the warp
fails and multiplied by a decay < 1 so the feedback loop cannot run away. Everything here works
on small numpy images (the dream size, e.g. 320x240) and costs a few milliseconds per frame.

Conventions: RGB images are (H, W, 3), uint8 or float in 0..255; grey images are (H, W) uint8;
a flow is (H, W, 2) float32 in pixels, (dx, dy). A *backward* flow from `curr` to `prev` satisfies
`curr(x) ~= prev(x + flow(x))`, so `warp(prev_image, flow)` lines `prev_image` up with `curr`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "gray", "Flow", "warp", "occlusion_mask", "is_scene_cut", "Start", "WarmStart",
    "warping_error",
]

# Occlusion mask: the smoothed |warped prev - curr| in grey levels. At or below LOW the warp is
# trusted (mask 1), at or above HIGH it is not (mask 0), linear in between. Measured on textured
# synthetic sequences with sensor noise up to std 6: these keep ~90% of the pixels and still
# reject content that appears (an occluded square keeps ~0.1).
_MASK_LOW, _MASK_HIGH = 3.0, 8.0
_CUT_THRESHOLD = 0.3  # a scene cut when less than this fraction of the frame is explained by flow


def gray(rgb: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3), uint8 or float 0..255 -> grey (H, W) uint8, contiguous. Grey goes through."""
    if rgb.dtype != np.uint8:
        rgb = np.clip(np.asarray(rgb, np.float32) + 0.5, 0, 255).astype(np.uint8)
    if rgb.ndim == 2:
        return np.ascontiguousarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got {rgb.shape}")
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


class Flow:
    """Dense optical flow by OpenCV DIS. Not thread-safe (the DIS object keeps buffers): make one
    per thread or caller.

    The default is DIS's ULTRAFAST preset with a smaller patch (6, stride 4 instead of 8, 6).
    The smaller patch gives DIS one more pyramid level at 320x240, which is what lets it follow
    the large motions met when warm-starting across a gap of several frames: at 32 px between
    the two frames, ~5% of pixels go wrong instead of ~13% (MEDIUM: ~4%, but 8x slower). Cost at
    320x240 on 2 cores: ~1.3 ms (ULTRAFAST as is ~0.9 ms, FAST ~2.3 ms, MEDIUM ~11 ms).

    `scale` < 1 computes the flow on images resized by that factor, then resizes the flow back
    (vectors scaled to full-size pixels): cheaper, less precise; meant for dreams wider than
    ~480 px.
    """

    def __init__(self, scale: float = 1.0, preset: int = cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                 patch_size: int | None = 6, patch_stride: int | None = 4) -> None:
        if not 0.0 < scale <= 1.0:
            raise ValueError(f"flow scale must be in (0, 1], got {scale}")
        self.scale = scale
        self._dis = cv2.DISOpticalFlow.create(preset)
        if patch_size is not None:
            self._dis.setPatchSize(patch_size)
        if patch_stride is not None:
            self._dis.setPatchStride(patch_stride)

    def backward(self, curr_gray: np.ndarray, prev_gray: np.ndarray) -> np.ndarray:
        """The flow (H, W, 2) float32 such that `curr(x) ~= prev(x + flow(x))`."""
        if curr_gray.shape != prev_gray.shape or curr_gray.ndim != 2:
            raise ValueError(f"expected two grey images of one size, got {curr_gray.shape} "
                             f"and {prev_gray.shape}")
        h, w = curr_gray.shape
        # DIS asserts contiguous uint8 input (a crop or a slice of a frame is not).
        curr, prev = gray(curr_gray), gray(prev_gray)
        sw, sh = max(8, round(w * self.scale)), max(8, round(h * self.scale))
        # calc's `flow` may be None (a new array), which OpenCV's stub does not allow for
        if (sw, sh) == (w, h):
            return self._dis.calc(curr, prev, None)  # type: ignore[call-overload]  # (H, W, 2)
        curr = cv2.resize(curr, (sw, sh), interpolation=cv2.INTER_AREA)
        prev = cv2.resize(prev, (sw, sh), interpolation=cv2.INTER_AREA)
        small = self._dis.calc(curr, prev, None)  # type: ignore[call-overload]  # (sh, sw, 2)
        flow = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)  # (H, W, 2)
        flow[..., 0] *= w / sw
        flow[..., 1] *= h / sh
        return flow


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> np.ndarray:
    """Pixel coordinates (H, W, 2) float32, (x, y); shared, read-only."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.stack([xs, ys], axis=-1)
    grid.flags.writeable = False
    return grid


def _coords(flow: np.ndarray) -> np.ndarray:
    """Where each pixel samples from: (H, W, 2) float32 = grid + flow."""
    return _grid(*flow.shape[:2]) + flow


def _remap(img: np.ndarray, coords: np.ndarray) -> np.ndarray:
    img = np.ascontiguousarray(img)
    if img.ndim == 3 and img.shape[2] == 3:
        # OpenCV's remap has a vectorised path for 4 channels, not 3: padding to 4 and back is
        # ~1.5x (float) to 2x (uint8) faster at 320x240, conversions included.
        out = _remap(cv2.cvtColor(img, cv2.COLOR_RGB2RGBA), coords)
        return cv2.cvtColor(out, cv2.COLOR_RGBA2RGB)
    # map2 may be None (all coordinates in map1), which OpenCV's stub does not allow for
    return cv2.remap(img, coords, None, cv2.INTER_LINEAR,  # type: ignore[call-overload]
                     borderMode=cv2.BORDER_REPLICATE)


def warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample `img` (H, W) or (H, W, C) at x + flow(x): bilinear, borders replicated. Same dtype.

    With a backward flow from `curr` to `prev`, `warp(prev_image, flow)` is aligned with `curr`.
    """
    if img.shape[:2] != flow.shape[:2]:
        raise ValueError(f"image {img.shape} and flow {flow.shape} differ in size")
    return _remap(img, _coords(flow))


def _mask(curr_gray: np.ndarray, prev_gray: np.ndarray, coords: np.ndarray,
          low: float, high: float) -> np.ndarray:
    h, w = curr_gray.shape
    diff = _remap(prev_gray, coords).astype(np.float32) - curr_gray  # (H, W), signed
    # Remove a global brightness change (auto exposure) so it is not taken for an occlusion.
    diff -= float(diff.mean())
    # Smooth the *signed* difference before taking its magnitude: sensor noise averages out
    # (a warp error is spatially coherent, noise is not), so the thresholds need not track the
    # noise level. Then smooth the magnitude so the mask has soft edges.
    err = cv2.GaussianBlur(np.abs(cv2.GaussianBlur(diff, (0, 0), 1.0)), (0, 0), 1.5)
    mask = np.clip((high - err) * (1.0 / (high - low)), 0.0, 1.0)  # (H, W)
    # Pixels that sample outside `prev` see only replicated borders: not valid.
    inside = cv2.inRange(coords, (-0.5, -0.5), (w - 0.5, h - 0.5))  # (H, W) uint8 0 | 255
    mask[inside == 0] = 0.0
    return mask


def occlusion_mask(curr_gray: np.ndarray, prev_gray: np.ndarray, flow_bwd: np.ndarray, *,
                   low: float = _MASK_LOW, high: float = _MASK_HIGH) -> np.ndarray:
    """Where the warp of `prev` onto `curr` can be trusted: (H, W) float32, 1 = yes, 0 = no
    (occlusion, content that appeared, flow failure, outside the previous frame).

    Photometric check: `prev` is warped with the backward flow and compared with `curr` (grey
    levels; `low`/`high` as in _MASK_LOW/_MASK_HIGH). A forward-backward consistency check needs
    a second flow: ~4x the cost, and on measured synthetic sequences it kept fewer good pixels
    (0.87 vs 0.91) without rejecting occlusions better.
    """
    if not low < high:
        raise ValueError(f"expected low < high, got {low}, {high}")
    curr, prev = gray(curr_gray), gray(prev_gray)
    if curr.shape != prev.shape or curr.shape != flow_bwd.shape[:2]:
        raise ValueError(f"sizes differ: {curr.shape}, {prev.shape}, {flow_bwd.shape}")
    return _mask(curr, prev, _coords(flow_bwd), low, high)


def is_scene_cut(curr_gray: np.ndarray, prev_gray: np.ndarray, flow_bwd: np.ndarray | None = None,
                 *, threshold: float = _CUT_THRESHOLD) -> bool:
    """True when less than `threshold` of `curr` is explained by `prev` moved by optical flow.

    Motion-compensated on purpose: global measures (histograms, mean difference of thumbnails)
    overlap between "unrelated image" and "the same scene moved 30 px", and a false cut costs
    a cold start. The explained fraction (mean occlusion mask) is ~0.8-1 for shifts up to
    32 px and < 0.1 for unrelated images. Pass `flow_bwd` if already computed; else one is
    computed here (~1.3 ms at 320x240).
    """
    curr, prev = gray(curr_gray), gray(prev_gray)
    if flow_bwd is None:
        flow_bwd = Flow().backward(curr, prev)
    return float(occlusion_mask(curr, prev, flow_bwd).mean()) < threshold


@dataclass(frozen=True)
class Start:
    """A warm start for one frame (see WarmStart.start_for)."""

    residual: np.ndarray | None  # (H, W, 3) float32 to add to the frame; None = cold start
    cut: bool = False  # a dream was stored but could not be used (scene cut, flow failed)
    gap: int = 0  # frame index minus the stored dream's index (0 when nothing was stored)
    valid: float = 0.0  # fraction of the frame explained by the warp (mean of the mask)
    weight: np.ndarray | None = None  # (H, W) float32 mask x decay the residual was multiplied by


class WarmStart:
    """Holds finished dreams and turns them into warm starts for later frames. Two modes:

    - newest (`lag=None`, live): a frame starts from the newest dream stored so far, whichever
      worker finished it; frames may be dropped, so indices may skip.
    - ordered (`lag=L`, files): indices are 0, 1, 2, ... with none missing, and frame k starts
      from the chain's state at frame k - L (cold before L), waiting for it if need be. With L
      = the frames in flight at once (workers x batch), every start is a function of the frames
      alone, not of which worker finished first: the same input gives the same output.

    The chain: a dream that did not start from the stored state just before it (several workers:
    frames k-1 and k in flight at once) must not replace that state, or the workers would each
    continue their own chain of dreams: alternate frames drift apart and the output flickers.
    So the state before it, warped onto its frame, gets its own change (dream minus its warm
    start) instead: one chain, whatever the number of workers. In ordered mode each state is
    published in index order (`update` waits for the one before).

    Thread-safe: `update` and `start_for` may be called from any threads. States are swapped
    under a lock and never modified in place; the flow runs outside the lock, on one DIS instance
    per thread, so several dream workers can compute their starts in parallel.

    The decay is applied once per feedback step (not per frame of gap). Bilinear warping and a
    mask <= 1 never increase the largest |value|, so if each dream adds at most A to its warm
    start, every residual stays below A / (1 - decay): the feedback cannot run away.
    """

    def __init__(self, decay: float = 0.9, cut_threshold: float = _CUT_THRESHOLD,
                 flow_scale: float = 1.0, *, lag: int | None = None) -> None:
        if lag is not None and lag < 1:
            raise ValueError(f"lag must be >= 1, got {lag}")
        self.decay = decay
        self.cut_threshold = cut_threshold
        self.flow_scale = flow_scale
        self.lag = lag
        self._cond = threading.Condition()
        self._aborted = False
        self._local = threading.local()  # .flow: this thread's Flow
        # Stored dreams: index -> (source grey (H, W) uint8, residual (H, W, 3) float32). Newest
        # mode keeps one; ordered mode the last lag + 1.
        self._states: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def decay(self) -> float:
        return self._decay

    @decay.setter
    def decay(self, value: float) -> None:  # may change while running (live steering)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"decay must be in 0..1, got {value}")
        self._decay = float(value)

    @property
    def newest(self) -> int | None:
        """The index of the newest stored dream, None when there is none."""
        with self._cond:
            return max(self._states, default=None)

    def reset(self) -> None:
        """Forget the stored dreams (a new source, a seek): the next frame starts cold."""
        with self._cond:
            self._states = {}

    def abort(self) -> None:
        """Wake every waiting call (the run is stopping): they return cold starts, store nothing."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    def update(self, index: int, source_rgb: np.ndarray, residual: np.ndarray,
               start: Start | None = None) -> bool:
        """Store a finished dream: its source frame (H, W, 3) and residual (H, W, 3) float32
        (dream minus source); `start`: the warm start it began from (from `start_for`). True if
        kept. Newest mode ignores a dream older than the stored one; ordered mode waits until
        the dream before `index` is stored, then stores this one."""
        if residual.ndim != 3 or residual.shape[2] != 3:
            raise ValueError(f"expected a residual (H, W, 3), got {residual.shape}")
        if self.lag is None:
            with self._cond:  # cheap early out before the copies below
                newest = max(self._states, default=None)
            if newest is not None and index <= newest:
                return False
            before = newest
        else:
            before = index - 1 if index > 0 else None
            if before is not None and not self._wait_for(before):
                return False
        h, w = residual.shape[:2]
        src = gray(source_rgb)
        if src.shape != (h, w):
            src = cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)
        res = np.array(residual, dtype=np.float32, copy=True)  # the caller may reuse its array
        if (start is not None and start.residual is not None and start.residual.shape == res.shape
                and before is not None and before != index - start.gap):  # a warm start, not the chain's
            carried = self._start_from(before, source_rgb)  # the dream before, warped here
            if carried.residual is not None and carried.residual.shape == res.shape:
                res = carried.residual + (res - start.residual)
        return self._store(index, src, res)

    def blend(self, index: int, source_rgb: np.ndarray, dream: np.ndarray,
              keep: float, store: bool = True) -> tuple[np.ndarray, bool]:
        """A student's dream `dream` (H, W, 3) float32 for frame `index` (whose picture at flow
        size is `source_rgb`), blended with the dream before it moved onto this frame: where the
        flow holds, `keep` of the old and the rest of the new. Stored as the chain's state (unless
        `store` is False: the caller changes it first, then `put`s it) and returned, with True
        when it was blended. Ordered mode waits for the dream before; newest mode blends with the
        newest. With nothing before (or a scene cut) `dream` stays as it is."""
        if dream.ndim != 3 or dream.shape[2] != 3:
            raise ValueError(f"expected a dream residual (H, W, 3), got {dream.shape}")
        if self.lag is None:
            with self._cond:
                before = max(self._states, default=None)
        else:
            before = index - 1 if index > 0 else None
            if before is not None and not self._wait_for(before):
                return dream, False
        out = np.array(dream, dtype=np.float32, copy=True)
        blended = False
        if before is not None and keep > 0:
            carried = self._start_from(before, source_rgb, keep)
            if carried.residual is not None and carried.weight is not None:
                # out = carried + (1 - weight) * dream, weight = keep x mask (per pixel)
                fresh = cv2.multiply(out, cv2.merge([1.0 - carried.weight] * 3))
                out, blended = np.asarray(cv2.add(carried.residual, fresh), np.float32), True
        if store:
            self._store(index, gray(source_rgb), out)
        return out, blended

    def put(self, index: int, source_rgb: np.ndarray, residual: np.ndarray) -> bool:
        """Store the dream `blend(..., store=False)` returned, as changed since, for frame
        `index` (at full size, like the blend's; `source_rgb` at flow size). True if kept."""
        return self._store(index, gray(source_rgb), np.array(residual, dtype=np.float32, copy=True))

    def _store(self, index: int, src: np.ndarray, res: np.ndarray) -> bool:
        with self._cond:
            if self.lag is None:
                newest = max(self._states, default=None)
                if newest is not None and index <= newest:  # another thread stored a newer one
                    return False
                self._states = {index: (src, res)}
            else:
                states = {i: v for i, v in self._states.items() if i > index - 1 - self.lag}
                states[index] = (src, res)
                self._states = states
                self._cond.notify_all()
        return True

    def start_for(self, index: int, rgb: np.ndarray) -> Start:
        """The warm start for frame `index` whose image (at dream size) is `rgb` (H, W, 3).

        Returns the stored residual warped onto `rgb`, times the occlusion mask and the decay,
        at `rgb`'s size. `residual` is None (cold start) when nothing is stored yet (ordered
        mode: before frame `lag`) or at a scene cut (then `cut` is True). `gap` may be <= 0 in
        newest mode if the stored dream is not older.
        """
        if self.lag is None:
            with self._cond:
                ref = max(self._states, default=None)
        else:
            ref = index - self.lag
            if ref < 0 or not self._wait_for(ref):
                return Start(None)
        if ref is None:
            return Start(None)
        start = self._start_from(ref, rgb)
        return Start(start.residual, start.cut, index - ref, start.valid, start.weight)

    # -- inside ---------------------------------------------------------------------------------
    def _wait_for(self, index: int) -> bool:
        """Wait until the state of `index` is stored; False when aborted."""
        with self._cond:
            self._cond.wait_for(lambda: index in self._states or self._aborted)
            return not self._aborted

    def _start_from(self, ref: int, rgb: np.ndarray, decay: float | None = None) -> Start:
        """The stored state of frame `ref` warped onto `rgb`, masked and decayed (gap unset).

        The flow is computed between the grey pictures at `rgb`'s size; a residual stored at
        another size (a student's full-size dream, flow taken at dream size) is warped at its
        own size with the flow brought to it. `Start.weight` is the mask times the decay at the
        residual's size."""
        with self._cond:
            state = self._states.get(ref)
        if state is None:  # reset meanwhile
            return Start(None)
        prev, residual = state
        curr = gray(rgb)
        h, w = curr.shape
        if prev.shape != (h, w):  # the dream size changed: bring the stored dream to it
            if residual.shape[:2] == prev.shape:  # (a student's full-size residual stays as it is)
                residual = cv2.resize(residual, (w, h), interpolation=cv2.INTER_LINEAR)
            prev = cv2.resize(prev, (w, h), interpolation=cv2.INTER_AREA)
        flow = self._flow().backward(curr, prev)  # (h, w, 2)
        coords = _coords(flow)
        mask = _mask(curr, prev, coords, _MASK_LOW, _MASK_HIGH)  # (h, w)
        valid = float(mask.mean())
        if valid < self.cut_threshold:
            return Start(None, cut=True, valid=valid)
        mask *= self.decay if decay is None else decay
        rh, rw = residual.shape[:2]
        if (rh, rw) != (h, w):  # warp the residual at its own size
            flow = cv2.resize(flow, (rw, rh), interpolation=cv2.INTER_LINEAR)
            flow[..., 0] *= rw / w
            flow[..., 1] *= rh / h
            coords = _coords(flow)
            mask = cv2.resize(mask, (rw, rh), interpolation=cv2.INTER_LINEAR)
        start = _remap(residual, coords)  # (H, W, 3)
        start = cv2.multiply(start, cv2.merge([mask, mask, mask]))  # ~6x numpy's broadcast
        return Start(start, cut=False, valid=valid, weight=mask)

    def _flow(self) -> Flow:
        flow: Flow | None = getattr(self._local, "flow", None)
        if flow is None or flow.scale != self.flow_scale:
            flow = self._local.flow = Flow(scale=self.flow_scale)
        return flow


def warping_error(frames: Sequence[np.ndarray], sources: Sequence[np.ndarray]) -> float:
    """Flicker: the mean |frame t - frame t-1 warped onto it| over pixels the warp explains,
    in 0..255 levels averaged over channels. The flow and mask come from the *sources* (so a
    dream cannot fool the metric); `warping_error(sources, sources)` is the input's own flicker.

    `frames` and `sources`: equal-length sequences of (H, W, 3) images, one size, >= 2 frames.
    """
    if len(frames) != len(sources):
        raise ValueError(f"{len(frames)} frames but {len(sources)} sources")
    if len(frames) < 2:
        raise ValueError("the warping error needs at least 2 frames")
    flow_of = Flow()
    total, weight = 0.0, 0.0
    prev_src = gray(sources[0])
    for t in range(1, len(frames)):
        curr_src = gray(sources[t])
        if frames[t].shape[:2] != curr_src.shape or frames[t - 1].shape != frames[t].shape:
            raise ValueError(f"frame {t}: sizes differ: {frames[t - 1].shape}, "
                             f"{frames[t].shape}, source {curr_src.shape}")
        flow = flow_of.backward(curr_src, prev_src)
        coords = _coords(flow)
        mask = _mask(curr_src, prev_src, coords, _MASK_LOW, _MASK_HIGH)  # (H, W)
        prev_out = _remap(np.asarray(frames[t - 1], np.float32), coords)  # (H, W, C)
        err = np.abs(np.asarray(frames[t], np.float32) - prev_out)
        err = err.mean(axis=-1) if err.ndim == 3 else err  # (H, W)
        total += float((err * mask).sum())
        weight += float(mask.sum())
        prev_src = curr_src
    return total / weight if weight > 0 else float("nan")  # nothing matched between frames
