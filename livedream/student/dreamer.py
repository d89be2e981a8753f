"""A student as a dream source: frames in, the dream's residual out, in one pass. No I/O here
(the weights come loaded, see `weights.load_student`).

Precision: fp32 on the CPU (the default), fp16 on CUDA; bf16 on a CPU only when asked for.
"""

from __future__ import annotations

import torch

from livedream.devices import autocast, parse_device
from livedream.student.weights import Student

__all__ = ["StudentDreamer"]


class StudentDreamer:
    """One replica of a student on one device. Not thread-safe: one per worker."""

    def __init__(self, student: Student, device: str = "cpu", precision: str = "auto") -> None:
        self.student = student
        self.student_path = student.path
        self.device = parse_device(device)
        if precision == "auto":
            precision = "fp16" if self.device.type == "cuda" else "fp32"
        self.precision = precision
        self.net = _copy(student).to(self.device)
        self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from torch's stub

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) float 0..255 -> the dream's residual (B, 3, H, W) float32, on the CPU."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected frames (B, 3, H, W), got {tuple(x.shape)}")
        with torch.inference_mode(), autocast(self.precision, self.device):
            x = x.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)
            return self.net(x).float().cpu()

    def dream(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) float 0..255 -> the dreamed frames, 0..255, float32 on the CPU."""
        return (x.float().cpu() + self.residual(x)).clamp_(0.0, 255.0)


def _copy(student: Student) -> torch.nn.Module:
    """A replica of the student's network (workers must not share one module's buffers)."""
    import copy

    return copy.deepcopy(student.net)
