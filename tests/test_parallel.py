"""Worker processes: results in item order, one item's crash recorded for it alone,
small runs in-process, workers kept across rounds with items sent back to the
worker that ran them, Ctrl-C ends the run cleanly, and --jobs 2 prints exactly
what --jobs 1 prints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bnlint import engine
from bnlint.cli import main
from bnlint.config import Config
from bnlint.engine import lint_files
from bnlint.parallel import (
    MAX_CHUNK,
    MIN_ITEMS_PER_WORKER,
    TaskRunner,
    WorkerPool,
    _Queues,
    available_cores,
    worker_count,
)
from tests.conftest import BAD_MODEL

ITEMS = list(range(60))
SMALL_RUN = 2 * MIN_ITEMS_PER_WORKER  # fewer items than this stay in-process


# Module-level, so that worker processes find them by name.
def square_slowly(delay: float, item: int) -> tuple[int, int]:
    time.sleep(delay * (item % 3))  # uneven items finish out of order
    return item * item, os.getpid()


def fail_on_seven(shared: None, item: int) -> str:
    if item == 7:
        raise ValueError("seven is broken")
    return f"ok {item}"


def die_on_seven(shared: None, item: int) -> str:
    if item == 7:
        os._exit(3)  # a worker killed outright, not an exception
    return f"ok {item}"


def record_error(item: int, traceback: str) -> str:
    return f"error {item}: {traceback}"


def run_all(runner: TaskRunner[Any, Any, Any], items: list[int], jobs: int) -> list[Any]:
    """One round over ``items`` in a pool of its own."""
    with WorkerPool(jobs) as pool:
        return pool.run(runner, items).results


def test_results_come_back_in_item_order_from_several_processes() -> None:
    results = run_all(TaskRunner(square_slowly, 0.002, record_error), ITEMS, jobs=2)
    assert [value for value, _ in results] == [item * item for item in ITEMS]
    assert os.getpid() not in {pid for _, pid in results}
    assert len({pid for _, pid in results}) == 2


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_exception_is_recorded_for_its_item_alone(jobs: int) -> None:
    results = run_all(TaskRunner(fail_on_seven, None, record_error), ITEMS, jobs)
    assert results[7].startswith("error 7: Traceback")
    assert "ValueError: seven is broken" in results[7]
    assert [r for i, r in enumerate(results) if i != 7] == [f"ok {i}" for i in ITEMS if i != 7]


def test_a_dead_worker_fails_its_items_without_hanging() -> None:
    results = run_all(TaskRunner(die_on_seven, None, record_error), ITEMS, jobs=2)
    assert len(results) == len(ITEMS)
    assert results[7].startswith("error 7: in a worker process:")
    assert "BrokenProcessPool" in results[7]
    assert all(r == f"ok {i}" or r.startswith(f"error {i}:") for i, r in enumerate(results))


def test_small_runs_and_jobs_1_stay_in_this_process() -> None:
    few = ITEMS[: SMALL_RUN - 1]
    for items, jobs in ((few, 2), (ITEMS, 1)):
        results = run_all(TaskRunner(square_slowly, 0.0, record_error), items, jobs)
        assert {pid for _, pid in results} == {os.getpid()}


def test_jobs_0_means_one_worker_per_core_for_a_big_run() -> None:
    assert worker_count(0, 1000) == available_cores()
    assert worker_count(3, 1000) == 3
    assert worker_count(8, SMALL_RUN - 1) == 1
    assert worker_count(8, 3 * MIN_ITEMS_PER_WORKER) == 3  # no idle workers


def test_later_rounds_reuse_the_workers_and_their_items_go_back_to_them() -> None:
    runner = TaskRunner(square_slowly, 0.001, record_error)
    with WorkerPool(jobs=2) as pool:
        first = pool.run(runner, ITEMS)
        pids = {worker: pid for (_, pid), worker in zip(first.results, first.workers, strict=True)}
        assert sorted(pids) == [0, 1] and os.getpid() not in pids.values()
        again = pool.run(runner, ITEMS[:5], prefer=first.workers[:5])  # a round too small to fork
        assert [value for value, _ in again.results] == [item * item for item in ITEMS[:5]]
        assert {pid for _, pid in again.results} <= set(pids.values())  # no new processes
        for (_, pid), worker in zip(again.results, again.workers, strict=True):
            assert worker is not None and pids[worker] == pid


def test_a_worker_runs_its_own_items_then_anyones_then_the_busiests_cheapest() -> None:
    # Too few items for chunks of two; worker 1's items cost 4, 3, 2 and 1.
    queues = _Queues([0, 1, None, 1, 1, 1, None], live=[0, 1], costs=[1, 4, 1, 3, 2, 1, 1])
    assert [queues.next_chunk(0) for _ in range(4)] == [[0], [2], [6], [5]]
    assert [queues.next_chunk(1) for _ in range(3)] == [[1], [3], [4]]
    assert queues.next_chunk(1) == [] and queues.left_over() == []


def test_a_worker_steals_only_when_asked_to() -> None:
    queues = _Queues([1, 1], live=[0, 1], costs=[1, 1])
    assert queues.next_chunk(0, steal=False) == []
    assert queues.next_chunk(0) == [1]


def test_an_item_goes_to_its_own_worker_even_when_another_asks_first() -> None:
    runner = TaskRunner(square_slowly, 0.001, record_error)
    with WorkerPool(jobs=2) as pool:
        pool.run(runner, ITEMS)  # starts both workers
        for worker in (0, 1):
            again = pool.run(runner, [3], prefer=[worker])
            assert again.workers == [worker]


def test_items_of_a_dead_worker_go_to_the_live_ones() -> None:
    queues = _Queues([0, 0, 0, 2], live=[1], costs=[1] * 4)  # workers 0 and 2 died
    assert [queues.next_chunk(1) for _ in range(5)] == [[0], [1], [2], [3], []]


def test_items_given_back_are_run_again_and_their_cost_counts_again() -> None:
    queues = _Queues([None] * 40, live=[0, 1], costs=[1] * 40)
    taken = queues.next_chunk(0)
    before = queues.cost_left
    queues.give_back(taken)
    assert queues.cost_left == before + len(taken)
    assert queues.next_chunk(1) == taken


def test_chunks_shrink_as_the_items_run_out() -> None:
    queues = _Queues([None] * 1000, live=[0, 1], costs=[1] * 1000)
    sizes = []
    while chunk := queues.next_chunk(0):
        sizes.append(len(chunk))
    assert sizes[0] == MAX_CHUNK and sum(sizes) == 1000
    assert sizes == sorted(sizes, reverse=True) and sizes[-8:] == [1] * 8


def test_the_costliest_items_go_first_and_alone() -> None:
    costs = [1] * 40
    costs[7], costs[23] = 50, 30
    queues = _Queues([None] * len(costs), live=[0, 1], costs=costs)
    assert queues.next_chunk(0) == [7]
    assert queues.next_chunk(1) == [23]
    chunks = []
    while chunk := queues.next_chunk(0):
        chunks.append(chunk)
    assert len(chunks[0]) > 1 and len(chunks[-1]) == 1  # the cheap ones, in shrinking chunks
    assert [i for chunk in chunks for i in chunk] == [i for i in range(40) if i not in (7, 23)]


INTERRUPTED_RUN = textwrap.dedent(
    """\
    import sys
    from bnlint.parallel import TaskRunner
    from tests.test_parallel import record_error, run_all, square_slowly

    print("started", flush=True)
    try:
        run_all(TaskRunner(square_slowly, 0.5, record_error), list(range(400)), jobs=2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)
    """
)


def test_ctrl_c_ends_the_run_without_tracebacks_or_leftover_workers() -> None:
    # Ctrl-C in a terminal signals the whole process group: the parent and its workers.
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_RUN],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "started\n"
    time.sleep(1.5)  # the workers are running chunks by now
    os.killpg(process.pid, signal.SIGINT)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=30)
    assert (process.returncode, stderr) == (130, "")
    assert time.monotonic() - started < 5  # the items in hand, not the 400 items
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # nothing of the group is left


def build_tree(root: Path, count: int) -> list[Path]:
    """``count`` files, some with findings, some clean, some broken."""
    root.mkdir()
    clean = "import torch\n\nx = torch.zeros(3)\n"
    for i in range(count):
        text = (BAD_MODEL, clean, "import torch\ndef f(:\n")[i % 3]
        (root / f"m{i:03}.py").write_text(f"# file {i}\n{text}")
    return sorted(root.iterdir())


def test_jobs_2_prints_the_same_bytes_as_jobs_1(tmp_path: Path) -> None:
    files = build_tree(tmp_path / "tree", 3 * SMALL_RUN)
    assert worker_count(2, len(files)) == 2
    runner = CliRunner()
    outputs = [
        runner.invoke(main, ["--no-cache", "--jobs", jobs, "--show-source", str(tmp_path)])
        for jobs in ("1", "2", "0")
    ]
    assert outputs[0].exit_code == 1
    assert "m000.py:9:16: BNL201" in outputs[0].output
    assert outputs[0].output.count("BNL901") == SMALL_RUN
    assert outputs[0].output_bytes == outputs[1].output_bytes == outputs[2].output_bytes


FORKED = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="workers inherit the patch only when forked"
)


@pytest.mark.parametrize("jobs", [1, pytest.param(2, marks=FORKED)])
def test_a_crash_in_one_file_leaves_the_others(
    tmp_path: Path, jobs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = build_tree(tmp_path / "tree", 3 * SMALL_RUN)
    broken = files[3]
    real_lint_file = engine.lint_file

    def crash_on_broken(path: Path, *args: object, **kwargs: object) -> object:
        if path == broken:
            raise RuntimeError("a bug in a rule")
        return real_lint_file(path, *args, **kwargs)

    # The workers are forked after the patch, so they inherit it.
    monkeypatch.setattr(engine, "lint_file", crash_on_broken)
    results = lint_files(files, Config(), jobs=jobs)
    assert [r.path for r in results] == [str(f) for f in files]
    assert "RuntimeError: a bug in a rule" in (results[3].internal_error or "")
    assert [r.internal_error for r in results if r is not results[3]] == [None] * (len(files) - 1)
    assert [d.code for d in results[0].diagnostics] == ["BNL201", "BNL004"]
