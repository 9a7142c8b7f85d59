"""Running one task over many items in worker processes, results in item order.

A ``WorkerPool`` serves every round of one run: its workers start once (forked
on Linux: nothing is imported again) and each round sends them its task and
shared state once. Each worker is a one-process executor, so the pool knows
which worker ran an item and a later round can send the item back to it
(``prefer``): the worker may still hold what it built for the item, such as a
parsed tree. The costliest items start first and travel in chunks that
shrink as a round ends, handed to whichever worker is free, so the workers
finish together; a worker with nothing left in hand takes the cheapest items
of the busiest one. A task that raises for one item gives that item an error
result (``on_error``) and the other items stand; a worker that dies fails the
chunk in hand and the others go on. On Ctrl-C the workers, which ignore
SIGINT, are told to stop and finish only the item in hand while the caller
cancels the rest, then KeyboardInterrupt reaches the caller: no hung workers,
and no traceback from each of them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Shared = TypeVar("Shared")
Result = TypeVar("Result")

# A worker is worth starting for this many items (fewer than twice this: no workers).
MIN_ITEMS_PER_WORKER = 10
# A chunk costs about this share of a worker's part of the work left, so chunks
# shrink as a round ends and the workers finish together. A cap bounds the
# work lost with a worker that dies.
CHUNKS_PER_WORKER = 4
MAX_CHUNK = 16
# Chunks a worker holds at once: the next one is queued while it runs the first.
CHUNKS_IN_FLIGHT = 2


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

    def run_here(self, items: Sequence[Item]) -> list[Result]:
        """The results of ``items``, computed in this process."""
        results = []
        for item in items:
            try:
                results.append(self.task(self.shared, item))
            except Exception:  # a bug in the task: this item's result says so
                results.append(self.on_error(item, traceback.format_exc()))
        return results


class Round(Generic[Result]):
    """The results of one ``WorkerPool.run``, and which worker ran each item
    (None: this process, or no worker finished it)."""

    def __init__(self, size: int) -> None:
        self.results: list[Result] = [None] * size  # type: ignore[list-item]
        self.workers: list[int | None] = [None] * size


class WorkerPool:
    """Workers for the rounds of one run. The first round with enough items to
    keep two busy starts them: ``jobs`` (0: one per core), no more than its items
    keep busy. Until then rounds run in this process."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self._executors: list[ProcessPoolExecutor] = []
        self._dead: set[int] = set()
        self._stop: Any = None  # a multiprocessing Event: the parent was interrupted

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for executor in self._executors:
            executor.shutdown(wait=True, cancel_futures=True)

    def run(
        self,
        runner: TaskRunner[Any, Any, Result],
        items: Sequence[Any],
        prefer: Sequence[int | None] | None = None,
        costs: Sequence[int] | None = None,
    ) -> Round[Result]:
        """Run ``runner`` over ``items``; ``prefer[i]`` names the worker that
        should run item i (as ``Round.workers`` of an earlier round said).
        ``costs[i]`` says how long item i takes compared with the others: the
        costliest start first, so the round ends on cheap ones."""
        if not self._executors and worker_count(self.jobs, len(items)) > 1:
            self._start(worker_count(self.jobs, len(items)))
        done: Round[Result] = Round(len(items))
        live = [w for w in range(len(self._executors)) if w not in self._dead]
        if not live:
            done.results = runner.run_here(items)
            return done
        try:
            queues = _Queues(prefer or [None] * len(items), live, costs or [1] * len(items))
            self._schedule(runner, items, queues, live, done)
        except BaseException:  # Ctrl-C above all: drop the work not done yet
            self._stop.set()
            self.__exit__()
            raise
        return done

    def _start(self, workers: int) -> None:
        context = _context()
        self._stop = context.Event()
        self._executors = [
            ProcessPoolExecutor(1, context, initializer=_start_worker, initargs=(self._stop,))
            for _ in range(workers)
        ]

    def _schedule(
        self,
        runner: TaskRunner[Any, Any, Result],
        items: Sequence[Any],
        queues: _Queues,
        live: list[int],
        done: Round[Result],
    ) -> None:
        running: dict[Future[Any], tuple[int, list[int]]] = {}
        for worker in live:
            self._submit(worker, _set_runner, runner)  # runs before its chunks
        while True:
            # Every worker is offered its own items before any worker steals them:
            # an item stolen at the start of a round is parsed again for nothing.
            for worker in live:
                self._hand_out(worker, items, queues, running, steal=False)
            for worker in live:
                self._hand_out(worker, items, queues, running, steal=True)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                worker, chunk = running.pop(future)
                results = self._chunk_results(runner, [items[i] for i in chunk], future, worker)
                # Shorter than the chunk only when the run is being interrupted.
                for index, result in zip(chunk, results, strict=False):
                    done.results[index] = result
                    done.workers[index] = None if worker in self._dead else worker
        for index in queues.left_over():  # every worker died
            done.results[index] = runner.on_error(items[index], "no worker process left")

    def _hand_out(
        self,
        worker: int,
        items: Sequence[Any],
        queues: _Queues,
        running: dict[Future[Any], tuple[int, list[int]]],
        steal: bool,
    ) -> None:
        """Fill ``worker``'s hands from its own items or anyone's; with ``steal``,
        a worker with nothing in hand takes one chunk of the busiest worker's."""
        held = sum(1 for w, _ in running.values() if w == worker)
        room = int(held == 0) if steal else CHUNKS_IN_FLIGHT - held
        for _ in range(room):
            chunk = queues.next_chunk(worker, steal) if worker not in self._dead else []
            if not chunk:
                return
            future = self._submit(worker, _run_chunk, [items[i] for i in chunk])
            if future is None:  # it has just died
                queues.give_back(chunk)
                return
            running[future] = worker, chunk

    def _submit(
        self, worker: int, function: Callable[..., Any], argument: Any
    ) -> Future[Any] | None:
        """``function(argument)`` in ``worker``; None if the worker has died."""
        if worker in self._dead:
            return None
        try:
            return self._executors[worker].submit(function, argument)
        except BrokenProcessPool:
            self._dead.add(worker)
            return None

    def _chunk_results(
        self,
        runner: TaskRunner[Any, Any, Result],
        chunk: list[Any],
        future: Future[Any],
        worker: int,
    ) -> list[Result]:
        try:
            return future.result()
        except Exception as error:  # the worker died, or a result would not pickle
            if isinstance(error, BrokenProcessPool):
                self._dead.add(worker)
            reason = "".join(traceback.format_exception_only(type(error), error))
            return [runner.on_error(item, f"in a worker process: {reason}") for item in chunk]


class _Queues:
    """Which items each worker runs next: its own (preferred) items first, then
    items nobody prefers, costliest first; a worker that steals takes the
    cheapest items of the worker with the most left, which cost the least to
    redo without what their own worker kept."""

    def __init__(self, prefer: Sequence[int | None], live: list[int], costs: Sequence[int]) -> None:
        self.workers = len(live)
        self.costs = costs
        self.cost_left = sum(costs)
        self.own: dict[int, deque[int]] = {worker: deque() for worker in live}
        self.anyone: deque[int] = deque()
        for index in sorted(range(len(prefer)), key=lambda i: -costs[i]):  # ties: item order
            self.own.get(prefer[index], self.anyone).append(index)  # type: ignore[arg-type]

    def next_chunk(self, worker: int, steal: bool = True) -> list[int]:
        """At least one item, then more while the chunk costs no more than its
        share of what is left."""
        for queue in (self.own.get(worker), self.anyone):
            if queue:
                return self._take(queue, from_cheapest=False)
        busiest = self._longest()
        return self._take(busiest, from_cheapest=True) if steal and busiest else []

    def _take(self, queue: deque[int], from_cheapest: bool) -> list[int]:
        share = self.cost_left / (self.workers * CHUNKS_PER_WORKER)
        end, take = (-1, queue.pop) if from_cheapest else (0, queue.popleft)
        chunk = [take()]
        cost = self.costs[chunk[0]]
        while queue and len(chunk) < MAX_CHUNK and cost + self.costs[queue[end]] <= share:
            cost += self.costs[queue[end]]
            chunk.append(take())
        self.cost_left -= cost
        return chunk

    def _longest(self) -> deque[int]:
        return max(self.own.values(), key=len, default=deque())

    def give_back(self, chunk: list[int]) -> None:
        """Items a worker could not take: anyone's again, and their cost still to do."""
        self.anyone.extendleft(reversed(chunk))
        self.cost_left += sum(self.costs[i] for i in chunk)

    def left_over(self) -> list[int]:
        return [i for queue in (self.anyone, *self.own.values()) for i in queue]


def _context() -> Any:
    # Forking copies the loaded interpreter: workers import nothing again.
    # Elsewhere (macOS, Windows) fork is unsafe or absent: the platform default.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


# Set in each worker: by the pool's initializer, then by each round.
_runner: TaskRunner[Any, Any, Any]
_stop: Any


def _start_worker(stop: Any) -> None:
    global _stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    _stop = stop


def _set_runner(runner: TaskRunner[Any, Any, Any]) -> None:
    global _runner
    _runner = runner


def _run_chunk(items: Sequence[Any]) -> list[Any]:
    results = []
    for item in items:
        if _stop.is_set():  # nobody wants the rest
            break
        results.extend(_runner.run_here([item]))
    return results
