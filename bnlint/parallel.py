"""Running one task over many items in worker processes, results in item order.

The workers start once per run and get the task and its shared state once,
through the pool's initializer; items travel in small chunks, so a slow file
does not hold up a long queue behind it. On Linux the workers are forked:
nothing is imported again. A task that raises for one item gives that item an
error result (``on_error``) and the other items stand. On Ctrl-C the workers,
which ignore SIGINT, are told to stop and finish only the item in hand while
the caller cancels the rest, then KeyboardInterrupt reaches the caller: no hung
workers, and no traceback from each of them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Shared = TypeVar("Shared")
Result = TypeVar("Result")

# A worker is worth starting for this many items (fewer than twice this: no workers).
MIN_ITEMS_PER_WORKER = 10
# Several chunks per worker balance uneven files; a cap bounds the work lost
# with a worker that dies.
CHUNKS_PER_WORKER = 4
MAX_CHUNK = 16


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_count(jobs: int, items: int) -> int:
    """How many processes to use for ``items`` items: ``jobs`` (0 means one per
    core), but no more than the items keep busy; 1 means this process alone."""
    return max(1, min(jobs or available_cores(), items // MIN_ITEMS_PER_WORKER))


class TaskRunner(Generic[Shared, Item, Result]):
    """``task(shared, item)`` for each item; ``on_error(item, traceback)`` stands in
    for the result of an item whose task raised. Both must be module-level
    functions (workers find them by name) and ``shared`` must pickle."""

    def __init__(
        self,
        task: Callable[[Shared, Item], Result],
        shared: Shared,
        on_error: Callable[[Item, str], Result],
    ) -> None:
        self.task, self.shared, self.on_error = task, shared, on_error

    def run(self, items: Sequence[Item], jobs: int) -> list[Result]:
        """The results of ``items``, in their order, whatever the scheduling."""
        workers = worker_count(jobs, len(items))
        if workers == 1:
            return self.run_here(items)
        size = min(MAX_CHUNK, -(-len(items) // (workers * CHUNKS_PER_WORKER)))  # ceiling
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        context = _context()
        stop = context.Event()
        with ProcessPoolExecutor(
            workers, context, initializer=_start_worker, initargs=(self, stop)
        ) as executor:
            try:
                futures = [executor.submit(_run_chunk, chunk) for chunk in chunks]
                return [
                    result
                    for chunk, future in zip(chunks, futures, strict=True)
                    for result in self._chunk_results(chunk, future)
                ]
            except BaseException:  # Ctrl-C above all: drop the work not done yet
                stop.set()
                executor.shutdown(wait=True, cancel_futures=True)
                raise

    def run_here(self, items: Sequence[Item]) -> list[Result]:
        """The results of ``items``, computed in this process."""
        results = []
        for item in items:
            try:
                results.append(self.task(self.shared, item))
            except Exception:  # a bug in the task: this item's result says so
                results.append(self.on_error(item, traceback.format_exc()))
        return results

    def _chunk_results(self, chunk: Sequence[Item], future: Future[Any]) -> list[Result]:
        try:
            return future.result()
        except Exception as error:  # the worker died, or a result would not pickle
            reason = "".join(traceback.format_exception_only(type(error), error))
            return [self.on_error(item, f"in a worker process: {reason}") for item in chunk]


def _context() -> Any:
    # Forking copies the loaded interpreter: workers import nothing again.
    # Elsewhere (macOS, Windows) fork is unsafe or absent: the platform default.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


# Set once in each worker by the pool's initializer.
_runner: TaskRunner[Any, Any, Any]
_stop: Any  # a multiprocessing Event: the parent was interrupted


def _start_worker(runner: TaskRunner[Any, Any, Any], stop: Any) -> None:
    global _runner, _stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    _runner, _stop = runner, stop


def _run_chunk(items: Sequence[Any]) -> list[Any]:
    results = []
    for item in items:
        if _stop.is_set():  # nobody wants the rest
            break
        results.extend(_runner.run_here([item]))
    return results
