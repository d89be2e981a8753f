"""The local executor: a small pool of worker processes, one task each at a time.

Not `concurrent.futures`: when a worker dies there, every pending future fails and nobody knows
which task killed it. Here each worker has its own pipe, so a worker that dies (killed, out of
memory, a crash in native code) fails exactly the task it was running, and a new worker takes
its place. Workers are started with "spawn" (no fork of a process that already runs torch
threads), each builds its model once (`chunk.cached_dreamers`), and they ignore Ctrl-C: the
driver stops them. On Linux they die with the driver, however it ends (`_die_with_parent`).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from typing import cast

from livedream.farm.chunk import ChunkTask, dream_chunk
from livedream.farm.executor import ClosingExecutor, Outcome, describe

__all__ = ["LocalExecutor"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the driver dies, even by SIGKILL: else a busy worker
    dreams on, orphaned, until its chunk is done. Linux only (prctl PR_SET_PDEATHSIG); elsewhere
    the worker still leaves when it finds its pipe closed. The signal comes when the *thread*
    that started the worker ends: the driver starts them from its main thread."""
    if not sys.platform.startswith("linux"):
        return
    try:
        if ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return  # refused: as on other systems
    except (OSError, AttributeError):
        return  # no prctl to be found: as on other systems
    if os.getppid() != parent:  # the driver died before prctl: nobody will send the signal
        os._exit(1)


def _serve(conn: Connection, parent: int) -> None:
    """A worker's life: take a task, dream it, send ("ok", result) or ("error", text, retry)."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops us
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # the driver is gone
        if task is None:
            return
        try:
            message: tuple[object, ...] = ("ok", dream_chunk(task))
        except Exception as error:  # noqa: BLE001 - reported to the driver, which decides
            message = ("error", *describe(error))
        try:
            conn.send(message)
        except (BrokenPipeError, OSError):
            return


@dataclass(eq=False)
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection


class LocalExecutor(ClosingExecutor):
    """Run chunk tasks in `workers` processes (default: one per core).

    Each worker gets `cores // workers` intra-op threads (at least 1), so the pool fills the
    machine without oversubscribing it.
    """

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        cores = os.cpu_count() or 1
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.capacity = workers or cores
        self.threads = max(1, cores // self.capacity)
        self._context = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = []
        self._busy: dict[_Worker, ChunkTask] = {}
        self._ready: deque[Outcome] = deque()
        self._closed = False

    def _start(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(theirs, os.getpid()),
                                        name="livedream-farm", daemon=True)
        # Started with Ctrl-C ignored (inherited, and kept by Python at start-up): a Ctrl-C while
        # it imports torch would print its traceback. The driver alone handles Ctrl-C.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            process.start()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        theirs.close()
        return _Worker(process, ours)

    def submit(self, task: ChunkTask) -> None:
        if self._closed:
            raise RuntimeError("LocalExecutor.submit() after close()")
        if len(self._busy) >= self.capacity:
            raise RuntimeError(f"{len(self._busy)} tasks running: at capacity")
        if task.threads is None:
            task = replace(task, threads=self.threads)
        while True:
            worker = self._idle.pop() if self._idle else self._start()
            try:
                worker.conn.send(task)
                break
            except (BrokenPipeError, OSError):  # it died while idle: replace it
                self._bury(worker)
        self._busy[worker] = task

    def next_outcome(self, timeout: float) -> Outcome | None:
        if not self._ready and self._busy:
            by_handle: dict[object, _Worker] = {}
            for worker in self._busy:
                by_handle[worker.conn] = worker
                by_handle[worker.process.sentinel] = worker
            seen: set[_Worker] = set()
            handles = cast("list[Connection | int]", list(by_handle))  # pipes and process sentinels
            for handle in wait(handles, timeout):
                worker = by_handle[handle]
                if worker not in seen:
                    seen.add(worker)
                    self._collect(worker)
        return self._ready.popleft() if self._ready else None

    def _collect(self, worker: _Worker) -> None:
        """Read what `worker` sent, or find out that it died."""
        task = self._busy[worker]
        message = None
        try:
            if worker.conn.poll():
                message = worker.conn.recv()
        except (EOFError, OSError):
            message = None
        if message is None:
            if worker.process.is_alive():
                return  # woken up by nothing after all
            worker.process.join(1)
            code = worker.process.exitcode
            del self._busy[worker]
            self._bury(worker)
            self._ready.append(Outcome(task, error=f"worker process died (exit code {code})",
                                       retryable=True))
            return
        del self._busy[worker]
        self._idle.append(worker)
        if message[0] == "ok":
            self._ready.append(Outcome(task, result=message[1]))
        else:
            self._ready.append(Outcome(task, error=message[1], retryable=message[2]))

    def _bury(self, worker: _Worker) -> None:
        worker.conn.close()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5)

    def close(self) -> None:
        """Stop the workers: idle ones are asked to leave, busy ones are killed."""
        if self._closed:
            return
        self._closed = True
        for worker in self._idle:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self._idle:
            worker.process.join(5)
        for worker in [*self._idle, *self._busy]:
            self._bury(worker)
        self._idle.clear()
        self._busy.clear()

