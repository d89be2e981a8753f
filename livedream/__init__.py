"""livedream: DeepDream for live video, video files and images.

The engine takes a batch of frames and a config and returns a batch; everything else is I/O
around it:

    from livedream import DreamConfig, Dreamer, to_tensor, to_image
    dreamer = Dreamer(DreamConfig(layers=("block9",), iters=10, octaves=4))
    out = to_image(dreamer.dream(to_tensor(rgb)))[0]   # rgb: (H, W, 3) uint8
"""

import os

# torch's OpenMP threads spin while they wait for work by default. Beside the pipeline's other
# threads (decode, flow, encode) or other processes on a small CPU, that spinning steals the very
# cores they need: dreams ran 3-6x slower under load here. Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from livedream.config import PRESETS, ConfigError, DreamConfig, preset  # noqa: E402
from livedream.errors import InputError, LivedreamError, OutputError  # noqa: E402
from livedream.lazy import lazy_attributes  # noqa: E402

__all__ = [
    "DreamConfig", "Dreamer", "PRESETS", "preset", "to_tensor", "to_image", "MODELS",
    "LivedreamError", "ConfigError", "ModelError", "InputError", "OutputError",
]
__version__ = "0.1.0"

# The names that need torch are imported on first use (livedream.lazy).
__getattr__ = lazy_attributes(__name__, {
    "Dreamer": "livedream.dream", "to_image": "livedream.dream", "to_tensor": "livedream.dream",
    "MODELS": "livedream.models", "ModelError": "livedream.models"})
