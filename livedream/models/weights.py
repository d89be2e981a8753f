"""Reading a state dict from disk with errors a user can act on."""

from __future__ import annotations

import os

import torch
from torch import nn

from livedream.models.base import ModelError


def load_state_dict(net: nn.Module, path: str, *, ignore_prefixes: tuple[str, ...]) -> None:
    """Load `path` into `net`; keys starting with `ignore_prefixes` (e.g. auxiliary heads) may be extra."""
    if not os.path.isfile(path):
        raise ModelError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a bad file
        raise ModelError(f"cannot read weights {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"weights {path} is not a state dict of tensors")
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise ModelError(
            f"weights {path} do not fit {type(net).__name__}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} of wrong shape keys (first: {first})"
        )
    net.load_state_dict(state)
