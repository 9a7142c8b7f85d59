"""Fix sweep: every file of the corpus through lint and fix, checking the
promises of tests/robustness/properties.py (linting raises nothing, fixes parse,
fixing twice changes nothing, nothing fixable is left, nothing outside the
edits changes), with the fixed files written into a temporary copy.

Each path is one project (its files share a project index, as in one bnlint
run); without paths, each folder of bench/.cache/corpus (bench/fetch_corpus.py)
is one. Prints the counts, then each crash and property violation; exits 1 if
there is any.

Usage: python bench/fix_sweep.py [PATH ...] [--unsafe-fixes] [--jobs N] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.robustness.properties

from bnlint.analysis.project import ProjectIndex  # noqa: E402
from bnlint.config import Config  # noqa: E402
from bnlint.discovery import discover  # noqa: E402
from bnlint.engine import lint_files, packages_of  # noqa: E402
from bnlint.parallel import TaskRunner  # noqa: E402
from bnlint.source import write_atomically  # noqa: E402
from tests.robustness.properties import Broken, Context, check_file  # noqa: E402

CORPUS_ROOT = REPO / "bench" / ".cache" / "corpus"


@dataclass(frozen=True)
class FileTask:
    path: Path
    package: str | None
    project: ProjectIndex | None


@dataclass(frozen=True)
class FileOutcome:
    path: str
    findings: int = 0
    fixes: int = 0
    crash: str | None = None  # a traceback
    violation: str | None = None  # the broken promise
    written: bytes | None = None  # the fixed file, when it changed


@dataclass
class Totals:
    files: int = 0
    findings: int = 0
    fixes: int = 0
    crashes: int = 0
    violations: int = 0


def _check(shared: tuple[Config, bool], task: FileTask) -> FileOutcome:
    config, unsafe = shared
    data = task.path.read_bytes()
    context = Context(config, task.package, task.project)
    try:
        checked = check_file(data, str(task.path), unsafe, context)
    except Broken as broken:
        return FileOutcome(str(task.path), violation=str(broken))
    written = checked.written if checked.written != data else None
    return FileOutcome(str(task.path), checked.findings, checked.fixes, written=written)


def _crashed(task: FileTask, traceback: str) -> FileOutcome:
    return FileOutcome(str(task.path), crash=traceback)


def sweep_project(project: Path, copy: Path, unsafe: bool, jobs: int) -> list[FileOutcome]:
    """Check every file of ``project``, copied to ``copy``; write the fixes there."""
    shutil.copytree(project, copy, symlinks=True)
    config = Config(root=copy)
    files = discover([copy], config)
    results = lint_files(files, config, jobs)
    tasks = [
        FileTask(path, package, result.project)
        for path, package, result in zip(files, packages_of(files), results, strict=True)
    ]
    outcomes = TaskRunner(_check, (config, unsafe), _crashed).run(tasks, jobs)
    # A crash while linting (recorded by lint_files) counts even if checking passed.
    outcomes = [
        replace(outcome, crash=result.internal_error) if result.internal_error else outcome
        for result, outcome in zip(results, outcomes, strict=True)
    ]
    for outcome in outcomes:
        if outcome.written is not None:
            write_atomically(Path(outcome.path), outcome.written)
    return outcomes


def projects(paths: list[Path]) -> list[Path]:
    if paths:
        return paths
    if not CORPUS_ROOT.is_dir():
        sys.exit(f"no corpus at {CORPUS_ROOT}: run bench/fetch_corpus.py, or give paths")
    return sorted(path for path in CORPUS_ROOT.iterdir() if path.is_dir())


def report(outcomes: list[FileOutcome], root: Path) -> Totals:
    totals = Totals(files=len(outcomes))
    for outcome in outcomes:
        totals.findings += outcome.findings
        totals.fixes += outcome.fixes
        shown = Path(outcome.path).relative_to(root)
        if outcome.crash:
            totals.crashes += 1
            print(f"CRASH {shown}:\n{outcome.crash.rstrip()}\n")
        if outcome.violation:
            totals.violations += 1
            print(f"VIOLATION {shown}: {outcome.violation}\n")
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="projects (default: the corpus)")
    parser.add_argument("--unsafe-fixes", action="store_true", help="apply unsafe fixes too")
    parser.add_argument("--jobs", type=int, default=0, help="processes (0: one per core)")
    parser.add_argument("--keep", action="store_true", help="keep the fixed copy, print where")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bnlint-fix-sweep-"))
    try:
        outcomes = []
        for index, project in enumerate(projects(args.paths)):
            copy = work / f"{index:02}-{project.resolve().name}"
            outcomes += sweep_project(project, copy, args.unsafe_fixes, args.jobs)
        totals = report(outcomes, work)
    finally:
        if args.keep:
            print(f"fixed copy kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"files {totals.files}, findings {totals.findings}, fixes applied {totals.fixes}, "
        f"crashes {totals.crashes}, property violations {totals.violations}"
    )
    sys.exit(1 if totals.crashes or totals.violations else 0)


if __name__ == "__main__":
    main()
