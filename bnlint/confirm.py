"""``bnlint confirm SCRIPT [ARGS]``: lint a script's project, run the script under
:class:`bnlint.runtime.Monitor`, and say which static findings the run confirmed.

Every static finding gets a status:

- CONFIRMED: the monitor reported the same code there (the evidence is shown);
- CONTRADICTED: the line ran and the monitor saw the opposite (only for what it
  measures: BNL001 an evaluation pass in eval mode, BNL002 one without autograd,
  BNL005 an export in eval mode);
- UNCONFIRMED: the line ran, but the run gave no verdict either way;
- NOT REACHED: the line never ran, or no runtime check exists for the code.

Runtime findings with no static one are listed as runtime-only. A runtime
finding confirms the static findings of the same code and file that match it
best: at the same line, then inside the statement the static finding points at
(a loop whose model call is in its body), then in the same function (BNL003 is
reported at ``model.eval()`` statically and at the training call at run time).

The script runs in this process as ``python SCRIPT ARGS`` would (``sys.argv``,
``__name__ == "__main__"``, its folder first on ``sys.path``); all of that, and
the modules imported from its folder, is restored afterwards. Exit status: 1
when something was confirmed or found at run time only, or when the script
failed (an uncaught exception or a non-zero ``sys.exit``: the run is incomplete,
so a clean report would mean nothing); a run stopped by ``--timeout`` counts as
finished, since the bound was asked for; otherwise 0.
"""

from __future__ import annotations

import ast
import json
import os
import runpy
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import CodeType, FrameType, TracebackType
from typing import Any

from bnlint.config import Config
from bnlint.diagnostic import Diagnostic
from bnlint.discovery import discover
from bnlint.engine import lint_files

CONFIRMED, CONTRADICTED = "confirmed", "contradicted"
UNCONFIRMED, NOT_REACHED, RUNTIME_ONLY = "unconfirmed", "not reached", "runtime-only"
# The codes Monitor can report (bnlint/runtime/monitor.py); the others have no runtime check.
MONITORED_CODES = frozenset(
    {"BNL001", "BNL002", "BNL003", "BNL005", "BNL101", "BNL201", "BNL203", "BNL301"}
)
# Frames shown of a failing script's traceback (the innermost ones).
TRACEBACK_FRAMES = 6


class ScriptTimedOut(BaseException):
    """Raised in the main thread when --timeout expires; a BaseException so that the
    script's own ``except Exception`` does not swallow it."""


class Ending(str, Enum):
    FINISHED = "finished"
    EXITED = "exited"  # sys.exit with a non-zero status
    FAILED = "failed"  # an uncaught exception
    TIMED_OUT = "timed out"


@dataclass
class RunOutcome:
    ending: Ending = Ending.FINISHED
    exit_status: int = 0
    error: str = ""  # the summarised traceback, or the sys.exit message
    seconds: float = 0.0
    findings: list[Diagnostic] = field(default_factory=list)
    sites: dict[tuple[str, int], Any] = field(default_factory=dict)  # Monitor.sites, by real path
    lines_run: set[tuple[str, int]] = field(default_factory=set)
    files_run: set[str] = field(default_factory=set)  # watched files of which some code ran

    @property
    def script_failed(self) -> bool:
        return self.ending in (Ending.EXITED, Ending.FAILED)


@dataclass
class Verdict:
    static: Diagnostic | None  # None: a runtime-only finding
    status: str
    reason: str = ""
    evidence: list[Diagnostic] = field(default_factory=list)


def confirm(
    script: Path,
    args: list[str],
    config: Config,
    *,
    limit_batches: int | None = None,
    timeout: float | None = None,
    output_format: str = "text",
) -> tuple[str, int]:
    """Lint the script's folder, run the script, judge: (the report, the exit status)."""
    static = lint_project(script, config)
    watched: dict[str, set[int]] = {}
    for finding in static:
        watched.setdefault(_real(finding.path), set()).add(finding.line)
    outcome = run_script(
        script, args, watched_lines=watched, limit_batches=limit_batches, timeout=timeout
    )
    verdicts = judge(static, outcome)
    report = (format_json if output_format == "json" else format_text)(script, verdicts, outcome)
    return report, exit_code(verdicts, outcome)


def lint_project(script: Path, config: Config) -> list[Diagnostic]:
    """The static findings of the script's folder, as ``bnlint check FOLDER`` finds them."""
    results = lint_files(discover([script.parent, script], config), config, jobs=1)
    return sorted((d for r in results for d in r.diagnostics), key=lambda d: d.sort_key)


# -- running the script ---------------------------------------------------------------


def run_script(
    script: Path,
    args: list[str],
    *,
    watched_lines: dict[str, set[int]],
    limit_batches: int | None = None,
    timeout: float | None = None,
) -> RunOutcome:
    """Run ``script`` under the monitor. ``watched_lines``: real path -> the lines
    whose execution to record (the static findings' lines). Needs torch: raises
    ImportError with the install message without it."""
    from bnlint.runtime import Monitor  # torch only for this command

    monitor = Monitor(limit_batches=limit_batches)
    tracer = LineTracer(watched_lines)
    started = time.perf_counter()
    with _as_main_script(script, args), _grad_mode_restored(), monitor, tracer:
        outcome = _execute(script, timeout)
    outcome.seconds = time.perf_counter() - started
    outcome.findings = [d.with_path(_shown(d.path)) for d in monitor.findings()]
    outcome.sites = {(_real(path), line): site for (path, line), site in monitor.sites.items()}
    outcome.lines_run, outcome.files_run = tracer.ran, tracer.files
    return outcome


def _execute(script: Path, timeout: float | None) -> RunOutcome:
    outcome = RunOutcome()
    try:
        with _deadline(timeout):
            # Absolute, as Python >= 3.9 sets ``__file__`` of the main script.
            runpy.run_path(_real(str(script)), run_name="__main__")
    except SystemExit as exit_:
        _record_exit(outcome, exit_.code)
    except ScriptTimedOut:
        outcome.ending = Ending.TIMED_OUT
        outcome.error = f"stopped after --timeout {timeout:g} s"
    except BaseException as error:  # the script's own failure, KeyboardInterrupt included
        outcome.ending = Ending.FAILED
        outcome.exit_status = 1
        outcome.error = summarise_traceback(error, script)
    return outcome


def _record_exit(outcome: RunOutcome, code: object) -> None:
    """``sys.exit(code)`` as Python reports it: None is 0, a non-integer is printed, status 1."""
    if code is None or code == 0:
        return
    outcome.ending = Ending.EXITED
    if isinstance(code, int):
        outcome.exit_status = code
    else:
        outcome.exit_status, outcome.error = 1, str(code)


def summarise_traceback(error: BaseException, script: Path) -> str:
    """The traceback from the script's first frame on (not runpy's), innermost frames only."""
    tb: TracebackType | None = error.__traceback__
    script_path = _real(str(script))
    while tb is not None and _real(tb.tb_frame.f_code.co_filename) != script_path:
        tb = tb.tb_next
    lines = traceback.format_exception(type(error), error, tb or error.__traceback__)
    frames = traceback.extract_tb(tb or error.__traceback__)
    if len(frames) > TRACEBACK_FRAMES:
        shown = traceback.format_list(frames[-TRACEBACK_FRAMES:])
        skipped = f"  ... {len(frames) - TRACEBACK_FRAMES} outer frames not shown\n"
        lines = [lines[0], skipped, *shown, *traceback.format_exception_only(type(error), error)]
    return "".join(lines).rstrip()


@contextmanager
def _as_main_script(script: Path, args: list[str]) -> Iterator[None]:
    """``sys.argv`` and ``sys.path`` as ``python SCRIPT ARGS`` sets them; restored
    afterwards with the working directory, and the modules imported from the
    script's folder forgotten."""
    folder = _real(str(script.parent))
    argv, path, path_entries = sys.argv, sys.path, sys.path[:]
    cwd, modules = os.getcwd(), set(sys.modules)
    sys.argv = [str(script), *args]
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.argv, sys.path = argv, path
        sys.path[:] = path_entries
        os.chdir(cwd)
        # A later run of another script may have a sibling module of the same name.
        for name in set(sys.modules) - modules:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file and _real(file).startswith(folder + os.sep):
                del sys.modules[name]


@contextmanager
def _grad_mode_restored() -> Iterator[None]:
    """Autograd as it was before the script: the script may switch it off for
    good (``torch.set_grad_enabled(False)``), and a timeout that lands inside
    ``no_grad().__enter__`` leaves it off with no ``__exit__`` to follow."""
    import torch

    enabled = torch.is_grad_enabled()
    try:
        yield
    finally:
        torch.set_grad_enabled(enabled)


@contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise ScriptTimedOut in the main thread after ``seconds`` (POSIX interval timer)."""
    if seconds is None:
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise ScriptTimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def timeout_supported() -> bool:
    """--timeout needs SIGALRM, which only the main thread of a POSIX process can receive."""
    import threading

    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


class LineTracer:
    """Records which of the watched lines run, with ``sys.settrace``. Only code
    objects of watched files that span a watched line get a line tracer, so
    torch's own Python code costs one dictionary lookup per call."""

    def __init__(self, watched: dict[str, set[int]]) -> None:
        self.watched = watched
        self.ran: set[tuple[str, int]] = set()
        self.files: set[str] = set()
        self._paths: dict[str, str | None] = {}  # co_filename -> watched real path
        self._codes: dict[CodeType, bool] = {}  # whether the code object spans a watched line
        self._previous: Any = None

    def __enter__(self) -> LineTracer:
        self._previous = sys.gettrace()
        sys.settrace(self._on_call)
        return self

    def __exit__(self, *exc_info: object) -> None:
        sys.settrace(self._previous)

    def _on_call(self, frame: FrameType, event: str, arg: Any) -> Callable | None:
        code = frame.f_code
        spans = self._codes.get(code)
        if spans is None:
            spans = self._codes[code] = self._spans_watched_line(code)
        return self._on_line if spans else None

    def _spans_watched_line(self, code: CodeType) -> bool:
        path = self._path(code.co_filename)
        if path is None:
            return False
        self.files.add(path)
        lines = {line for _, _, line in code.co_lines() if line is not None}
        return not lines.isdisjoint(self.watched[path])

    def _path(self, filename: str) -> str | None:
        if filename not in self._paths:
            real = _real(filename)
            self._paths[filename] = real if real in self.watched else None
        return self._paths[filename]

    def _on_line(self, frame: FrameType, event: str, arg: Any) -> Callable:
        if event == "line":
            path = self._paths[frame.f_code.co_filename]
            if path is not None and frame.f_lineno in self.watched[path]:
                self.ran.add((path, frame.f_lineno))
        return self._on_line


# -- matching runtime findings to static ones -----------------------------------------


class SourceSpans:
    """Line spans of a file's statements and functions, parsed once per file."""

    def __init__(self) -> None:
        self._trees: dict[str, list[ast.AST]] = {}

    def statement(self, path: str, line: int) -> tuple[int, int]:
        """The innermost statement containing ``line`` (a loop header: the whole loop)."""
        return self._innermost(path, line, ast.stmt)

    def function(self, path: str, line: int) -> tuple[int, int]:
        """The innermost function containing ``line``; the whole file outside functions."""
        return self._innermost(path, line, (ast.FunctionDef, ast.AsyncFunctionDef))

    def _innermost(self, path: str, line: int, kinds: type | tuple[type, ...]) -> tuple[int, int]:
        best = (0, sys.maxsize)
        for node in self._nodes(path):
            if isinstance(node, kinds) and node.lineno <= line <= (node.end_lineno or line):
                span = (node.lineno, node.end_lineno or line)
                if span[1] - span[0] <= best[1] - best[0]:
                    best = span
        return best

    def _nodes(self, path: str) -> list[ast.AST]:
        if path not in self._trees:
            try:
                tree = ast.parse(Path(path).read_bytes())
                self._trees[path] = [n for n in ast.walk(tree) if isinstance(n, ast.stmt)]
            except (OSError, SyntaxError, ValueError):
                self._trees[path] = []
        return self._trees[path]


def judge(static: list[Diagnostic], outcome: RunOutcome) -> list[Verdict]:
    """A verdict per static finding, in order, then the runtime-only findings."""
    spans = SourceSpans()
    matched: dict[int, list[Diagnostic]] = {}  # index in static -> runtime evidence
    runtime_only: list[Diagnostic] = []
    for finding in outcome.findings:
        indexes = _best_matches(finding, static, spans)
        for index in indexes:
            matched.setdefault(index, []).append(finding)
        if not indexes:
            runtime_only.append(finding)
    verdicts = [_verdict(d, matched.get(i, []), outcome, spans) for i, d in enumerate(static)]
    verdicts += [Verdict(None, RUNTIME_ONLY, evidence=[d]) for d in runtime_only]
    return verdicts


def _best_matches(finding: Diagnostic, static: list[Diagnostic], spans: SourceSpans) -> list[int]:
    """The static findings of the same code and file closest to the runtime one."""
    path = _real(finding.path)
    candidates = [
        i for i, d in enumerate(static) if d.code == finding.code and _real(d.path) == path
    ]
    for reach in (_at_line, spans.statement, spans.function):
        close = [i for i in candidates if _within(finding.line, reach(path, static[i].line))]
        if close:
            return close
    return []


def _at_line(path: str, line: int) -> tuple[int, int]:
    return (line, line)


def _within(line: int, span: tuple[int, int]) -> bool:
    return span[0] <= line <= span[1]


def _verdict(
    static: Diagnostic, evidence: list[Diagnostic], outcome: RunOutcome, spans: SourceSpans
) -> Verdict:
    if evidence:
        return Verdict(static, CONFIRMED, evidence=evidence)
    if static.code not in MONITORED_CODES:
        return Verdict(static, NOT_REACHED, f"no runtime check exists for {static.code}")
    path = _real(static.path)
    if path not in outcome.files_run:
        return Verdict(static, NOT_REACHED, "the run never loaded this file")
    if (path, static.line) not in outcome.lines_run:
        return Verdict(static, NOT_REACHED, "the line never ran")
    contradiction = _contradiction(static.code, path, spans.statement(path, static.line), outcome)
    if contradiction:
        return Verdict(static, CONTRADICTED, contradiction)
    return Verdict(
        static, UNCONFIRMED, "the line ran; the run showed neither the problem nor the opposite"
    )


def _contradiction(code: str, path: str, span: tuple[int, int], outcome: RunOutcome) -> str:
    """What the monitor saw at the lines of ``span`` that disproves ``code``, or ""."""
    sites = [s for (p, line), s in outcome.sites.items() if p == path and _within(line, span)]
    evaluations = sum(s.evaluations for s in sites)
    if code == "BNL001":
        sensitive = sum(s.sensitive_evaluations for s in sites)
        if sensitive and not sum(s.train_mode_evaluations for s in sites):
            return f"{_passes(sensitive)} ran with every norm/dropout layer in eval mode"
    if code == "BNL002" and evaluations and not sum(s.grad_evaluations for s in sites):
        return f"{_passes(evaluations)} ran with autograd off"
    exports = sum(s.exports for s in sites)
    if code == "BNL005" and exports and not sum(s.train_mode_exports for s in sites):
        return f"{exports} export(s) here ran with no norm/dropout layer in training mode"
    return ""


def _passes(count: int) -> str:
    return "the evaluation pass here" if count == 1 else f"all {count} evaluation passes here"


def _real(path: str) -> str:
    return os.path.realpath(path)


# -- reporting ------------------------------------------------------------------------


def _shown(path: str) -> str:
    """``path`` relative to the working directory when it is inside it, as `check` prints."""
    relative = os.path.relpath(_real(path))
    return path if relative.startswith(os.pardir) else relative


def _location(d: Diagnostic) -> str:
    return f"{_shown(d.path)}:{d.line}:{d.column}"


def _evidence_text(d: Diagnostic) -> str:
    context = ", ".join(f"{key} {d.extra[key]}" for key in ("model", "module") if d.extra.get(key))
    return f"{_location(d)}: {d.message}" + (f" [{context}]" if context else "")


def describe_run(script: Path, outcome: RunOutcome) -> str:
    took = f"in {outcome.seconds:.1f} s"
    if outcome.ending is Ending.FINISHED:
        head = f"Ran {script} {took}: it finished."
    elif outcome.ending is Ending.TIMED_OUT:
        head = f"Ran {script} {took}: {outcome.error}; findings are from the part that ran."
    elif outcome.ending is Ending.EXITED:
        head = f"Ran {script} {took}: it exited with status {outcome.exit_status}."
    else:
        head = f"Ran {script} {took}: it failed with an uncaught exception."
    detail = outcome.error if outcome.ending in (Ending.EXITED, Ending.FAILED) else ""
    return head + ("\n" + _indent(detail) if detail else "")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def format_text(script: Path, verdicts: list[Verdict], outcome: RunOutcome) -> str:
    lines = [describe_run(script, outcome)]
    for verdict in verdicts:
        lines.extend(_verdict_lines(verdict))
    counts = {
        status: 0 for status in (CONFIRMED, CONTRADICTED, UNCONFIRMED, NOT_REACHED, RUNTIME_ONLY)
    }
    for verdict in verdicts:
        counts[verdict.status] += 1
    lines.append(", ".join(f"{count} {status}" for status, count in counts.items()) + ".")
    return "\n".join(lines) + "\n"


def _verdict_lines(verdict: Verdict) -> list[str]:
    if verdict.static is None:
        finding = verdict.evidence[0]
        return [f"{_location(finding)}: {finding.code} RUNTIME ONLY {_evidence_text(finding)}"]
    d = verdict.static
    status = verdict.status.upper()
    lines = [f"{_location(d)}: {d.code} {status} {d.message}"]
    lines += [f"    runtime: {_evidence_text(e)}" for e in verdict.evidence]
    if verdict.reason:
        lines.append(f"    {verdict.reason}")
    return lines


def format_json(script: Path, verdicts: list[Verdict], outcome: RunOutcome) -> str:
    findings = []
    for verdict in verdicts:
        data = verdict.static.to_json() if verdict.static else verdict.evidence[0].to_json()
        data["status"] = verdict.status
        data["reason"] = verdict.reason
        data["evidence"] = [e.to_json() for e in verdict.evidence] if verdict.static else []
        findings.append(data)
    run = {
        "script": str(script),
        "ending": outcome.ending.value,
        "exit_status": outcome.exit_status,
        "error": outcome.error,
        "seconds": round(outcome.seconds, 3),
    }
    return json.dumps({"run": run, "findings": findings}, indent=2) + "\n"


def exit_code(verdicts: list[Verdict], outcome: RunOutcome) -> int:
    """1 when the run confirmed or found something, or the script failed; else 0."""
    found = any(v.status in (CONFIRMED, RUNTIME_ONLY) for v in verdicts)
    return 1 if found or outcome.script_failed else 0
