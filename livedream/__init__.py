"""livedream: DeepDream for live video, video files and images.

The engine takes a batch of frames and a config and returns a batch; everything else is I/O
around it:

    from livedream import DreamConfig, Dreamer, to_tensor, to_image
    dreamer = Dreamer(DreamConfig(layers=("block9",), iters=10, octaves=4))
    out = to_image(dreamer.dream(to_tensor(rgb)))[0]   # rgb: (H, W, 3) uint8
"""

from livedream.config import PRESETS, ConfigError, DreamConfig, preset
from livedream.dream import Dreamer, to_image, to_tensor
from livedream.errors import InputError, LivedreamError, OutputError
from livedream.models import MODELS, ModelError

__all__ = [
    "DreamConfig", "Dreamer", "PRESETS", "preset", "to_tensor", "to_image", "MODELS",
    "LivedreamError", "ConfigError", "ModelError", "InputError", "OutputError",
]
__version__ = "0.1.0"
