"""Temporary files next to their destination, for writes that end with an atomic rename."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["create_temp"]


def create_temp(path: Path) -> Path:
    """Create, empty, `.<stem>.part-<random><ext>` next to `path`: the same file system, so the
    final rename is atomic, and the same extension, from which writers pick the format. O_EXCL
    never clobbers a file; mode 0o666 minus the umask, like any new file (not mkstemp's 0600).
    OSError when it cannot."""
    temp = path.parent / f".{path.stem}.part-{secrets.token_hex(4)}{path.suffix}"
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return temp
