"""The core every front end calls: source text in, diagnostics out.

One parse and one semantic model per file; files in which no selected rule's
trigger text appears are only syntax-checked with the much faster ``ast``.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from bnlint.analysis.model import SemanticModel
from bnlint.cache import ResultCache, Slot
from bnlint.config import Config
from bnlint.diagnostic import Diagnostic, Edit, Fix, Severity
from bnlint.noqa import NoqaMap, has_skip_file
from bnlint.parallel import TaskRunner
from bnlint.rules import ALL_RULES, INPUT_CODES
from bnlint.rules.base import Anchor, Finding, FixPlan, Rule
from bnlint.source import SourceFile, UnreadableSource, line_starts, line_text, read_source


class InternalError(Exception):
    """A bug in bnlint while linting one file; the other files' results stand."""


@dataclass
class FileResult:
    path: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    source: SourceFile | None = None
    internal_error: str | None = None  # a formatted traceback


def lint_source(
    source: str, path: str, config: Config, package: str | None = None, noqa: bool = True
) -> list[Diagnostic]:
    """Lint one file's text. ``path`` is used for reporting and per-file-ignores;
    ``noqa=False`` leaves ``# noqa`` comments to the caller (flake8 has its own)."""
    if has_skip_file(source):
        return []
    rules = _rules_for(source, path, config)
    if not rules:
        error = _ast_syntax_error(source)
        return _select([_syntax_diagnostic(path, *error)] if error else [], path, config)
    try:
        module = cst.parse_module(source)
    except (cst.ParserSyntaxError, RecursionError, MemoryError) as error:
        return _select(
            [_syntax_diagnostic(path, *_describe_parse_error(source, error))], path, config
        )
    model = SemanticModel(module, path, package)
    diagnostics = []
    for rule in rules:
        try:
            findings = list(rule.check(model))
        except RecursionError as error:
            raise InternalError(f"{rule.code} ran out of stack on {path}") from error
        diagnostics.extend(_to_diagnostic(rule, f, model, source, path) for f in findings)
    selected = sorted(_select(diagnostics, path, config), key=lambda d: d.sort_key)
    return _apply_noqa(selected, source) if noqa else selected


def lint_files(
    files: list[Path], config: Config, jobs: int = 1, cache: ResultCache | None = None
) -> list[FileResult]:
    """Lint ``files`` (from ``discovery.discover``), results in the same order.
    Unchanged files come from ``cache``; the others are linted in ``jobs`` worker
    processes (0: one per core; small runs stay in this process). One file's
    crash is recorded in its result and does not stop the others."""
    results: dict[Path, FileResult] = {}
    tasks: list[LintTask] = []
    if cache is None:
        tasks = [LintTask(path) for path in files]
    else:
        for path, package in zip(files, packages_of(files), strict=True):
            cached, slot = cache.lookup(path, package)
            hit = None if cached is None else _cached_result(path, cached)
            if hit is None:
                tasks.append(LintTask(path, slot))
            else:
                results[path] = hit
    linted = TaskRunner(_lint_task, (config, cache), _crashed).run(tasks, jobs)
    results.update((task.path, result) for task, result in zip(tasks, linted, strict=True))
    return [results[path] for path in files]


@dataclass(frozen=True)
class LintTask:
    path: Path
    slot: Slot | None = None  # where the result goes in the cache


def _lint_task(shared: tuple[Config, ResultCache | None], task: LintTask) -> FileResult:
    config, cache = shared
    result = lint_file(task.path, config)
    if cache is not None and task.slot is not None and result.source is not None:
        cache.store(task.slot, result.source, result.diagnostics)
    if not result.diagnostics:
        result.source = None  # nothing to show or fix: do not keep (or ship back) the text
    return result


def _crashed(task: LintTask, traceback: str) -> FileResult:
    """A bug in bnlint: keep the traceback, go on with the other files."""
    return FileResult(str(task.path), internal_error=traceback)


def _cached_result(path: Path, diagnostics: list[Diagnostic]) -> FileResult | None:
    """A cache hit; a file with findings is read, for --show-source and --fix."""
    if not diagnostics:
        return FileResult(str(path))
    try:
        return FileResult(str(path), diagnostics, read_source(path))
    except UnreadableSource:
        return None


def lint_file(path: Path, config: Config) -> FileResult:
    """Read, decode and lint one file; bad input becomes a BNL902 diagnostic."""
    shown = str(path)
    try:
        source = read_source(path)
    except UnreadableSource as error:
        return FileResult(
            shown, _select([input_diagnostic(shown, "BNL902", str(error))], shown, config)
        )
    if path.suffix == ".ipynb":
        from bnlint.notebook import lint_notebook  # notebook.py builds on lint_source

        diagnostics = lint_notebook(source.text, shown, config, package_of(path))
    else:
        diagnostics = lint_source(source.text, shown, config, package_of(path))
    return FileResult(shown, diagnostics, source)


def package_of(path: Path) -> str | None:
    """The dotted package a file belongs to, from the ``__init__.py`` files above it."""
    parts: list[str] = []
    directory = path.resolve().parent
    while (directory / "__init__.py").is_file():
        parts.append(directory.name)
        directory = directory.parent
    return ".".join(reversed(parts)) or None


def packages_of(files: list[Path]) -> list[str | None]:
    """``package_of`` of each file, looked up once per folder (a symbolic link
    on its own: its package is where it points)."""
    by_folder: dict[Path, str | None] = {}
    packages = []
    for path in files:
        if path.is_symlink():
            packages.append(package_of(path))
            continue
        if path.parent not in by_folder:
            by_folder[path.parent] = package_of(path)
        packages.append(by_folder[path.parent])
    return packages


# -- rules and findings ---------------------------------------------------------


def _rules_for(source: str, path: str, config: Config) -> list[Rule]:
    return [
        rule()
        for rule in ALL_RULES
        if config.is_enabled(rule.code, path)
        and (not rule.triggers or any(trigger in source for trigger in rule.triggers))
    ]


def _to_diagnostic(
    rule: Rule, finding: Finding, model: SemanticModel, source: str, path: str
) -> Diagnostic:
    where = model.positions[finding.node]
    fix = _resolve_fix(finding.fix, model, source) if finding.fix else None
    return Diagnostic(
        path=path,
        line=where.start.line,
        column=where.start.column + 1,
        end_line=where.end.line,
        end_column=where.end.column + 1,
        code=rule.code,
        name=rule.name,
        message=finding.message,
        severity=finding.severity or rule.severity,
        fix=fix,
        extra={"noqa_lines": finding.noqa_lines} if finding.noqa_lines else {},
    )


def _resolve_fix(plan: FixPlan, model: SemanticModel, source: str) -> Fix:
    starts = line_starts(source)
    newline = SourceFile(source, "utf-8").newline
    edits = []
    for edit in plan.edits:
        where = model.positions[edit.node]
        start, end = where.start, where.end
        if edit.anchor is Anchor.LINE_BEFORE:
            text = line_text(source, starts, start.line)
            indent = text[: len(text) - len(text.lstrip())]
            edits.append(Edit(start.line, 1, start.line, 1, f"{indent}{edit.text}{newline}"))
        elif edit.anchor is Anchor.BEFORE:
            edits.append(
                Edit(start.line, start.column + 1, start.line, start.column + 1, edit.text)
            )
        elif edit.anchor is Anchor.AFTER:
            edits.append(Edit(end.line, end.column + 1, end.line, end.column + 1, edit.text))
        else:
            edits.append(Edit(start.line, start.column + 1, end.line, end.column + 1, edit.text))
    return Fix(tuple(edits), plan.safe, plan.description)


def _select(diagnostics: Iterable[Diagnostic], path: str, config: Config) -> list[Diagnostic]:
    return [d for d in diagnostics if config.is_enabled(d.code, path)]


def _apply_noqa(diagnostics: list[Diagnostic], source: str) -> list[Diagnostic]:
    if not diagnostics:
        return diagnostics
    noqa = NoqaMap(source)
    kept = []
    for d in diagnostics:
        lines = (d.line, d.end_line, *d.extra.get("noqa_lines", ()))
        if not noqa.suppresses(d.code, lines):
            kept.append(d)
    return kept


# -- problems with the input ----------------------------------------------------


def input_diagnostic(
    path: str, code: str, message: str, line: int = 1, column: int = 1
) -> Diagnostic:
    name, _ = INPUT_CODES[code]
    return Diagnostic(path, line, column, line, column, code, name, message, Severity.ERROR)


def _syntax_diagnostic(path: str, line: int, column: int, message: str) -> Diagnostic:
    return input_diagnostic(path, "BNL901", f"syntax error: {message}", line, column)


def _ast_syntax_error(source: str) -> tuple[int, int, str] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes etc. are not ours to report
            ast.parse(source)
    except SyntaxError as error:
        return error.lineno or 1, error.offset or 1, error.msg
    except (RecursionError, MemoryError, ValueError) as error:
        return 1, 1, _too_complex(error)
    return None


_LIBCST_POSITION = re.compile(r"error at (\d+):(\d+)")


def _describe_parse_error(source: str, error: BaseException) -> tuple[int, int, str]:
    """Python's own message where it has one: clearer than the LibCST grammar's."""
    python_error = _ast_syntax_error(source)
    if python_error is not None:
        return python_error
    if isinstance(error, cst.ParserSyntaxError):
        match = _LIBCST_POSITION.search(error.message)
        line, column = (int(match[1]), int(match[2]) + 1) if match else (1, 1)
        return line, column, error.message.removeprefix("parser error: ").split("\n", 1)[0]
    return 1, 1, _too_complex(error)


def _too_complex(error: BaseException) -> str:
    return f"the file is too deeply nested or too large to parse ({type(error).__name__})"
