"""A student's weights file: the network's architecture and weights, and the teacher it learned
from (every parameter of the dream it imitates), so it is never used for another dream.

Format: a torch file holding plain data only (loaded with `weights_only=True`):
`{"format": "livedream-student", "version": 1, "spec": {...}, "teacher": {...}, "state": {...},
"training": {...}}`; the weights are stored in fp16 (half the size; the network runs in fp32 or
lower). The students that ship with livedream are in `livedream/student/shipped/`.
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path

import torch

from livedream.models import ModelError
from livedream.student.net import StudentNet, StudentSpec

__all__ = ["FORMAT", "SHIPPED", "Student", "save_student", "load_student", "shipped_students",
           "find_shipped"]

FORMAT = "livedream-student"
SHIPPED = Path(__file__).parent / "shipped"


class Student:
    """A loaded student: its network (fp32, eval mode, on the CPU), teacher and training record."""

    def __init__(self, net: StudentNet, teacher: dict[str, str], training: dict[str, object],
                 path: str) -> None:
        self.net, self.teacher, self.training, self.path = net, teacher, training, path

    @property
    def model(self) -> str:
        return self.teacher.get("model", "?")

    @property
    def layers(self) -> tuple[str, ...]:
        """The teacher's layers, canonical names (as stored: "('block9',)")."""
        text = self.teacher.get("layers", "()").strip("()")
        return tuple(t.strip().strip("'\"") for t in text.split(",") if t.strip())

    @property
    def channel(self) -> int | None:
        value = self.teacher.get("channel", "None")
        return None if value == "None" else int(value)

    def describe(self) -> str:
        layer = ",".join(self.layers) or "default layer"
        return f"{self.model} {layer}" + ("" if self.channel is None else f" channel {self.channel}")


def save_student(net: StudentNet, teacher: dict[str, str], training: dict[str, object]) -> bytes:
    """The file's bytes (write them with an atomic write)."""
    state = {k: v.detach().to(torch.float16).cpu() for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": 1, "spec": net.spec.as_dict(), "teacher": dict(teacher),
                "state": state, "training": training}, buf)
    return buf.getvalue()


def load_student(path: str | os.PathLike[str]) -> Student:
    """A student from its file; ModelError (one line) for a missing, damaged or foreign file."""
    name = str(path)
    if not os.path.isfile(name):
        raise ModelError(f"student weights not found: {name}")
    try:
        data = torch.load(name, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a truncated or foreign file
        raise ModelError(f"cannot read student {name}: {type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:120]}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{name} is not a livedream student (made by `livedream distill`)")
    if data.get("version") != 1:
        raise ModelError(f"{name} is a student of format version {data.get('version')}; this livedream "
                         "reads version 1")
    try:
        net = StudentNet(StudentSpec.from_dict(data["spec"]))
        state = {k: v.float() for k, v in data["state"].items()}
        net.load_state_dict(state)
        teacher = {str(k): str(v) for k, v in data["teacher"].items()}
        training = dict(data.get("training") or {})
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise ModelError(f"student {name} is damaged: {type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:120]}") from None
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return Student(net, teacher, training, name)


def shipped_students() -> list[Path]:
    """The weights files that ship with livedream, sorted."""
    return sorted(SHIPPED.glob("*.pt")) if SHIPPED.is_dir() else []


@functools.cache
def _shipped_index() -> tuple[tuple[Path, str, tuple[str, ...], int | None], ...]:
    index = []
    for path in shipped_students():
        student = load_student(path)
        index.append((path, student.model, student.layers, student.channel))
    return tuple(index)


def shipped_for(model: str) -> list[tuple[Path, tuple[str, ...], int | None]]:
    """The shipped students of `model`: (weights file, layers (() = the default), channel)."""
    return [(path, ls, c) for path, m, ls, c in _shipped_index() if m == model]


def find_shipped(model: str, layers: tuple[str, ...], channel: int | None,
                 default_layer: str) -> Path | None:
    """The shipped student for this dream (canonical layer names; () = `default_layer`), if any."""
    wanted = tuple(layers) or (default_layer,)
    for path, ls, c in shipped_for(model):
        if (ls or (default_layer,)) == wanted and c == channel:
            return path
    return None
