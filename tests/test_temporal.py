"""Tests for livedream.temporal on small synthetic images: textures moved by known amounts."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from livedream.temporal import (
    Flow,
    Start,
    WarmStart,
    gray,
    is_scene_cut,
    occlusion_mask,
    warp,
    warping_error,
)

H, W = 96, 128  # frame size
M = 12  # interior margin: pixels near the border may have come from outside the frame


def texture(h: int, w: int, seed: int, sigma: float = 3.0) -> np.ndarray:
    """A smooth random RGB texture (h, w, 3) uint8 using the full 0..255 range."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for s in (sigma, 2.5 * sigma):  # two scales: fine detail for the flow, blobs for the eye
        img += cv2.GaussianBlur(rng.standard_normal((h, w, 3)).astype(np.float32), (0, 0), s) * s
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return img.astype(np.uint8)


CANVAS = texture(H + 80, W + 80, seed=1)
DREAM = texture(H + 80, W + 80, seed=2).astype(np.float32) - 128  # a residual glued to the scene


def crop(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The frame seen by a camera moved by (dx, dy): crop(dx, dy)(x) = crop(0, 0)(x + (dx, dy))."""
    return img[40 + dy:40 + dy + H, 40 + dx:40 + dx + W].copy()


def interior(img: np.ndarray) -> np.ndarray:
    return img[M:-M, M:-M]


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


# -- gray, flow, warp -------------------------------------------------------------------------
def test_gray_accepts_uint8_float_and_grey() -> None:
    g = gray(CANVAS)
    assert g.dtype == np.uint8 and g.shape == CANVAS.shape[:2]
    assert np.abs(gray(CANVAS.astype(np.float32)).astype(int) - g).max() <= 1
    assert gray(g) is not None and np.array_equal(gray(g), g)
    with pytest.raises(ValueError):
        gray(np.zeros((4, 4, 4), np.uint8))


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_flow_finds_a_shift(scale: float) -> None:
    prev, curr = gray(crop(CANVAS, 0, 0)), gray(crop(CANVAS, 3, -2))
    flow = Flow(scale=scale).backward(curr, prev)
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32
    median = np.median(interior(flow).reshape(-1, 2), axis=0)
    assert np.allclose(median, (3, -2), atol=0.35)


def test_flow_accepts_non_contiguous_views() -> None:
    big = gray(CANVAS)
    prev, curr = big[40:40 + H, 40:40 + W], big[40:40 + H, 42:42 + W]  # views, not copies
    flow = Flow().backward(curr, prev)
    assert np.allclose(np.median(interior(flow).reshape(-1, 2), axis=0), (2, 0), atol=0.35)


def test_warp_reconstructs_a_shifted_frame() -> None:
    prev, curr = crop(CANVAS, 0, 0), crop(CANVAS, 4, 3)
    flow = Flow().backward(gray(curr), gray(prev))
    warped = warp(prev.astype(np.float32), flow)
    assert warped.shape == prev.shape and warped.dtype == np.float32
    before = mean_abs(interior(prev), interior(curr))
    after = mean_abs(interior(warped), interior(curr))
    assert after < 0.15 * before, (after, before)
    assert warp(prev, flow).dtype == np.uint8  # dtype kept
    with pytest.raises(ValueError):
        warp(prev, flow[:-1])


# -- occlusions and cuts ----------------------------------------------------------------------
def test_occlusion_mask_is_low_where_content_appears() -> None:
    prev = crop(CANVAS, 0, 0)
    curr = crop(CANVAS, 2, 1)
    curr[30:60, 50:80] = 255 - crop(CANVAS, 20, 20)[30:60, 50:80]  # a square that was not there
    flow = Flow().backward(gray(curr), gray(prev))
    mask = occlusion_mask(gray(curr), gray(prev), flow)
    assert mask.shape == (H, W) and mask.dtype == np.float32
    assert 0.0 <= mask.min() and mask.max() <= 1.0
    square = mask[34:56, 54:76]  # inside, away from the soft edge
    outside = np.ones((H, W), bool)
    outside[24:66, 44:86] = False
    outside[:M], outside[-M:], outside[:, :M], outside[:, -M:] = False, False, False, False
    assert square.mean() < 0.2, square.mean()
    assert mask[outside].mean() > 0.85, mask[outside].mean()


def test_occlusion_mask_is_zero_outside_the_previous_frame() -> None:
    prev = gray(crop(CANVAS, 0, 0))
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0] = 10.0  # every pixel samples 10 px to the right: the last 10 columns are outside
    mask = occlusion_mask(prev, prev, flow)
    assert mask[:, -8:].max() == 0.0


def test_scene_cut_for_unrelated_images_only() -> None:
    a = gray(crop(CANVAS, 0, 0))
    unrelated = gray(texture(H, W, seed=7))
    assert is_scene_cut(unrelated, a)
    assert not is_scene_cut(gray(crop(CANVAS, 3, 2)), a)  # a small camera motion
    assert not is_scene_cut(gray(crop(CANVAS, 10, -6)), a)  # a larger one
    flow = Flow().backward(unrelated, a)
    assert is_scene_cut(unrelated, a, flow)  # with a flow already computed


def test_no_scene_cut_for_a_hand_moving() -> None:
    hand = texture(40, 30, seed=5)  # an object moving over a still background
    prev, curr = crop(CANVAS, 0, 0), crop(CANVAS, 0, 0)
    prev[30:70, 40:70] = hand
    curr[32:72, 46:76] = hand
    assert not is_scene_cut(gray(curr), gray(prev))


def test_no_scene_cut_for_a_brightness_change() -> None:
    prev = gray(crop(CANVAS, 0, 0))
    brighter = np.clip(prev.astype(np.int16) + 25, 0, 255).astype(np.uint8)  # auto exposure
    assert not is_scene_cut(brighter, prev)


# -- warm starts ------------------------------------------------------------------------------
def test_warm_start_empty_gives_a_cold_start() -> None:
    start = WarmStart().start_for(0, crop(CANVAS, 0, 0))
    assert isinstance(start, Start)
    assert start.residual is None and not start.cut and start.gap == 0


def test_warm_start_warps_and_decays_the_residual() -> None:
    warm = WarmStart(decay=0.8)
    warm.update(0, crop(CANVAS, 0, 0), crop(DREAM, 0, 0))
    start = warm.start_for(1, crop(CANVAS, 3, 2))
    assert start.residual is not None and not start.cut and start.gap == 1
    assert start.residual.shape == (H, W, 3) and start.residual.dtype == np.float32
    assert start.valid > 0.8
    expected = 0.8 * crop(DREAM, 3, 2)  # the residual moved with the scene
    err = mean_abs(interior(start.residual), interior(expected))
    assert err < 0.1 * np.abs(interior(expected)).mean(), err
    unwarped = mean_abs(interior(0.8 * crop(DREAM, 0, 0)), interior(expected))
    assert err < 0.2 * unwarped


def test_warm_start_across_a_gap_of_several_frames() -> None:
    # Larger frames: a tiny one has too few pyramid levels for DIS to follow 16 px.
    h, w, margin = 192, 256, 20
    canvas, dream = texture(h + 80, w + 80, seed=3), texture(h + 80, w + 80, seed=4) - 128.0

    def view(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
        return img[40 + dy:40 + dy + h, 40 + dx:40 + dx + w].copy()

    warm = WarmStart(decay=0.9)
    warm.update(10, view(canvas, 0, 0), view(dream, 0, 0))
    start = warm.start_for(14, view(canvas, 16, 8))  # 4 frames at (4, 2) px per frame
    assert start.residual is not None and start.gap == 4 and start.valid > 0.8
    expected = 0.9 * view(dream, 16, 8)[margin:-margin, margin:-margin]
    err = mean_abs(start.residual[margin:-margin, margin:-margin], expected)
    assert err < 0.05 * np.abs(expected).mean(), err


@pytest.mark.parametrize("moving", [False, True])
def test_warm_start_feedback_stays_bounded(moving: bool) -> None:
    decay, step = 0.9, np.full((H, W, 3), 5.0, np.float32)  # each dream adds the same residual
    warm = WarmStart(decay=decay)
    peaks, means = [], []
    for i in range(60):
        frame = crop(CANVAS, (i % 4) * 2 if moving else 0, 0)  # back and forth, 2 px a frame
        start = warm.start_for(i, frame)
        residual = step if start.residual is None else start.residual + step
        warm.update(i, frame, residual)
        peaks.append(float(np.abs(residual).max()))
        means.append(float(np.abs(residual).mean()))
    # Bilinear warping and a mask <= 1 never increase the largest value, so the residual stays
    # below the geometric series' sum.
    limit = 5.0 / (1 - decay)
    assert max(peaks) <= limit * 1.001
    if not moving:
        assert means[-1] > 0.9 * limit  # converged, not killed by the mask
        assert abs(means[-1] - means[-2]) < 0.01 * limit


def test_warm_start_returns_none_at_a_scene_cut() -> None:
    warm = WarmStart()
    warm.update(0, crop(CANVAS, 0, 0), crop(DREAM, 0, 0))
    start = warm.start_for(1, texture(H, W, seed=9))
    assert start.residual is None and start.cut and start.gap == 1
    assert start.valid < 0.3


def test_warm_start_keeps_only_the_newest() -> None:
    warm = WarmStart(decay=1.0)
    frame = crop(CANVAS, 0, 0)
    assert warm.update(5, frame, np.full((H, W, 3), 10.0, np.float32))
    assert not warm.update(3, frame, np.full((H, W, 3), -10.0, np.float32))  # older: ignored
    assert not warm.update(5, frame, np.full((H, W, 3), -10.0, np.float32))  # same: ignored
    assert warm.newest == 5
    start = warm.start_for(6, frame)
    assert start.residual is not None and start.gap == 1
    assert np.allclose(interior(start.residual), 10.0, atol=0.5)
    warm.reset()
    assert warm.newest is None and warm.start_for(7, frame).residual is None


@pytest.mark.parametrize("pass_starts", [True, False])
def test_dreams_in_flight_at_once_add_their_changes_to_one_chain(pass_starts: bool) -> None:
    # Two workers: frames 1 and 2 both start from frame 0's dream; 1 finishes first. Frame 2's
    # dream must not replace frame 1's: the stored state gets frame 2's own change on top.
    warm = WarmStart(decay=1.0)
    frames = [crop(CANVAS, 2 * i, 0) for i in range(4)]  # the camera pans 2 px a frame
    warm.update(0, frames[0], np.zeros((H, W, 3), np.float32))
    s1, s2 = warm.start_for(1, frames[1]), warm.start_for(2, frames[2])
    a = np.zeros((H, W, 3), np.float32)
    a[:, : W // 2] = 6.0  # frame 1's dream changes the left half
    b = np.zeros((H, W, 3), np.float32)
    b[:, W // 2:] = 4.0  # frame 2's dream changes the right half
    assert warm.update(1, frames[1], s1.residual + a, start=s1 if pass_starts else None)
    assert warm.update(2, frames[2], s2.residual + b, start=s2 if pass_starts else None)
    got = interior(warm.start_for(3, frames[3]).residual)
    left, right = got[:, :36], got[:, 60:]  # away from the halves' border, which moved
    if pass_starts:  # both changes kept (frame 1's moved with the scene: 4 px over 2 frames)
        assert np.allclose(left, 6.0, atol=0.7) and np.allclose(right, 4.0, atol=0.7)
    else:  # without the starts the newest dream replaces the other: frame 1's change is lost
        assert np.allclose(left, 0.0, atol=0.7)


def test_warm_start_copies_the_residual() -> None:
    warm = WarmStart(decay=1.0)
    frame, residual = crop(CANVAS, 0, 0), np.full((H, W, 3), 10.0, np.float32)
    warm.update(0, frame, residual)
    residual[:] = -99  # the caller reuses its buffer
    start = warm.start_for(1, frame)
    assert start.residual is not None and np.allclose(interior(start.residual), 10.0, atol=0.5)


def test_warm_start_follows_a_change_of_size() -> None:
    warm = WarmStart(decay=1.0)
    warm.update(0, crop(CANVAS, 0, 0), np.full((H, W, 3), 10.0, np.float32))
    small = cv2.resize(crop(CANVAS, 0, 0), (W // 2, H // 2), interpolation=cv2.INTER_AREA)
    start = warm.start_for(1, small)
    assert start.residual is not None and start.residual.shape == (H // 2, W // 2, 3)


def test_warm_start_decay_is_validated_and_settable() -> None:
    warm = WarmStart()
    warm.decay = 0.5
    assert warm.decay == 0.5
    with pytest.raises(ValueError):
        warm.decay = 1.5


def test_warm_start_from_several_threads() -> None:
    warm = WarmStart()
    errors: list[Exception] = []

    def worker(k: int) -> None:
        try:
            for i in range(k, 40, 4):
                frame = crop(CANVAS, i % 5, 0)
                start = warm.start_for(i, frame)
                residual = crop(DREAM, i % 5, 0) if start.residual is None else start.residual
                warm.update(i, frame, residual)
        except Exception as e:  # reported below, from the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert warm.newest == 39


# -- flicker metric ---------------------------------------------------------------------------
def test_warping_error_is_lower_for_coherent_output() -> None:
    moves = [(2 * t, t) for t in range(6)]
    sources = [crop(CANVAS, dx, dy) for dx, dy in moves]
    coherent = [np.clip(crop(CANVAS, dx, dy) + 0.5 * crop(DREAM, dx, dy), 0, 255).astype(np.uint8)
                for dx, dy in moves]  # a dream pattern that moves with the scene
    rng = np.random.default_rng(0)
    flicker = [np.clip(f + rng.normal(0, 20, f.shape), 0, 255).astype(np.uint8) for f in coherent]
    e_coherent, e_flicker = warping_error(coherent, sources), warping_error(flicker, sources)
    e_input = warping_error(sources, sources)
    assert e_input < 3.0 and e_coherent < 5.0
    assert e_flicker > 3 * e_coherent, (e_coherent, e_flicker)
    with pytest.raises(ValueError):
        warping_error(coherent[:2], sources[:3])
    with pytest.raises(ValueError):
        warping_error(coherent[:1], sources[:1])
