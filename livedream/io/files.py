"""Temporary files next to their destination, for writes that end with an atomic rename."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
from pathlib import Path

__all__ = ["create_temp"]


def create_temp(path: Path) -> Path:
    """Create, empty, `.<stem>.part-<host>-<pid>-<random><ext>` next to `path`: the same file
    system, so the final rename is atomic, and the same extension, from which writers pick the
    format. O_EXCL never clobbers a file; mode 0o666 minus the umask, like any new file (not
    mkstemp's 0600). OSError when it cannot.

    A process killed outright (SIGKILL, a power cut) cannot remove its temporary file, so each
    new writer of `path` first removes those of `path` left by processes of this host that are
    gone: the name says whose it is. Another host's (shared storage) are left alone: whether
    their writer still runs cannot be told from here."""
    host, pid = _host(), os.getpid()
    _remove_stale(path, host)
    temp = path.parent / f".{path.stem}.part-{host}-{pid}-{secrets.token_hex(4)}{path.suffix}"
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return temp


def _host() -> str:
    """This machine's name, as a temp name may hold it: letters and digits, at most 16."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:16] or "host"


def _remove_stale(path: Path, host: str) -> None:
    pattern = re.compile(rf"\.{re.escape(path.stem)}\.part-{host}-(\d+)-[0-9a-f]{{8}}"
                         rf"{re.escape(path.suffix)}")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return  # creating the temp file will say what is wrong
    for name in names:
        match = pattern.fullmatch(name)
        if match and not _alive(int(match[1])):
            with contextlib.suppress(OSError):
                os.unlink(path.parent / name)


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (True when that cannot be told: never remove a live file)."""
    if os.name != "posix":
        return True  # Windows' os.kill(pid, 0) would end the process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it runs, as another user
        return True
    return True
