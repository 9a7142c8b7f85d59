"""Speed benchmark: bnlint beside other tools and the parse and I/O floors.

For each corpus (see fetch_corpus.py) every tool runs --runs times,
interleaved (run 1 of every tool, then run 2, ...) so drift hits all tools
alike. Every tool is a child process on a private copy of the corpus in a
temp dir (outside this repo, so no project config or .gitignore applies);
the table shows median wall time and peak RSS, each also as a ratio to
bnlint cold on all cores.

Peak RSS is ru_maxrss from os.wait4 on the child: the peak of the largest
single process in the child's tree (the child and every descendant it
waited for), not the sum over processes running at once. For multi-process
runs the tree total can be up to jobs times that figure.

Usage: python bench/speed.py [--corpus NAME ...] [--runs N] [--out FILE]
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import importlib.metadata
import importlib.util
import itertools
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from fetch_corpus import CACHE, corpus_dir, read_marker, select

# bnlint's "use every core" spelling; change here if the CLI settles otherwise.
ALL_CORES = ("--jobs", "0")
BNLINT_QUIET = ("--exit-zero", "--quiet")

# Tools that get their own venv under bench/.cache/venvs/, each with every
# dependency pinned and installed with --no-deps, so nothing can pull in torch.
# TorchFix 0.7.0 pins libcst<1.6 while bnlint uses a newer one (it declares no
# torch dependency, but a later release might). The flake8 venv is flake8 with
# only its default plugins: the baseline that shows what the BNL plugin costs.
FLAKE8_PINS = ("flake8==7.5.0", "pyflakes==4.1.0", "pycodestyle==2.15.0", "mccabe==0.7.0")
VENV_PINS = {
    "torchfix": ("torchfix==0.7.0", "libcst==1.5.1", "PyYAML==6.0.3", *FLAKE8_PINS),
    "flake8-baseline": FLAKE8_PINS,
}
VENVS = CACHE / "venvs"
BASELINE = "bnlint-cold-all"
TOOL_KEYS = (
    "bnlint-cold-1",
    BASELINE,
    "bnlint-warm",
    "bnlint-touched",
    "flake8",
    "flake8-baseline",
    "torchfix",
    "ruff",
    "parse-floor",
    "read-floor",
)


@dataclass
class Tool:
    key: str
    label: str
    argv: list[str]
    unavailable: str = ""
    note: str = ""
    ok_codes: tuple[int, ...] = (0,)
    # Wraps each timed run; used to change a file before and restore it after.
    around: Callable[[], AbstractContextManager[None]] = nullcontext
    seconds: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)


@dataclass
class Outcome:
    seconds: float
    rss_mb: float
    error: str


def kill_group(pid: int) -> None:
    with suppress(ProcessLookupError):  # it may end between the deadline and the kill
        os.killpg(pid, signal.SIGKILL)


def run_timed(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float, ok: tuple[int, ...] = (0,)
) -> Outcome:
    """Run argv once; wall time, the tree's peak RSS, and an error or ''."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # its own process group, so a timeout kills workers too
        )
        timer = threading.Timer(timeout, kill_group, (proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # rusage of this child's tree only
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    error = ""
    if proc.returncode not in ok:
        why = "timed out" if seconds >= timeout else f"exit {proc.returncode}"
        error = f"{why}: {lines[-1] if lines else 'no stderr'}"
    return Outcome(seconds, usage.ru_maxrss / 1024, error)


def first_line(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"n/a ({exc})"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else "n/a"


def venv_bin(key: str, program: str) -> str:
    return str(VENVS / key / "bin" / program)


def ensure_venv(key: str) -> str:
    """Create the venv for tool `key` if needed; '' when ready, else why not."""
    venv = VENVS / key
    done = venv / ".complete"
    if done.exists():
        return ""
    shutil.rmtree(venv, ignore_errors=True)
    pip = [venv_bin(key, "python"), "-m", "pip", "--disable-pip-version-check"]
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [*pip, "install", "--quiet", "--no-deps", "--only-binary", ":all:", *VENV_PINS[key]],
        [*pip, "check"],
    ]
    print(f"setting up the {key} venv ...", file=sys.stderr, flush=True)
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()
            shutil.rmtree(venv, ignore_errors=True)
            return f"venv setup failed at `{' '.join(step[2:5])}`: {tail[-1] if tail else ''}"
    done.touch()
    return ""


def median_file(root: Path) -> Path:
    """The median-sized .py file: a typical edit, neither trivial nor the worst case."""
    files = sorted(root.rglob("*.py"), key=lambda p: (p.stat().st_size, str(p)))
    return files[len(files) // 2]


@contextmanager
def touched(path: Path, counter: Iterator[int], settle: Callable[[], object]) -> Iterator[None]:
    """Append a fresh comment (new content hash each time), then restore the file.

    After restoring, `settle` re-runs bnlint untimed so the next warm run finds
    a cache that matches the files again.
    """
    original = path.read_bytes()
    path.write_bytes(original + f"\n# bnlint bench touch {next(counter)}\n".encode())
    try:
        yield
    finally:
        path.write_bytes(original)
        settle()


def installed(program: str) -> str | None:
    """The script pip installed for ``program`` beside this interpreter, else the
    one on PATH. A version manager's shim on PATH (pyenv's is a shell script)
    would add some 0.1 s to each run, which TorchFix, run from its venv, does
    not pay."""
    script = Path(sysconfig.get_path("scripts")) / program
    return str(script) if os.access(script, os.X_OK) else shutil.which(program)


def bnlint_tools(target: str) -> list[Tool]:
    exe = installed("bnlint")
    cold = [exe or "bnlint", "--no-cache"]
    warm = [exe or "bnlint", *ALL_CORES, *BNLINT_QUIET, target]
    tools = [
        Tool("bnlint-cold-1", "bnlint cold, 1 job", [*cold, "--jobs", "1", *BNLINT_QUIET, target]),
        Tool(BASELINE, "bnlint cold, all cores", [*cold, *ALL_CORES, *BNLINT_QUIET, target]),
        Tool("bnlint-warm", "bnlint warm, nothing changed", warm),
        Tool("bnlint-touched", "bnlint warm, one file changed", warm),
    ]
    if exe is None:
        for tool in tools:
            tool.unavailable = "bnlint not on PATH (pip install -e .)"
    return tools


def prepare_warm(
    tools: list[Tool], target: str, work: Path, env: dict[str, str], timeout: float
) -> None:
    """Fill bnlint's cache once, and arm the one-file change for the touched runs."""
    warm = [t for t in tools if t.key in ("bnlint-warm", "bnlint-touched") and not t.unavailable]
    if not warm:
        return
    fill = run_timed(warm[0].argv, work, env, timeout)
    changed = median_file(work / target)
    counter = itertools.count()
    for tool in warm:
        tool.unavailable = fill.error and f"cache fill failed: {fill.error}"
        if tool.key == "bnlint-touched":
            tool.note = f"changes {changed.relative_to(work / target)}"
            resettle = partial(run_timed, tool.argv, work, env, timeout)
            tool.around = partial(touched, changed, counter, resettle)


def missing(program: str) -> str:
    return "" if installed(program) else f"{program} not installed"


def other_tools(target: str, venv_errors: dict[str, str]) -> list[Tool]:
    floor = [sys.executable, str(Path(__file__).resolve()), "--floor"]
    flake8, ruff_exe = installed("flake8") or "flake8", installed("ruff") or "ruff"
    has_plugin = "bnlint" in first_line([flake8, "--version"])
    ruff = [ruff_exe, "check", "--select", "ALL", "--no-cache", "--exit-zero", "--quiet", target]
    no_libcst = "" if importlib.util.find_spec("libcst") else "libcst not installed"
    return [
        Tool(
            "flake8",
            "flake8 --select BNL",
            [flake8, "--select", "BNL", "--exit-zero", target],
            unavailable=missing("flake8"),
            note="pyflakes and pycodestyle run too" if has_plugin else "no BNL plugin registered",
        ),
        Tool(
            "flake8-baseline",
            "flake8 without the BNL plugin",
            [venv_bin("flake8-baseline", "flake8"), "--select", "BNL", "--exit-zero", target],
            unavailable=venv_errors["flake8-baseline"],
            note="own venv: pyflakes and pycodestyle only",
        ),
        Tool(
            "torchfix",
            "TorchFix --select ALL",
            [venv_bin("torchfix", "torchfix"), "--select", "ALL", target],
            unavailable=venv_errors["torchfix"],
            note='parses only files containing "torch"',
            ok_codes=(0, 1),  # 1 = some file failed to parse; the run still counts
        ),
        Tool("ruff", "ruff check --select ALL", ruff, unavailable=missing("ruff")),
        Tool("parse-floor", "libcst.parse_module loop", [*floor, "parse", target], no_libcst),
        Tool("read-floor", "read-only loop", [*floor, "read", target]),
    ]


def measure(tools: list[Tool], work: Path, env: dict[str, str], runs: int, timeout: float) -> None:
    for run in range(runs):
        for tool in tools:
            if tool.unavailable:
                continue
            print(f"  run {run + 1}/{runs}: {tool.label} ", end="", file=sys.stderr, flush=True)
            with tool.around():
                outcome = run_timed(tool.argv, work, env, timeout, tool.ok_codes)
            print(f"{outcome.seconds:.2f} s {outcome.error}", file=sys.stderr, flush=True)
            if outcome.error:
                tool.unavailable = outcome.error
                continue
            tool.seconds.append(outcome.seconds)
            tool.rss_mb.append(outcome.rss_mb)


def ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}" if base else "-"


def corpus_table(tools: list[Tool]) -> list[str]:
    base = next((t for t in tools if t.key == BASELINE and t.seconds), None)
    base_s = statistics.median(base.seconds) if base else None
    base_mb = statistics.median(base.rss_mb) if base else None
    rows = [
        "| tool | median s | x time | min-max s | peak RSS MB | x RSS | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for t in tools:
        # A tool that failed after some good runs keeps its figures and shows why it stopped.
        notes = "; ".join(filter(None, [t.note, t.unavailable])).replace("|", "\\|")
        if not t.seconds:
            rows.append(f"| {t.label} | n/a | | | n/a | | {notes} |")
            continue
        s, mb = statistics.median(t.seconds), statistics.median(t.rss_mb)
        spread = f"{min(t.seconds):.2f}-{max(t.seconds):.2f}"
        cells = [
            t.label,
            f"{s:.2f}",
            ratio(s, base_s),
            spread,
            f"{mb:.0f}",
            ratio(mb, base_mb),
            notes,
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def bench_corpus(
    name: str, version: str, args: argparse.Namespace, venv_errors: dict[str, str]
) -> list[str]:
    stats = read_marker(name, version)
    if stats is None:
        return [f"## {name} {version}", "", "not fetched: run `python bench/fetch_corpus.py`", ""]
    target = f"{name}-{version}"
    with tempfile.TemporaryDirectory(prefix="bnlint-bench-") as tmp:
        work = Path(tmp)
        shutil.copytree(corpus_dir(name, version), work / target)
        # Keep every tool's user-level cache inside the temp dir.
        env = {**os.environ, "XDG_CACHE_HOME": str(work / "xdg-cache")}
        print(f"{target}: preparing", file=sys.stderr, flush=True)
        tools = bnlint_tools(target) + other_tools(target, venv_errors)
        tools = [t for t in tools if not args.tools or t.key in args.tools]
        prepare_warm(tools, target, work, env, args.timeout)
        measure(tools, work, env, args.runs, args.timeout)
    size = f"{stats.files} files, {stats.lines:,} lines, {stats.bytes / 1e6:.1f} MB"
    return [f"## {name} {version} ({size})", "", *corpus_table(tools), ""]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def compile_bnlint() -> None:
    """Write bnlint's bytecode, as pip does when it installs a package. An
    editable install run under PYTHONDONTWRITEBYTECODE (set on this machine)
    has none, and every bnlint run would compile its sources again: about
    0.1 s that no installed copy pays."""
    spec = importlib.util.find_spec("bnlint")
    if spec is not None and spec.origin is not None:
        compileall.compile_dir(Path(spec.origin).parent, quiet=1)


def header(args: argparse.Namespace) -> list[str]:
    return [
        "# bnlint speed benchmark",
        "",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- machine: {len(os.sched_getaffinity(0))} cores (nproc), {cpu_model()},"
        f" {platform.system()} {platform.release()}, Python {platform.python_version()}",
        f"- runs per tool: {args.runs}, interleaved; figures are medians",
        f"- bnlint: {first_line(['bnlint', '--version'])}, its bytecode compiled as pip does",
        f"- flake8: {first_line(['flake8', '--version'])}",
        f"- {first_line(['ruff', '--version'])}",
        f"- TorchFix {first_line([venv_bin('torchfix', 'torchfix'), '--version'])}"
        f" (own venv: {', '.join(VENV_PINS['torchfix'][1:3])})",
        f"- libcst {importlib.metadata.version('libcst')} for the parse floor",
        "- x = ratio to bnlint cold, all cores; peak RSS = largest single process"
        " of the child's tree (os.wait4 ru_maxrss)",
        "",
    ]


def floor_loop(kind: str, root: Path) -> None:
    """The floors: read every .py file, or read and parse it with libcst, in one process."""
    files = sorted(root.rglob("*.py"))
    if kind == "read":
        total = sum(len(path.read_bytes()) for path in files)
        print(f"read {len(files)} files, {total} bytes")
        return
    import libcst  # only here: the read floor must not pay for importing it

    failed = 0
    for path in files:
        try:
            libcst.parse_module(path.read_bytes())
        except libcst.ParserSyntaxError:
            failed += 1
    print(f"parsed {len(files)} files, {failed} failed")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", action="append", default=[], help="corpus name (repeatable; default: all)"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs per tool (default: 3)")
    parser.add_argument(
        "--tools", default="", help=f"comma-separated subset of: {', '.join(TOOL_KEYS)}"
    )
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds before a run is killed"
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    parser.add_argument("--floor", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.tools = set(filter(None, args.tools.split(",")))
    if args.tools - set(TOOL_KEYS):
        parser.error(f"unknown tools: {', '.join(sorted(args.tools - set(TOOL_KEYS)))}")
    return args


def main() -> None:
    args = parse_args()
    if args.floor:
        floor_loop(args.floor[0], Path(args.floor[1]))
        return
    venv_errors = {
        key: ensure_venv(key) if not args.tools or key in args.tools else "not selected"
        for key in VENV_PINS
    }
    compile_bnlint()
    lines = header(args)
    for name, version, _ in select(args.corpus):
        lines += bench_corpus(name, version, args, venv_errors)
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
