"""Attributes of a package imported on first use (PEP 562), so the command line's parser and
`--help` never wait for torch's ~2 s import."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, where: dict[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` for `package`: name -> the attribute of the same name in module
    `where[name]` (absolute), imported when first asked for and then kept in the package."""

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
