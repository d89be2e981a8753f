"""A student as a dream source: frames in, the dream's residual out, in one pass. No I/O here
(the weights come loaded, see `weights.load_student`).

Precision `auto` (`devices.choose_precision`, the one place): fp16 on CUDA; on a CPU with AMX,
bf16 from 224x224 pixels up (measured 1.2-1.6x faster there, the same strength in video); fp32
elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from livedream.devices import STUDENT, autocast, choose_precision, parse_device
from livedream.student.weights import Student

__all__ = ["StudentDreamer"]

# Pixels of reflected picture around each input, cut off the output: the network's own zero
# padding drew a bright line along the picture's top edge (the top rows' residual measured 2.1x
# the interior's on the sample clip, 3.6x on fruits.jpg; with 8 px of reflection 0.9x and 1.3x,
# the strength the same; ~6% more pixels to dream at 640x480).
_PAD = 8


class StudentDreamer:
    """One replica of a student on one device. Not thread-safe: one per worker."""

    def __init__(self, student: Student, device: str = "cpu", precision: str = "auto") -> None:
        self.student = student
        self.student_path = student.path
        self.device = parse_device(device)
        self.requested = precision
        # the precision of large inputs; `precision_for` gives each input's (`auto` may differ by size)
        self.precision = choose_precision(precision, self.device, model=STUDENT)
        self.net = _copy(student).to(self.device)
        self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from torch's stub

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) float 0..255 -> the dream's residual (B, 3, H, W) float32, on the CPU."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected frames (B, 3, H, W), got {tuple(x.shape)}")
        pad = min(_PAD, x.shape[-2] - 1, x.shape[-1] - 1)  # reflection needs a smaller pad than the side
        with torch.inference_mode(), autocast(self.precision_for(x), self.device):
            x = x.to(self.device, torch.float32)
            if pad > 0:
                x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
            y = self.net(x.contiguous(memory_format=torch.channels_last))
            if pad > 0:
                y = y[..., pad:-pad, pad:-pad]
            return y.float().cpu()

    def precision_for(self, x: torch.Tensor) -> str:
        """The precision the student runs in on `x` (..., H, W): `auto` picks by size, see
        `devices.choose_precision`."""
        return choose_precision(self.requested, self.device, model=STUDENT, pixels=x.shape[-1] * x.shape[-2])

    def dream(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) float 0..255 -> the dreamed frames, 0..255, float32 on the CPU."""
        return (x.float().cpu() + self.residual(x)).clamp_(0.0, 255.0)


def _copy(student: Student) -> torch.nn.Module:
    """A replica of the student's network (workers must not share one module's buffers)."""
    import copy

    return copy.deepcopy(student.net)
