"""The errors a user can fix: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations

__all__ = ["LivedreamError", "InputError", "OutputError"]


class LivedreamError(Exception):
    """Base of every error caused by what the user asked for, not by a bug."""


class InputError(LivedreamError):
    """An input that is missing, empty, unreadable or of the wrong kind."""


class OutputError(LivedreamError):
    """An output that cannot be written (missing folder, no permission, disk full)."""
