"""Convolution + activation as one operation for the CPU dream step, with a lean backward.

The dream differentiates the input only: every weight is frozen. So a layer's backward needs
the weights, the activation's output (for its derivative) and the input's *shape* - not the
input's values, not a weight gradient. Plain modules keep more (autograd saves each conv's input
and each activation's input), make a separate pass for each activation, and run the 1x1
convolutions through a slow path on one thread. Here:

- `inverted_residual`: an EfficientNet block as one autograd node. Forward: oneDNN's
  `_convolution_pointwise` with the ReLU6 applied in the same pass (attr "hardtanh"), the skip
  added in the projection's pass (binary "add"); below _ONEDNN_MIN_PIXELS the 1x1 convolutions are
  plain matrix products. Backward: 1x1 convolutions as one matrix product each (the skip's
  gradient added inside it), the depthwise one by `convolution_backward` with output_mask
  [True, False, False], and ReLU6's derivative from the saved output (0 < y < 6 is the same set
  as on its input), in place on gradients the node owns.
- `conv_act`: one convolution + activation (the stem), the same way.
- used only where it pays and is right: on the CPU with oneDNN, float32 without autocast, inputs
  of at least MIN_PIXELS pixels, and no forward hook on a module it skips (a hook on a conv must
  see its pre-activation output, so that block then runs plainly).

Measured here (one thread, classic step at 480x352, medians): 1.34x faster than the plain layers.
Tried and dropped: a saved bool mask for ReLU6's derivative (making it, 7.2 ms, and applying it,
4.9 ms, against 2.0-2.3 ms for hardtanh_backward on the saved output, 96x176x240 floats); the
forward kernel on flipped weights for the stride-1 depthwise gradient (no measurable change);
GoogLeNet's conv + ReLU fused (0.89-1.09x of its plain fp32 step: it keeps its plain layers).
The tests check forward and input gradient against the plain ops.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

__all__ = [
    "available", "conv_act", "inverted_residual", "can_fuse", "set_fused", "fused_enabled", "MIN_PIXELS",
]

# Below this many pixels a 1x1 convolution is a plain matrix product: oneDNN spends ~100 us per
# call setting up (measured, one thread: 80->480 channels at 4x4 px 122 us vs addmm 26 us;
# 24->144 at 16x16 111 vs 36 us, at 64x64 508 vs 618 us).
_ONEDNN_MIN_PIXELS = 2048
# Below this many input pixels a layer runs plainly: the fused node's fixed cost (Python, oneDNN
# set-up) outweighs what it saves. Measured per EfficientNet block, forward + input gradient,
# fused / plain time: 8x8 px 0.9-2.0x (one or two threads), 16x16 0.85-2.0x, 24x24 0.91-1.26x,
# 32x32 0.83-0.98x, 64x64 0.66-0.91x.
MIN_PIXELS = 576
# activation -> (oneDNN post-op name, its scalars)
_POST_OPS: dict[str, tuple[str, list[float]]] = {
    "relu6": ("hardtanh", [0.0, 6.0]),
    "relu": ("relu", []),
    "none": ("none", []),
}


@functools.cache
def available() -> bool:
    """True where this torch has oneDNN's fused convolution (CPU builds with mkldnn)."""
    try:
        return bool(torch.backends.mkldnn.is_available()) and hasattr(
            torch.ops.mkldnn, "_convolution_pointwise")
    except (AttributeError, RuntimeError):  # pragma: no cover - torch without the op
        return False


def _conv_pointwise(*args: Any) -> torch.Tensor:
    return torch.ops.mkldnn._convolution_pointwise.default(*args)


def _conv_add(*args: Any) -> torch.Tensor:
    return torch.ops.mkldnn._convolution_pointwise.binary(*args)


_CONV, _CONV_ADD = _conv_pointwise, _conv_add


def set_fused(net: nn.Module, on: bool) -> None:
    """Turn the fused path of every module of `net` that has one on or off."""
    for m in net.modules():
        if hasattr(m, "fused"):
            setattr(m, "fused", on and available())  # noqa: B010 - a plain attribute, not a submodule


def fused_enabled(net: nn.Module) -> bool:
    return any(getattr(m, "fused", False) for m in net.modules())


def can_fuse(module: nn.Module, x: torch.Tensor, *parts: nn.Module) -> bool:
    """Whether `module` may run its fused forward on `x` now: switched on, float32 on the CPU,
    at least MIN_PIXELS pixels, no autocast, and no forward hook on the submodules `parts` that
    the fused path skips."""
    if not getattr(module, "fused", False) or x.shape[-1] * x.shape[-2] < MIN_PIXELS:
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
        return False
    return not any(p._forward_hooks or p._forward_pre_hooks for p in parts)


def _act_backward(grad: torch.Tensor, y: torch.Tensor, act: str) -> torch.Tensor:
    """The activation's input gradient from its *output* y (0 < y < 6 for ReLU6, y > 0 for ReLU:
    the same sets as on its input)."""
    if act == "relu6":
        return torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0)
    if act == "relu":
        return torch.ops.aten.threshold_backward(grad, y, 0.0)
    return grad


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) channels-last -> (B*H*W, C), a view."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


class _ConvAct(torch.autograd.Function):
    """oneDNN convolution with the activation fused; backward: the input gradient only."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
        stride: list[int], padding: list[int], dilation: list[int], groups: int, act: str,
        pointwise: bool,
    ) -> torch.Tensor:
        y = _CONV(x, weight, bias, padding, stride, dilation, groups, *_POST_OPS[act], "")
        ctx.conv = (stride, padding, dilation, groups)
        ctx.act = act
        ctx.pointwise = pointwise
        # A 1x1 convolution's input gradient is one matrix product: x is not needed. Otherwise x
        # is kept for its shape and memory format only (the layer before keeps it alive anyway).
        ctx.save_for_backward(None if pointwise else x, weight, y if act != "none" else None)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, y = ctx.saved_tensors
        g = _channels_last(_act_backward(grad, y, ctx.act) if y is not None else grad)
        if ctx.pointwise:
            gx = _mm_input_grad(g, weight)
        else:
            stride, padding, dilation, groups = ctx.conv
            gx = torch.ops.aten.convolution_backward(
                g, x, weight, None, stride, padding, dilation, False, [0, 0], groups,
                [True, False, False])[0]
        return gx, None, None, None, None, None, None, None, None


def _pointwise(conv: nn.Conv2d) -> bool:
    return (tuple(conv.kernel_size) == (1, 1) and tuple(conv.stride) == (1, 1) and conv.groups == 1
            and conv.padding in ((0, 0), "valid"))


def conv_act(x: torch.Tensor, conv: nn.Module, act: str = "none") -> torch.Tensor:
    """`act(conv(x))` as one fused node (see the module's docstring); `act` is relu6, relu or
    none. The caller checks `can_fuse` first."""
    assert isinstance(conv, nn.Conv2d)
    return _ConvAct.apply(_channels_last(x), conv.weight, conv.bias, *_conv_args(conv), act, _pointwise(conv))


def _conv_args(conv: nn.Conv2d) -> tuple[list[int], list[int], list[int], int]:
    assert isinstance(conv.padding, tuple)
    return list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups


def _mm_input_grad(g: torch.Tensor, weight: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
    """Input gradient of a 1x1 stride-1 convolution: (B*H*W, C_out) @ (C_out, C_in), plus `add`
    (B, C_in, H, W) channels-last in the same product when given."""
    b, _, h, w = g.shape
    w2 = weight.reshape(weight.shape[0], -1)
    out = torch.addmm(_rows(_channels_last(add)), _rows(g), w2) if add is not None else _rows(g) @ w2
    return out.view(b, h, w, -1).permute(0, 3, 1, 2)


def _mm_conv(x: torch.Tensor, conv: nn.Conv2d, add: torch.Tensor | None = None) -> torch.Tensor:
    """A 1x1 stride-1 convolution of channels-last `x` as one matrix product (+ `add`, same shape
    as the output), channels-last out."""
    b, _, h, w = x.shape
    w2 = conv.weight.reshape(conv.weight.shape[0], -1)
    out = torch.addmm(conv.bias, _rows(x), w2.t()) if conv.bias is not None else _rows(x) @ w2.t()
    if add is not None:
        out += _rows(_channels_last(add))
    return out.view(b, h, w, -1).permute(0, 3, 1, 2)


def _relu6_backward_(g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ReLU6's input gradient, written over `g` (which the caller owns), from the output y."""
    return torch.ops.aten.hardtanh_backward.grad_input(g, y, 0.0, 6.0, grad_input=g)


class _InvertedResidual(torch.autograd.Function):
    """EfficientNet's block (1x1 expand + ReLU6, depthwise kxk + ReLU6, 1x1 project, skip) as one
    autograd node: every gradient inside it is its own, so ReLU6's derivative is applied in place,
    and the skip's gradient is added inside the last matrix product."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, expand: nn.Conv2d | None, depthwise: nn.Conv2d, project: nn.Conv2d,
        skip: bool,
    ) -> torch.Tensor:
        relu6, none = _POST_OPS["relu6"], _POST_OPS["none"]
        e = x
        if expand is not None:
            if x.shape[2] * x.shape[3] < _ONEDNN_MIN_PIXELS:
                e = _mm_conv(x, expand).clamp_(0.0, 6.0)
            else:
                e = _CONV(x, expand.weight, expand.bias, [0, 0], [1, 1], [1, 1], 1, *relu6, "")
        stride, padding, dilation, groups = _conv_args(depthwise)
        d = _CONV(e, depthwise.weight, depthwise.bias, padding, stride, dilation, groups, *relu6, "")
        if d.shape[2] * d.shape[3] < _ONEDNN_MIN_PIXELS:
            out = _mm_conv(d, project, x if skip else None)
        elif skip:
            out = _CONV_ADD(d, x, project.weight, project.bias, [0, 0], [1, 1], [1, 1], 1, "add", None, None,
                            [], None)
        else:
            out = _CONV(d, project.weight, project.bias, [0, 0], [1, 1], [1, 1], 1, *none, "")
        ctx.dw = (stride, padding, dilation, groups)
        ctx.has_expand, ctx.skip = expand is not None, skip
        ctx.save_for_backward(e, d, expand.weight if expand is not None else None, depthwise.weight,
                              project.weight)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        e, d, w_expand, w_dw, w_project = ctx.saved_tensors
        grad = _channels_last(grad)  # may be shared with the skip's path: never changed here
        gd = _relu6_backward_(_mm_input_grad(grad, w_project), d)
        stride, padding, dilation, groups = ctx.dw
        ge = torch.ops.aten.convolution_backward(
            gd, e, w_dw, None, stride, padding, dilation, False, [0, 0], groups, [True, False, False])[0]
        if ctx.has_expand:
            gx = _mm_input_grad(_relu6_backward_(ge, e), w_expand, grad if ctx.skip else None)
        else:
            gx = ge + grad if ctx.skip else ge
        return gx, None, None, None, None


def inverted_residual(x: torch.Tensor, expand: nn.Module | None, depthwise: nn.Module, project: nn.Module,
                      skip: bool) -> torch.Tensor:
    """An EfficientNet block on `x` as one fused node (see `_InvertedResidual`); its convolutions
    have their BatchNorms folded in. The caller checks `can_fuse` first."""
    assert isinstance(depthwise, nn.Conv2d) and isinstance(project, nn.Conv2d)
    assert expand is None or isinstance(expand, nn.Conv2d)
    return _InvertedResidual.apply(_channels_last(x), expand, depthwise, project, skip)
