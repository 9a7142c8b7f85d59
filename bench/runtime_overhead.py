"""Overhead of bnlint.runtime.Monitor on CPU training and evaluation steps of a small CNN.

A training step is: next batch from a DataLoader, forward, cross-entropy,
backward, SGD step. An evaluation step is: next batch, forward under no_grad
in eval mode. Each condition (no monitor, Monitor(), Monitor(record_events=True))
runs in interleaved rounds so that drift (thermal, other load) hits all alike;
the table shows the median and 90th percentile per step, the best round's mean,
and two overheads in percent and microseconds: paired (median over rounds of the
round's median minus the baseline's in the same round, against the baseline
median) and best rounds (best round mean minus the baseline's best round mean,
which is what the unloaded machine would show when other processes compete).

Not a test. Usage:

    python bench/runtime_overhead.py [--steps 300] [--rounds 10] [--batch-size 32]
                                     [--image-size 32] [--threads 2] [--clock wall|cpu]

A small ``--image-size``/``--batch-size`` (e.g. 8 and 2) makes the step so cheap
that the monitor's fixed per-call cost dominates: its worst case. On a shared,
busy machine wall-clock medians drift by more than the overhead; ``--threads 1
--clock cpu`` times only the main thread's CPU, where all of the monitor's work runs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bnlint.runtime import Monitor


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU stages, dropout and a linear head: 13 modules, 3 BatchNorm, 1 dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.features(x).flatten(1)))


def endless(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        yield from loader


def train_step(model: nn.Module, batches: Iterator, optimizer: torch.optim.Optimizer) -> None:
    x, y = next(batches)
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


@torch.no_grad()
def eval_step(model: nn.Module, batches: Iterator) -> None:
    x, _ = next(batches)
    model(x).argmax(1)


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def timed(step: Callable[[], None], count: int, clock: Callable[[], float]) -> list[float]:
    times = []
    for _ in range(count):
        start = clock()
        step()
        times.append(clock() - start)
    return times


CONDITIONS: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "no monitor": contextlib.nullcontext,
    "Monitor()": Monitor,
    "Monitor(record_events=True)": lambda: Monitor(record_events=True),
}


def measure(workload: str, args: argparse.Namespace) -> dict[str, list[list[float]]]:
    """Per condition, one list of step times per round."""
    torch.manual_seed(0)
    model = SmallCNN()
    size = args.image_size
    data = TensorDataset(torch.randn(512, 3, size, size), torch.randint(0, 10, (512,)))
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train(workload == "train")
    times: dict[str, list[list[float]]] = {name: [] for name in CONDITIONS}
    names = list(CONDITIONS)
    for round_ in range(args.rounds):
        # Rotate the order so that drift within a round favours no condition.
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            with CONDITIONS[name]():
                # A fresh iterator inside the monitor, so batches are tagged as in real use.
                batches = endless(loader)
                if workload == "train":
                    step = functools.partial(train_step, model, batches, optimizer)
                else:
                    step = functools.partial(eval_step, model, batches)
                clock = CLOCKS[args.clock]
                timed(step, args.warmup, clock)
                times[name].append(timed(step, max(1, args.steps // args.rounds), clock))
    return times


def report(workload: str, times: dict[str, list[list[float]]]) -> None:
    """Two overheads robust to drift and load: paired by round, and between best rounds."""
    baseline = times["no monitor"]
    base = statistics.median(t for round_ in baseline for t in round_)
    base_best = min(map(statistics.fmean, baseline))
    steps = sum(map(len, baseline))
    print(f"\n{workload} step ({steps} steps per condition, {len(baseline)} rounds)")
    print(
        f"| {'condition':<28} | median ms | p90 ms | best round ms "
        "| overhead, paired     | overhead, best rounds |"
    )
    print(f"|{'-' * 30}|-----------|--------|---------------|{'-' * 22}|{'-' * 23}|")
    for name, rounds in times.items():
        samples = [t for round_ in rounds for t in round_]
        paired = statistics.median(
            statistics.median(mine) - statistics.median(theirs)
            for mine, theirs in zip(rounds, baseline, strict=True)
        )
        best = min(map(statistics.fmean, rounds))
        print(
            f"| {name:<28} | {statistics.median(samples) * 1e3:9.3f} "
            f"| {statistics.quantiles(samples, n=10)[-1] * 1e3:6.3f} | {best * 1e3:13.3f} "
            f"| {_overhead(paired, base):<20} | {_overhead(best - base_best, base_best):<21} |"
        )


def _overhead(extra: float, base: float) -> str:
    return f"{extra / base * 100:+6.1f}% {extra * 1e6:+7.0f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per condition")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per round")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=32, help="small: hook cost dominates")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--clock",
        choices=CLOCKS,
        default="wall",
        help="cpu: CPU time of the main thread, robust to other load (use with --threads 1)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = platform.processor() or platform.machine()
    print(
        f"torch {torch.__version__}, Python {platform.python_version()}, {cpu}, "
        f"{os.cpu_count()} CPUs, {args.threads} torch threads, "
        f"batch {args.batch_size}x3x{args.image_size}x{args.image_size}, {args.clock} clock"
    )
    for workload in ("train", "eval"):
        report(workload, measure(workload, args))


if __name__ == "__main__":
    main()
