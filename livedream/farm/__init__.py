"""The farm: dream many files, or long films in chunks, across processes or a Ray cluster.

    from livedream.farm import BatchOptions, LocalExecutor, run_batch
    with LocalExecutor() as executor:
        summary = run_batch([("in.mp4", "out/in.mp4")], cfg, executor, BatchOptions(chunk_seconds=30))

Modules, each small: `plan` (files -> keyframe-aligned chunks), `chunk` (dream one chunk),
`join` (concatenate chunk files without re-encoding, add the sound), `manifest` (what is
finished), `job` (the driver), `local` / `ray_executor` / `inline` (where tasks run). The command
line is `livedream.cli.batch`.
`RayExecutor` needs the optional `ray` package; it is imported from `livedream.farm.ray_executor`.
"""

from livedream.lazy import lazy_attributes

# Imported on first use (livedream.lazy): importing the package stays cheap.
_WHERE = {
    "ChunkResult": "chunk", "ChunkTask": "chunk", "dream_chunk": "chunk",
    "Executor": "executor", "Outcome": "executor",
    "ChunkError": "errors", "ExecutorUnavailable": "errors", "FarmError": "errors",
    "Fault": "faults", "InlineExecutor": "inline",
    "BatchOptions": "job", "BatchSummary": "job", "FileReport": "job", "run_batch": "job",
    "JoinResult": "join", "Part": "join", "join_chunks": "join",
    "LocalExecutor": "local", "MANIFEST_NAME": "manifest", "Manifest": "manifest",
    "Chunk": "plan", "FilePlan": "plan", "plan_file": "plan",
}

__all__ = [
    "BatchOptions", "BatchSummary", "FileReport", "run_batch",
    "Executor", "Outcome", "LocalExecutor", "InlineExecutor",
    "Chunk", "FilePlan", "plan_file", "ChunkTask", "ChunkResult", "dream_chunk",
    "Part", "JoinResult", "join_chunks", "Manifest", "MANIFEST_NAME", "Fault",
    "FarmError", "ChunkError", "ExecutorUnavailable",
]


__getattr__ = lazy_attributes(__name__, {name: f"livedream.farm.{module}" for name, module in _WHERE.items()})
