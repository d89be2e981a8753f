"""The batch driver: plan every file, run its chunks on an executor, join them, keep the manifest.

One loop for both executors: keep `executor.capacity` chunk tasks submitted (file by file, so the
first outputs are finished early), record each finished chunk in the manifest as it comes back,
retry a failed task up to `retries` times when trying again can help, and join a file's chunks
as soon as its last one is in. A file that fails (at planning, in a chunk that keeps failing, or
at the join) is reported and the others go on. Ctrl-C stops the executor; what was finished is in
the manifest, and running the same command again resumes from there.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from livedream.config import VideoConfig
from livedream.errors import LivedreamError
from livedream.farm.chunk import ChunkTask
from livedream.farm.errors import FarmError
from livedream.farm.executor import Executor, Outcome
from livedream.farm.faults import Fault
from livedream.farm.join import Part, join_chunks
from livedream.farm.manifest import ChunkRecord, Manifest, fingerprint
from livedream.farm.plan import FilePlan, plan_file
from livedream.progress import progress_bar

__all__ = ["BatchOptions", "FileReport", "BatchSummary", "run_batch", "CHUNK_FOLDER"]

CHUNK_FOLDER = ".livedream-chunks"  # inside the output folder: chunk files until their join
_POLL = 0.5  # seconds between checks for Ctrl-C while waiting for tasks


@dataclass(frozen=True)
class BatchOptions:
    chunk_seconds: float | None = 30.0  # cut files longer than 1.5x this at keyframes; None: never
    warmup: int = 16  # frames dreamed before a chunk and dropped; also its cross-fade length
    retries: int = 2  # a failing chunk is tried again this many times (if that can help)
    crf: int = 18  # x264 quality of the outputs (as `livedream video` writes them)
    metadata: dict[str, str] = field(default_factory=dict)  # stored in every output
    progress: bool = True  # one progress line for the whole job, on stderr


@dataclass
class FileReport:
    input: str
    output: str
    status: str = "pending"  # done | skipped (finished before) | failed | interrupted
    frames: int = 0  # frames in the output
    chunks: int = 0
    resumed: int = 0  # chunks finished by an earlier run
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class BatchSummary:
    files: list[FileReport]
    manifest: str  # its path
    run: str  # this run's id, as recorded in the manifest
    interrupted: bool = False

    @property
    def failed(self) -> list[FileReport]:
        return [f for f in self.files if f.status == "failed"]


@dataclass
class _File:
    report: FileReport
    name: str  # output file name: the manifest's key
    plan: FilePlan
    chunk_dir: str
    pending: set[int]  # chunk indices not finished yet
    attempts: dict[int, int] = field(default_factory=dict)


def run_batch(pairs: Sequence[tuple[str, str]], cfg: VideoConfig, executor: Executor,
              options: BatchOptions | None = None, *,
              on_chunk: Callable[[str, int], None] | None = None,
              fault: Fault | None = None) -> BatchSummary:
    """Dream each (input, output) pair with `executor`; outputs must share one folder.

    `on_chunk(output name, chunk index)` is called after each chunk is recorded (progress hooks;
    a KeyboardInterrupt from it stops the run as Ctrl-C does). `fault`: see faults.Fault.
    Raises FarmError before any work when the outputs are not in one folder or one would
    replace its input; every other failure is reported per file in the summary.
    """
    options = options or BatchOptions()
    folders = {os.path.dirname(os.path.abspath(out)) for _, out in pairs}
    if len(folders) != 1:
        raise FarmError(f"batch outputs must share one folder, got {len(folders)}")
    folder = folders.pop()
    for src, out in pairs:
        if os.path.abspath(src) == os.path.abspath(out) or (
                os.path.exists(out) and os.path.samefile(src, out)):
            raise FarmError(f"the output would replace its input: {out}")
    manifest = Manifest(folder)
    run = secrets.token_hex(4)
    summary = BatchSummary([], manifest.path, run)
    files: dict[str, _File] = {}
    queue: deque[ChunkTask] = deque()
    for src, out in pairs:
        report = FileReport(src, out)
        summary.files.append(report)
        job = _prepare(report, cfg, options, manifest, folder, run, fault, queue)
        if job is not None:
            files[job.name] = job
    total = sum(t.chunk.frames for t in queue)
    bar = progress_bar(total or None, "frames", enabled=options.progress and total > 0)
    running = 0
    try:
        for job in list(files.values()):
            if not job.pending:  # every chunk finished by an earlier run: only the join is left
                _join(job, manifest, options, run)
        while queue or running:
            while queue and running < executor.capacity:
                task = queue.popleft()
                if files[task.output].report.status == "failed":
                    continue
                executor.submit(task)
                running += 1
            outcome = executor.next_outcome(_POLL)
            if outcome is None:
                continue
            running -= 1
            job = files[outcome.task.output]
            if outcome.result is not None:
                _finished(job, outcome, manifest, folder, run, bar)
                if on_chunk is not None:
                    on_chunk(job.name, outcome.task.chunk.index)
                if not job.pending and job.report.status != "failed":
                    _join(job, manifest, options, run)
            else:
                _failed(job, outcome, options, manifest, run, queue)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        try:
            os.rmdir(os.path.join(folder, CHUNK_FOLDER))  # only when empty: nothing left to join
        except OSError:
            pass
    for report in summary.files:
        if report.status == "pending":
            report.status = "interrupted"
    return summary


def _prepare(report: FileReport, cfg: VideoConfig, options: BatchOptions, manifest: Manifest,
             folder: str, run: str, fault: Fault | None, queue: deque[ChunkTask]) -> _File | None:
    """Plan one file and queue its unfinished chunks; None when there is nothing to do."""
    name = os.path.basename(report.output)
    try:
        print_ = fingerprint(report.input, cfg, chunk_seconds=options.chunk_seconds,
                             warmup=options.warmup, crf=options.crf)
        entry = manifest.files.get(name)
        if entry is not None and entry.fingerprint == print_ and manifest.finished(name):
            report.status, report.frames, report.chunks = "skipped", entry.frames or 0, entry.chunks
            return None
        plan = plan_file(report.input, chunk_seconds=options.chunk_seconds, warmup=options.warmup)
    except (LivedreamError, OSError) as error:
        report.status, report.error = "failed", _one_line(error)
        manifest.mark_failed(name, report.input, report.error, run)
        return None
    entry = manifest.entry(name, report.input, print_)
    entry.chunks, entry.status, entry.error = len(plan.chunks), "pending", None
    manifest.save()
    chunk_dir = os.path.join(folder, CHUNK_FOLDER, name)
    os.makedirs(chunk_dir, exist_ok=True)
    job = _File(report, name, plan, chunk_dir, set())
    report.chunks = len(plan.chunks)
    kept = set()
    for chunk in plan.chunks:
        record = manifest.chunk_done(name, chunk.index)
        if record is not None:
            report.resumed += 1
            kept.add(os.path.basename(record.file))
            continue
        job.pending.add(chunk.index)
        queue.append(ChunkTask(name, plan.src, chunk, plan.time_base, plan.fps,
                               os.path.join(chunk_dir, f"chunk-{chunk.index:04d}.mp4"), cfg,
                               crf=options.crf, fault=fault))
    for leftover in set(os.listdir(chunk_dir)) - kept:  # stale chunks, half-written temp files
        os.unlink(os.path.join(chunk_dir, leftover))
    return job


def _finished(job: _File, outcome: Outcome, manifest: Manifest, folder: str, run: str,
              bar: Any) -> None:
    result = outcome.result
    assert result is not None
    record = ChunkRecord(os.path.relpath(result.path, folder), result.frames, result.first_pts,
                         run, round(result.seconds, 3), result.stopped_early)
    manifest.record_chunk(job.name, result.index, record)  # even if the file failed: resumable
    job.pending.discard(result.index)
    if result.stopped_early:
        job.report.warnings.append(f"chunk {result.index}: {result.stopped_early}")
    bar.update(outcome.task.chunk.frames)


def _failed(job: _File, outcome: Outcome, options: BatchOptions, manifest: Manifest, run: str,
            queue: deque[ChunkTask]) -> None:
    task = outcome.task
    index = task.chunk.index
    job.attempts[index] = job.attempts.get(index, 0) + 1
    if job.report.status == "failed":
        return
    if outcome.retryable and job.attempts[index] <= options.retries:
        queue.appendleft(task)  # again, before the others
        return
    message = outcome.error or "failed"
    if not message.startswith(task.name):
        message = f"{task.name}: {message}"
    if job.attempts[index] > 1:
        message += f" (after {job.attempts[index]} attempts)"
    job.report.status, job.report.error = "failed", message
    manifest.mark_failed(job.name, job.report.input, message, run)


def _join(job: _File, manifest: Manifest, options: BatchOptions, run: str) -> None:
    records = [manifest.chunk_done(job.name, c.index) for c in job.plan.chunks]
    try:
        if any(r is None for r in records):
            raise FarmError("a chunk file went missing before the join")
        parts = [Part(os.path.join(manifest.folder, r.file), r.first_pts)
                 for r in records if r is not None]
        result = join_chunks(parts, job.report.output, source=job.plan.src,
                             time_base=job.plan.time_base, end=job.plan.end, metadata=options.metadata)
    except (LivedreamError, OSError) as error:
        job.report.status, job.report.error = "failed", f"joining: {_one_line(error)}"
        manifest.mark_failed(job.name, job.report.input, job.report.error, run)
        return
    manifest.mark_done(job.name, result.frames, run)
    shutil.rmtree(job.chunk_dir, ignore_errors=True)
    job.report.status, job.report.frames = "done", result.frames


def _one_line(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())
