"""The job's memory: a JSON file next to the outputs that records every finished chunk and file.

Re-running the same command reads it and skips what is finished: a file whose output is there
as recorded, and the chunks whose chunk files are there. A record counts only for the same input
(path, size, modification time) dreamed the same way (the `fingerprint`: dream config, chunk
length, warm-up); anything else starts that file over.

Only the driver writes it, after each change, atomically (a temporary file renamed over it), so
a crash or Ctrl-C at any moment leaves the previous or the new version, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from livedream.config import VideoConfig
from livedream.farm.errors import FarmError
from livedream.io.images import atomic_write

__all__ = ["MANIFEST_NAME", "Manifest", "FileEntry", "ChunkRecord", "fingerprint"]

MANIFEST_NAME = "livedream-batch.json"
_VERSION = 1


def fingerprint(src: str, cfg: VideoConfig, *, chunk_seconds: float | None, warmup: int,
                crf: int) -> str:
    """What makes finished chunks reusable: the same input file, dreamed the same way.

    The devices are left out: the same dream on another device is still the same dream.
    """
    stat = os.stat(src)
    dream = {k: v for k, v in asdict(cfg.dream).items() if k != "device"}
    video = {k: v for k, v in asdict(cfg).items() if k not in ("dream", "devices")}
    text = json.dumps({"input": os.path.abspath(src), "size": stat.st_size,
                       "mtime_ns": stat.st_mtime_ns, "dream": dream, "video": video,
                       "chunk_seconds": chunk_seconds, "warmup": warmup, "crf": crf,
                       "format": _VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class ChunkRecord:
    """A finished chunk: its file (relative to the manifest's folder) and what it holds."""

    file: str
    frames: int
    first_pts: int
    run: str  # the run that made it
    seconds: float = 0.0
    stopped_early: str | None = None


@dataclass
class FileEntry:
    input: str
    fingerprint: str
    chunks: int = 0  # how many the file is cut into
    done: dict[str, ChunkRecord] = field(default_factory=dict)  # chunk index (str) -> record
    status: str = "pending"  # pending | done | failed
    error: str | None = None
    output_size: int | None = None  # of the finished output, to tell that it is still there
    output_mtime_ns: int | None = None
    frames: int | None = None  # frames in the finished output
    run: str | None = None  # the run that finished or failed it


def _checked(cls: type, raw: object, where: str, skip: frozenset[str] | set[str] = frozenset()
             ) -> dict[str, Any]:
    """`raw` as keyword arguments for dataclass `cls`, every field of the type `cls` declares
    (`skip`: checked by the caller); ValueError naming the field otherwise. A manifest edited
    by hand or damaged must end in the one-line "damaged" error, not in a crash later."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is {_kind(raw)}, expected an object")
    hints = typing.get_type_hints(cls)
    required = {f.name for f in fields(cls)
                if f.default is MISSING and f.default_factory is MISSING}
    missing = sorted(required - set(raw))
    if missing:
        raise ValueError(f"{where}: {missing[0]} is missing")
    for name, value in raw.items():
        if name not in hints:
            raise ValueError(f"{where}: unknown field {name!r}")
        if name not in skip and not _is(value, hints[name]):
            raise ValueError(f"{where}: {name} is {_kind(value)}, expected {_name(hints[name])}")
    return raw


def _is(value: object, hint: object) -> bool:
    """Whether a JSON value has the type `hint` (str, int, float, None or a union of them)."""
    if isinstance(hint, types.UnionType):
        return any(_is(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if isinstance(value, bool):  # JSON true is no number
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(hint, type) and isinstance(value, hint)


def _name(hint: object) -> str:
    """"str", "int or null"... for a message."""
    if isinstance(hint, types.UnionType):
        return " or ".join(_name(option) for option in typing.get_args(hint))
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _kind(value: object) -> str:
    return "null" if value is None else f"{type(value).__name__} {json.dumps(value)[:40]}"


class Manifest:
    """`folder/livedream-batch.json`, loaded at start; `save()` after each change."""

    def __init__(self, folder: str) -> None:
        self.folder = os.path.abspath(folder)
        self.path = os.path.join(self.folder, MANIFEST_NAME)
        self.files: dict[str, FileEntry] = {}
        if os.path.exists(self.path):
            self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            if not isinstance(data, dict) or data.get("version") != _VERSION:
                return  # another format: start over (the outputs themselves are untouched)
            files = data.get("files", {})
            if not isinstance(files, dict):
                raise ValueError(f"files is {_kind(files)}, expected an object")
            for name, raw in files.items():
                raw = dict(_checked(FileEntry, raw, name, skip={"done"}))
                done = raw.pop("done", {})
                if not isinstance(done, dict):
                    raise ValueError(f"{name}: done is {_kind(done)}, expected an object")
                records = {index: ChunkRecord(**_checked(ChunkRecord, record, f"{name} chunk {index}"))
                           for index, record in done.items()}
                self.files[name] = FileEntry(**raw, done=records)
        except OSError as error:
            raise FarmError(f"cannot read {self.path} ({error.strerror})") from error
        except (ValueError, TypeError, AttributeError) as error:
            raise FarmError(f"{self.path} is damaged ({error}); delete it to start over") from error

    def save(self) -> None:
        data = {"version": _VERSION,
                "files": {name: asdict(entry) for name, entry in sorted(self.files.items())}}
        atomic_write(self.path, (json.dumps(data, indent=1) + "\n").encode(), durable=True)

    # -- queries and updates, by output file name --------------------------------------------------
    def entry(self, name: str, src: str, print_: str) -> FileEntry:
        """The entry for output `name`; a fresh one when missing or made from something else."""
        entry = self.files.get(name)
        if entry is None or entry.fingerprint != print_ or entry.input != os.path.abspath(src):
            entry = self.files[name] = FileEntry(os.path.abspath(src), print_)
        return entry

    def finished(self, name: str) -> bool:
        """True when output `name` was finished and is still there as it was written."""
        entry = self.files.get(name)
        if entry is None or entry.status != "done":
            return False
        try:
            stat = os.stat(os.path.join(self.folder, name))
        except OSError:
            return False
        return stat.st_size == entry.output_size and stat.st_mtime_ns == entry.output_mtime_ns

    def chunk_done(self, name: str, index: int) -> ChunkRecord | None:
        """The record of a finished chunk whose file is still there, else None."""
        entry = self.files.get(name)
        record = entry.done.get(str(index)) if entry is not None else None
        if record is None or not os.path.isfile(os.path.join(self.folder, record.file)):
            return None
        return record

    def record_chunk(self, name: str, index: int, record: ChunkRecord) -> None:
        self.files[name].done[str(index)] = record
        self.save()

    def mark_done(self, name: str, frames: int, run: str) -> None:
        entry = self.files[name]
        stat = os.stat(os.path.join(self.folder, name))
        entry.status, entry.error, entry.frames, entry.run = "done", None, frames, run
        entry.output_size, entry.output_mtime_ns = stat.st_size, stat.st_mtime_ns
        # The chunk records stay, as a log of which run made which chunk; their files are gone.
        self.save()

    def mark_failed(self, name: str, src: str, error: str, run: str) -> None:
        entry = self.files.get(name)
        if entry is None:  # failed before it could be planned
            entry = self.files[name] = FileEntry(os.path.abspath(src), "")
        entry.status, entry.error, entry.run = "failed", error, run
        self.save()
