"""The core every front end calls: source text in, diagnostics out.

One parse and one semantic model per file; files in which no selected rule's
trigger text appears are only syntax-checked with the much faster ``ast``
(and, where it finds an error, LibCST's parser, which knows newer grammars).
"""

from __future__ import annotations

import ast
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import libcst as cst

from bnlint.analysis.model import SemanticModel
from bnlint.analysis.project import FileFacts, ProjectIndex
from bnlint.cache import ResultCache, Slot
from bnlint.collector import collected_after, thaw
from bnlint.config import Config
from bnlint.diagnostic import Diagnostic, Edit, Fix, Severity
from bnlint.noqa import NoqaMap, has_skip_file
from bnlint.parallel import TaskRunner, WorkerPool
from bnlint.rules import ALL_RULES, INPUT_CODES
from bnlint.rules.base import Anchor, Finding, FixPlan, Rule
from bnlint.source import SourceFile, UnreadableSource, line_starts, line_text, read_source
from bnlint.trees import KeptTrees

# LibCST needs about 0.4-0.8 GB of memory and 15-50 s per million characters;
# the largest file of the benchmark corpus has 0.34 million.
MAX_ANALYSED_CHARACTERS = 2_000_000


@dataclass
class FileResult:
    path: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    source: SourceFile | None = None
    internal_error: str | None = None  # a formatted traceback
    facts: FileFacts | None = None  # what the file tells the project index
    project: ProjectIndex | None = None  # the index it was linted with (fixes re-lint with it)


def lint_source(
    source: str,
    path: str,
    config: Config,
    package: str | None = None,
    noqa: bool = True,
    project: ProjectIndex | None = None,
) -> list[Diagnostic]:
    """Lint one file's text. ``path`` is used for reporting and per-file-ignores;
    ``noqa=False`` leaves ``# noqa`` comments to the caller (flake8 has its own);
    ``project`` holds the summaries of the project's other files (the CLI's
    project index; without it, functions of other files are unknown)."""
    return lint_source_with_facts(source, path, config, package, noqa, project)[0]


def lint_source_with_facts(
    source: str,
    path: str,
    config: Config,
    package: str | None = None,
    noqa: bool = True,
    project: ProjectIndex | None = None,
    trees: KeptTrees | None = None,
) -> tuple[list[Diagnostic], FileFacts | None]:
    """``lint_source``, and what the file tells the project index (None when the
    mode analysis did not run on it). ``trees`` keeps the tree of a file that
    a project round may re-lint, and gives it back then."""
    with collected_after() as collection:
        kept = len(trees) if trees is not None else 0
        found = _lint_source(source, path, config, package, noqa, project, trees)
        # A kept tree outlives the file, and holds no cycles to collect.
        collection.freeze_survivors = trees is not None and len(trees) > kept
        return found


class _NotAnalysed(Exception):
    """The file gets this input diagnostic (or nothing) instead of the rules' findings."""

    def __init__(self, diagnostic: Diagnostic | None) -> None:
        super().__init__(diagnostic)
        self.diagnostic = diagnostic


def _lint_source(
    source: str,
    path: str,
    config: Config,
    package: str | None,
    noqa: bool,
    project: ProjectIndex | None,
    trees: KeptTrees | None,
) -> tuple[list[Diagnostic], FileFacts | None]:
    if has_skip_file(source):
        return [], None
    rules = _rules_for(source, path, config)
    try:
        model = _model_for(source, path, package, project, trees, analysed=bool(rules))
        diagnostics = _findings(rules, model, source, path)
    except _NotAnalysed as reason:
        return _select([reason.diagnostic] if reason.diagnostic else [], path, config), None
    selected = sorted(_select(diagnostics, path, config), key=lambda d: d.sort_key)
    facts = model.project_facts()
    if trees is not None and facts is not None and facts.dependencies:
        trees.keep(path, source, model, likely=facts.sensitive)  # a project round may re-lint it
    return (_apply_noqa(selected, source) if noqa else selected), facts


def _model_for(
    source: str,
    path: str,
    package: str | None,
    project: ProjectIndex | None,
    trees: KeptTrees | None,
    analysed: bool,
) -> SemanticModel:
    """The file's semantic model, from its kept tree if a round kept one. Raises
    ``_NotAnalysed`` for a file no rule reads (``analysed`` false: only its
    syntax is checked) or one that cannot be parsed safely."""
    if analysed and len(source) > MAX_ANALYSED_CHARACTERS:
        raise _NotAnalysed(_too_large_to_analyse(path, len(source)))
    kept = trees.get(path, source) if analysed and trees is not None else None
    if kept is not None:
        return kept.for_project(project)  # its text passed the checks below in an earlier round
    # Python's parser first where nesting may be deep: past Python's limits
    # LibCST's native parser takes minutes, or overflows its stack and kills the
    # whole run (a segfault). Elsewhere it would only add a tenth to the parse.
    python_error = _ast_syntax_error(source) if not analysed or _may_nest_deeply(source) else None
    if python_error is not None and _beyond_parser_limits(python_error):
        raise _NotAnalysed(_syntax_diagnostic(path, *python_error))
    if not analysed and python_error is None:
        raise _NotAnalysed(None)
    # LibCST's grammar has the last word: the Python running bnlint may be older
    # than the code (3.12's f-strings and generics on 3.11).
    try:
        module = parse_module(source)
    except (cst.ParserSyntaxError, RecursionError, MemoryError) as error:
        where = _describe_parse_error(source, error)
        raise _NotAnalysed(_syntax_diagnostic(path, *where)) from None
    if not analysed:
        raise _NotAnalysed(None)
    return SemanticModel(module, path, package, project)


def _findings(rules: list[Rule], model: SemanticModel, source: str, path: str) -> list[Diagnostic]:
    """Every rule's findings as diagnostics, before selection and noqa."""
    # LibCST drops form feeds before a statement at column 0, shifting the
    # positions on that line: fixes there would edit the wrong characters.
    fixable = "\f" not in source or model.module.code == source
    diagnostics = []
    for rule in rules:
        try:
            diagnostics.extend(
                _to_diagnostic(rule, f, model, source, path, fixable)
                for f in rule.check(model)
                if not model.expected_to_raise(f.node)
            )
        except Exception as error:
            if not _ran_out_of_stack(error):
                raise
            raise _NotAnalysed(_too_deep_to_analyse(path, rule.code)) from None
    return diagnostics


def parse_module(source: str) -> cst.Module:
    """``libcst.parse_module`` without validating each node as it is built: the
    parser's own output is valid by construction, and validation is a fifth of
    the parse (measured on timm; LibCST's ``CSTNode.__post_init__`` says as
    much). Nodes that rules build for fixes are still validated."""
    validate = cst.CSTNode.__post_init__
    cst.CSTNode.__post_init__ = _skip_validation  # type: ignore[method-assign]
    try:
        return cst.parse_module(source)
    finally:
        cst.CSTNode.__post_init__ = validate  # type: ignore[method-assign]


def _skip_validation(node: cst.CSTNode) -> None:
    pass


def lint_files(
    files: list[Path],
    config: Config,
    jobs: int = 1,
    cache: ResultCache | None = None,
    fixing: bool = False,
) -> list[FileResult]:
    """Lint ``files`` (from ``discovery.discover``), results in the same order.
    Unchanged files come from ``cache``; the others are linted in ``jobs`` worker
    processes (0: one per core; small runs stay in this process). One file's
    crash is recorded in its result and does not stop the others. ``fixing``:
    the caller fixes, which needs each result's project index, so a cached
    whole run (which has none) is not reused."""
    if cache is None:
        return _lint(files, [None] * len(files), config, jobs, None)[0]
    packages = packages_of(files)
    if not fixing and (reused := _reuse_run(files, packages, cache)) is not None:
        return reused
    results, slots = _lint(files, packages, config, jobs, cache)
    if not any(r.internal_error for r in results):
        signatures = [slot.signature if slot else None for slot in slots]
        cache.store_run(files, packages, signatures, [r.diagnostics for r in results])
    return results


def _reuse_run(
    files: list[Path], packages: list[str | None], cache: ResultCache
) -> list[FileResult] | None:
    """The results of the last run over the same files, if none has changed."""
    previous = cache.lookup_run(files, packages)
    if previous is None:
        return None
    results = []
    for path, diagnostics in zip(files, previous, strict=True):
        result = _with_source(path, diagnostics)
        if result is None:
            return None  # a file with findings cannot be read now: lint them all
        results.append(result)
    return results


def _lint(
    files: list[Path],
    packages: list[str | None],
    config: Config,
    jobs: int,
    cache: ResultCache | None,
) -> tuple[list[FileResult], list[Slot | None]]:
    try:
        with WorkerPool(jobs) as pool:
            return _lint_in_rounds(files, packages, config, pool, cache)
    finally:
        _KEPT_TREES.clear()  # the rounds that in-process linting kept trees for are over
        thaw()


def _lint_in_rounds(
    files: list[Path],
    packages: list[str | None],
    config: Config,
    pool: WorkerPool,
    cache: ResultCache | None,
) -> tuple[list[FileResult], list[Slot | None]]:
    """Each file's result, and the cache slot it was looked up in."""
    results: dict[Path, FileResult] = {}
    slots: dict[Path, Slot | None] = {}
    tasks: list[LintTask] = []
    if cache is None:
        tasks = [LintTask(path) for path in files]
    else:
        for path, package in zip(files, packages, strict=True):
            # Any dependencies: ``_follow_project`` re-lints the stale ones.
            cached, slot = cache.lookup(path, package, dependencies=None)
            hit = None if cached is None else _cached_result(path, cached, slot)
            if hit is None:
                tasks.append(LintTask(path, slot))
            else:
                results[path] = hit
                slots[path] = slot
    runner = TaskRunner(_lint_task, (config, cache, None), _crashed)
    linted = pool.run(runner, tasks, costs=_sizes(tasks))
    results.update((task.path, result) for task, result in zip(tasks, linted.results, strict=True))
    slots.update((task.path, task.slot) for task in tasks)
    workers = {task.path: worker for task, worker in zip(tasks, linted.workers, strict=True)}
    _follow_project(files, results, slots, config, pool, workers, cache)
    return [results[path] for path in files], [slots.get(path) for path in files]


# Rounds of re-linting with the project index: each round lets summaries pass
# through one more file (a function calling one that calls one of another file).
MAX_PROJECT_ROUNDS = 3


def _follow_project(
    files: list[Path],
    results: dict[Path, FileResult],
    slots: dict[Path, Slot | None],
    config: Config,
    pool: WorkerPool,
    workers: dict[Path, int | None],
    cache: ResultCache | None,
) -> None:
    """Re-lint the files whose result depends on what other files' functions
    need and do, with the project index built from every file's facts, until
    no file's dependencies change (bounded). Each goes back to the worker that
    linted it last (``workers``), which may still hold its tree. The index reads
    the files in the order of ``files``, not in the order they finished."""
    files = list(dict.fromkeys(files))  # a file named twice is one module, not two
    for _ in range(MAX_PROJECT_ROUNDS):
        facts = (results[path].facts for path in files)
        project = ProjectIndex(f for f in facts if f is not None)
        stale = [
            LintTask(path, slots.get(path))
            for path in files
            if (f := results[path].facts) is not None and project.is_stale(f)
        ]
        if not stale:
            break
        runner = TaskRunner(_lint_task, (config, cache, project), _crashed)
        prefer = [workers.get(task.path) for task in stale]
        linted = pool.run(runner, stale, prefer, _sizes(stale))
        results.update(zip((task.path for task in stale), linted.results, strict=True))
        workers.update(zip((task.path for task in stale), linted.workers, strict=True))
    for result in results.values():
        if result.facts is not None and result.facts.fingerprint:
            result.project = project


@dataclass(frozen=True)
class LintTask:
    path: Path
    slot: Slot | None = None  # where the result goes in the cache


def _sizes(tasks: list[LintTask]) -> list[int]:
    """Each file's size: its lint takes time roughly in proportion."""
    sizes = []
    for task in tasks:
        try:
            sizes.append(os.stat(task.path).st_size)
        except OSError:
            sizes.append(0)  # reading it will say what is wrong
    return sizes


# The trees this process keeps for the project rounds of the run in hand.
_KEPT_TREES = KeptTrees()


def _lint_task(
    shared: tuple[Config, ResultCache | None, ProjectIndex | None], task: LintTask
) -> FileResult:
    config, cache, project = shared
    result = lint_file(task.path, config, project, _KEPT_TREES)
    if cache is not None and task.slot is not None and result.source is not None:
        facts = result.facts
        slot = replace(
            task.slot,
            dependencies=facts.fingerprint if facts else "",
            facts=facts.to_json() if facts else None,
        )
        cache.store(slot, result.source, result.diagnostics)
    if not result.diagnostics:
        result.source = None  # nothing to show or fix: do not keep (or ship back) the text
    return result


def _crashed(task: LintTask, traceback: str) -> FileResult:
    """A bug in bnlint: keep the traceback, go on with the other files."""
    return FileResult(str(task.path), internal_error=traceback)


def _cached_result(path: Path, diagnostics: list[Diagnostic], slot: Slot) -> FileResult | None:
    """A cache hit; a file with findings is read, for --show-source and --fix."""
    try:
        facts = FileFacts.from_json(slot.facts) if slot.facts else None
    except (KeyError, TypeError, ValueError):
        return None  # an entry we cannot read fully is a miss
    return _with_source(path, diagnostics, facts)


def _with_source(
    path: Path, diagnostics: list[Diagnostic], facts: FileFacts | None = None
) -> FileResult | None:
    """A cached result, read if it has findings (for --show-source and --fix)."""
    if not diagnostics:
        return FileResult(str(path), facts=facts)
    try:
        return FileResult(str(path), diagnostics, read_source(path), facts=facts)
    except UnreadableSource:
        return None


def lint_file(
    path: Path,
    config: Config,
    project: ProjectIndex | None = None,
    trees: KeptTrees | None = None,
) -> FileResult:
    """Read, decode and lint one file; bad input becomes a BNL902 diagnostic."""
    shown = str(path)
    try:
        source = read_source(path)
    except UnreadableSource as error:
        unreadable = input_diagnostic(shown, "BNL902", str(error), error.line, error.column)
        return FileResult(shown, _select([unreadable], shown, config))
    if path.suffix == ".ipynb":
        from bnlint.notebook import lint_notebook  # notebook.py builds on lint_source

        diagnostics = lint_notebook(source.text, shown, config, package_of(path))
    else:
        diagnostics, facts = lint_source_with_facts(
            source.text, shown, config, package_of(path), project=project, trees=trees
        )
        return FileResult(shown, diagnostics, source, facts=facts)
    return FileResult(shown, diagnostics, source)


def package_of(path: Path) -> str | None:
    """The dotted package a file belongs to, from the ``__init__.py`` files above it."""
    return packages_of([path])[0]


def packages_of(files: list[Path]) -> list[str | None]:
    """``package_of`` of each file; each folder is resolved and looked up once,
    which a warm run over thousands of files notices."""
    real_folders: dict[str, str] = {}
    packages: dict[str, str | None] = {}

    def real_folder(path: str) -> str:
        if os.path.islink(path):  # its package is where it points
            return os.path.dirname(os.path.realpath(path))
        folder = os.path.dirname(path)
        if folder not in real_folders:
            real_folders[folder] = os.path.realpath(folder or ".")
        return real_folders[folder]

    def package(folder: str) -> str | None:
        if folder not in packages:
            parent, name = os.path.split(folder)
            packages[folder] = None
            if parent != folder and os.path.isfile(os.path.join(folder, "__init__.py")):
                above = package(parent)
                packages[folder] = f"{above}.{name}" if above else name
        return packages[folder]

    return [package(real_folder(os.fspath(path))) for path in files]  # str: no Path overhead


# -- rules and findings ---------------------------------------------------------


def _rules_for(source: str, path: str, config: Config) -> list[Rule]:
    return [
        rule()
        for rule in ALL_RULES
        if config.is_enabled(rule.code, path)
        and (not rule.triggers or any(trigger in source for trigger in rule.triggers))
    ]


def _to_diagnostic(
    rule: Rule, finding: Finding, model: SemanticModel, source: str, path: str, fixable: bool
) -> Diagnostic:
    where = model.positions[finding.node]
    fix = _resolve_fix(finding.fix, model, source) if finding.fix and fixable else None
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
    name = INPUT_CODES[code].name
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
        message = error.message.removeprefix("parser error: ").split("\n", 1)[0]
        # Python accepts the file: LibCST's grammar differs (form feeds in indentation).
        return line, column, f"{message} (bnlint's parser, LibCST, rejects this valid Python)"
    return 1, 1, _too_complex(error)


# Python refuses 200 nested brackets and 100 indentation levels; well below
# that, Python's own parser is asked before LibCST's.
_SAFE_NESTING = 50
_STRINGS_AND_COMMENTS = re.compile(
    r'"""[\s\S]*?"""' r"|'''[\s\S]*?'''" r'|"(?:[^"\\\n]|\\.)*"' r"|'(?:[^'\\\n]|\\.)*'|#[^\n]*"
)
_BRACKETS = re.compile(r"[()\[\]{}]")
_BRACKET_DEPTH_CHANGE = {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}
# Prefix operators nest too (``- - - x``, ``not not x``, ``lambda: lambda: x``).
_PREFIX_RUN = re.compile(
    rf"(?=[-+~nal])(?:(?:[-+~]|not\b|await\b|lambda\b[^:\n]*:)\s*){{{_SAFE_NESTING},}}"
)
_DEEP_INDENT = re.compile(rf"^[ \t]{{{2 * _SAFE_NESTING},}}", re.MULTILINE)
# Operator chains (``x ** x ** ...``) nest without brackets, on one long line.
_LONG_LINE = 10_000


def _may_nest_deeply(source: str) -> bool:
    """Could the file come near a parser's nesting limits? Over-cautious by design:
    a yes only costs the ``ast`` parse that a no saves."""
    if len(source) > _LONG_LINE and max(map(len, source.splitlines())) > _LONG_LINE:
        return True
    code = _STRINGS_AND_COMMENTS.sub("", source)
    if _DEEP_INDENT.search(code) or _PREFIX_RUN.search(code):
        return True
    depth = deepest = 0
    for bracket in _BRACKETS.findall(code):
        depth = max(0, depth + _BRACKET_DEPTH_CHANGE[bracket])
        deepest = max(deepest, depth)
    return deepest >= _SAFE_NESTING


_TOO_COMPLEX = "the file is too deeply nested or too large to parse"
_PARSER_LIMITS = ("too many nested parentheses", "too many levels of indentation", _TOO_COMPLEX)


def _too_complex(error: BaseException) -> str:
    return f"{_TOO_COMPLEX} ({type(error).__name__})"


def _beyond_parser_limits(python_error: tuple[int, int, str]) -> bool:
    return python_error[2].startswith(_PARSER_LIMITS)


def _ran_out_of_stack(error: BaseException | None) -> bool:
    """Whether ``error`` comes from a RecursionError: LibCST's position pass
    turns one into a chain of KeyErrors."""
    while error is not None:
        if isinstance(error, RecursionError):
            return True
        error = error.__cause__ or error.__context__
    return False


def _too_large_to_analyse(path: str, size: int) -> Diagnostic:
    message = (
        f"the file is too large to analyse ({size:,} characters; "
        f"bnlint analyses files of up to {MAX_ANALYSED_CHARACTERS:,})"
    )
    return input_diagnostic(path, "BNL902", message)


def _too_deep_to_analyse(path: str, code: str) -> Diagnostic:
    """Valid Python nested deeper than the analysis' recursion reaches."""
    message = f"the file is too deeply nested to analyse (while checking {code})"
    return input_diagnostic(path, "BNL901", message)
