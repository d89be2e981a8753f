"""Shared fixtures: the sample photo at a few sizes and a cache of prepared Dreamers."""

from __future__ import annotations

import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "fruits.jpg"  # 512x480; EfficientNet-Lite0 says 951 lemon / 950 orange


def load_rgb(path: Path = SAMPLE) -> np.ndarray:
    """RGB uint8 (H, W, 3), read with OpenCV directly (not through the code under test)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, f"cannot read {path}"
    return np.ascontiguousarray(bgr[:, :, ::-1])


def resized(rgb: np.ndarray, width: int) -> np.ndarray:
    """`rgb` scaled to `width`, aspect kept, with INTER_AREA."""
    height = round(rgb.shape[0] * width / rgb.shape[1])
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def pytest_configure(config: pytest.Config) -> None:
    # A test run started in the background by a non-interactive shell (`cmd &`) inherits SIGINT
    # as ignored, and so would every command the tests start and then stop with Ctrl-C. Handled
    # here, SIGINT is back to its default in those commands (exec resets handled signals).
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # torch.from_numpy warns once about the read-only fixtures below; to_tensor copies them anyway.
    config.addinivalue_line("filterwarnings", "ignore:The given NumPy array is not writable:UserWarning")


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # a test that changes a shared image in place fails loudly
    return a


@pytest.fixture(scope="session")
def sample_rgb() -> np.ndarray:
    """samples/fruits.jpg as RGB uint8 (480, 512, 3), read-only."""
    return _frozen(load_rgb())


@pytest.fixture(scope="session")
def small_rgb(sample_rgb: np.ndarray) -> np.ndarray:
    """The sample photo 160 px wide (160x150), read-only."""
    return _frozen(resized(sample_rgb, 160))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (use: pytestmark = usefixtures("one_thread")).

    On this shared 2-core machine two OpenMP threads spin at every barrier whenever the other
    one is descheduled: under load the same tests took 5x longer and burnt 5x the CPU (291 s
    instead of 53 s for test_models + test_dream + test_cli_image). The previous count is restored.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def dreamer_for():
    """`dreamer_for(**DreamConfig fields)` -> a Dreamer built once per distinct config and shared.

    Shared Dreamers must stay stateless: a test that calls `set_guide` builds its own.
    """
    from livedream import DreamConfig, Dreamer

    cache: dict[tuple, Dreamer] = {}

    def get(**fields: object) -> Dreamer:
        key = tuple(sorted(fields.items()))
        if key not in cache:
            cache[key] = Dreamer(DreamConfig(**fields))  # type: ignore[arg-type]
        dreamer = cache[key]
        assert dreamer._guide is None, "a test left a guide on a shared Dreamer"
        return dreamer

    return get
