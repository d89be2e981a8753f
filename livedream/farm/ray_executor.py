"""The Ray executor: one Ray task per chunk, on whatever cluster `ray.init` reaches.

- Resources: on a cluster with GPUs each task asks for `num_gpus=1` (and dreams on the GPU Ray
  gives it, "cuda"); on a CPU-only cluster for `num_cpus=1` and one intra-op thread. These are
  logical resources: the same code schedules on a laptop and on a GPU farm.
- The model is loaded once per worker process: tasks reuse Ray's workers, and the chunk code
  keeps its model per process (`chunk.cached_dreamers`). GPU tasks set `max_calls=0`, since Ray
  would otherwise start a fresh process (and reload the model) for every GPU task.
- A worker that dies is retried by Ray itself (`max_retries`); a task that raises comes back to
  the driver, which retries it or not, as with the local executor. Results stream back as each
  task ends (`ray.wait`).
- Inputs and the output folder must be at the same path on every node (a shared file system):
  workers read the inputs and write chunk files next to the outputs; only the driver joins.

Ray is optional: `pip install 'livedream[ray]'`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from livedream.farm.chunk import ChunkResult, ChunkTask, dream_chunk
from livedream.farm.errors import ExecutorUnavailable
from livedream.farm.executor import ClosingExecutor, Outcome, describe

__all__ = ["RayExecutor", "import_ray"]

RAY_MISSING = "the ray executor needs Ray: pip install 'livedream[ray]'"


def import_ray() -> Any:
    """The `ray` module, or ExecutorUnavailable with how to install it."""
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailable(RAY_MISSING) from None
    return ray


def _run(task: ChunkTask) -> ChunkResult:
    """The Ray task (module level, so workers import it by name)."""
    return dream_chunk(task)


class RayExecutor(ClosingExecutor):
    """Run chunk tasks on a Ray cluster: `address` ("auto", "ray://host:10001", ...) or, when
    None and Ray is not initialized yet, a local one with `workers` CPUs (default: all)."""

    name = "ray"

    def __init__(self, address: str | None = None, *, workers: int | None = None,
                 retries: int = 2) -> None:
        ray = self._ray = import_ray()
        self._owns = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False,
                                       "logging_level": logging.WARNING}
            if address is None and workers is not None:
                options["num_cpus"] = workers
            try:
                ray.init(address=address, **options)
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = f"at {address}" if address else "here"
                first = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise ExecutorUnavailable(f"cannot start or reach a Ray cluster {where} ({first})"
                                        ) from error
            self._owns = True
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        if self.gpus:
            slots = self.gpus
            task_options: dict[str, Any] = {"num_gpus": 1, "max_calls": 0}
        else:
            slots = int(resources.get("CPU", 1))
            task_options = {"num_cpus": 1}
        self.capacity = max(1, min(slots, workers) if workers else slots)
        self.retries = retries
        self._remote = ray.remote(max_retries=retries, retry_exceptions=False,
                                  **task_options)(_run)
        self._refs: dict[Any, ChunkTask] = {}
        self._closed = False

    def submit(self, task: ChunkTask) -> None:
        if self._closed:
            raise RuntimeError("RayExecutor.submit() after close()")
        sent = task
        if self.gpus and all(d in ("cpu", "auto") for d in task.cfg.devices):
            sent = replace(task, cfg=task.cfg.replace(devices=("cuda",)))  # the GPU Ray gave it
        elif not self.gpus and task.threads is None:
            sent = replace(task, threads=1)  # num_cpus=1
        self._refs[self._remote.remote(sent)] = task

    def next_outcome(self, timeout: float) -> Outcome | None:
        if not self._refs:
            return None
        ray = self._ray
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if not ready:
            return None
        task = self._refs.pop(ready[0])
        try:
            return Outcome(task, result=ray.get(ready[0]))
        except ray.exceptions.RayTaskError as error:  # the task raised
            cause = getattr(error, "cause", None) or error
            message, retryable = describe(cause)
            return Outcome(task, error=message, retryable=retryable)
        except ray.exceptions.RayError as error:  # its worker died, after Ray's own retries
            return Outcome(task, error=f"Ray worker lost after {self.retries} retries "
                                       f"({type(error).__name__})", retryable=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for ref in self._refs:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass
        self._refs.clear()
        if self._owns:
            self._ray.shutdown()

