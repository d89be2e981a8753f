"""The farm: dream many files, or long films in chunks, across processes or a Ray cluster.

    from livedream.farm import BatchOptions, LocalEngine, run_batch
    with LocalEngine() as engine:
        summary = run_batch([("in.mp4", "out/in.mp4")], cfg, engine, BatchOptions(chunk_seconds=30))

Modules, each small: `plan` (files -> keyframe-aligned chunks), `chunk` (dream one chunk),
`join` (concatenate chunk files without re-encoding, add the sound), `manifest` (what is
finished), `job` (the driver), `local` / `ray_engine` / `inline` (where tasks run), `cli` (`livedream batch`).
`RayEngine` needs the optional `ray` package; it is imported from `livedream.farm.ray_engine`.
"""

from livedream.farm.chunk import ChunkResult, ChunkTask, dream_chunk
from livedream.farm.engine import Engine, Outcome
from livedream.farm.errors import ChunkError, EngineUnavailable, FarmError
from livedream.farm.faults import Fault
from livedream.farm.inline import InlineEngine
from livedream.farm.job import BatchOptions, BatchSummary, FileReport, run_batch
from livedream.farm.join import JoinResult, Part, join_chunks
from livedream.farm.local import LocalEngine
from livedream.farm.manifest import MANIFEST_NAME, Manifest
from livedream.farm.plan import Chunk, FilePlan, plan_file

__all__ = [
    "BatchOptions", "BatchSummary", "FileReport", "run_batch",
    "Engine", "Outcome", "LocalEngine", "InlineEngine",
    "Chunk", "FilePlan", "plan_file", "ChunkTask", "ChunkResult", "dream_chunk",
    "Part", "JoinResult", "join_chunks", "Manifest", "MANIFEST_NAME", "Fault",
    "FarmError", "ChunkError", "EngineUnavailable",
]
