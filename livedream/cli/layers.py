"""`livedream layers`: a network's layers, their channels and strides."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("layers", help="list a network's layers")
    p.add_argument("--model", default="effnet-lite0")
    p.add_argument("--all", action="store_true", help="also list every convolution's path")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from torch import nn

    from livedream.models import model_spec

    spec = model_spec(args.model)
    net = spec.arch()
    print(f"{'name':<14} {'channels':>8} {'stride':>6}  path   ({args.model}, default {spec.default_layer})")
    for info in net.layers():
        print(f"{info.name:<14} {info.channels:>8} {info.stride:>6}  {info.path}")
    if args.all:
        print("\nevery convolution, by dotted path (outputs are pre-activation once BatchNorm is folded):")
        for path, module in net.named_modules():
            if isinstance(module, nn.Conv2d) and net.stage_of(path) is not None:
                print(f"{path:<40} {module.out_channels:>5}")
    return 0
