"""The farm: dream many files, or long films in chunks, across processes or a Ray cluster.

    from livedream.farm import BatchOptions, LocalEngine, run_batch
    with LocalEngine() as engine:
        summary = run_batch([("in.mp4", "out/in.mp4")], cfg, engine, BatchOptions(chunk_seconds=30))

Modules, each small: `plan` (files -> keyframe-aligned chunks), `chunk` (dream one chunk),
`join` (concatenate chunk files without re-encoding, add the sound), `manifest` (what is
finished), `job` (the driver), `local` / `ray_engine` / `inline` (where tasks run), `cli` (`livedream batch`).
`RayEngine` needs the optional `ray` package; it is imported from `livedream.farm.ray_engine`.
"""

from livedream.lazy import lazy_attributes

# Imported on first use (livedream.lazy): `livedream batch --help` imports livedream.farm.cli,
# and so this package.
_WHERE = {
    "ChunkResult": "chunk", "ChunkTask": "chunk", "dream_chunk": "chunk",
    "Engine": "engine", "Outcome": "engine",
    "ChunkError": "errors", "EngineUnavailable": "errors", "FarmError": "errors",
    "Fault": "faults", "InlineEngine": "inline",
    "BatchOptions": "job", "BatchSummary": "job", "FileReport": "job", "run_batch": "job",
    "JoinResult": "join", "Part": "join", "join_chunks": "join",
    "LocalEngine": "local", "MANIFEST_NAME": "manifest", "Manifest": "manifest",
    "Chunk": "plan", "FilePlan": "plan", "plan_file": "plan",
}

__all__ = [
    "BatchOptions", "BatchSummary", "FileReport", "run_batch",
    "Engine", "Outcome", "LocalEngine", "InlineEngine",
    "Chunk", "FilePlan", "plan_file", "ChunkTask", "ChunkResult", "dream_chunk",
    "Part", "JoinResult", "join_chunks", "Manifest", "MANIFEST_NAME", "Fault",
    "FarmError", "ChunkError", "EngineUnavailable",
]


__getattr__ = lazy_attributes(__name__, {name: f"livedream.farm.{module}" for name, module in _WHERE.items()})
