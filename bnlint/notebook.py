"""Jupyter notebooks (``.ipynb``): the code cells are linted as one program and
findings are reported, and fixed, per cell.

The code cells are joined in order, with a separator line between two cells.
IPython syntax that is not Python (line magics ``%time``, cell magics
``%%bash``, shell escapes ``!pip``, ``x = !ls``, help ``obj?``) is replaced by a
placeholder line, so no line moves and nothing is ever reported there; a cell
that starts with a cell magic is replaced whole.

Where findings go: ``cell`` is the 1-based index of the cell among *all* the
notebook's cells, markdown included (cell 4 is ``cells[3]`` in the file, and
the fourth cell on screen); ``line`` and ``column`` count from the top of the
cell. ``notebook_line`` is the line of the ``.ipynb`` file that holds the code,
for formats that can only point into the file (SARIF, GitHub annotations).

A fix is kept only when all its edits lie inside the diagnostic's own cell,
away from placeholders: a fix never moves code across a cell boundary. Fixing
rewrites only the ``"source"`` values of the cells that changed, in the file's
own text, so outputs, metadata, cell ids, key order, indentation and the final
newline stay byte for byte. Only the standard ``json`` module is used.
"""

from __future__ import annotations

import ast
import bisect
import itertools
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bnlint.config import Config
from bnlint.diagnostic import Diagnostic, Edit, Fix
from bnlint.engine import input_diagnostic, lint_source
from bnlint.fixer import FixOutcome, fix_text
from bnlint.source import InputError, line_starts

NOTEBOOK_SUFFIX = ".ipynb"


def is_notebook(path: str | Path) -> bool:
    return str(path).endswith(NOTEBOOK_SUFFIX)


class NotebookError(InputError):
    """The file is not a Jupyter notebook in nbformat 4."""


def lint_notebook(
    text: str, path: str, config: Config, package: str | None = None
) -> list[Diagnostic]:
    """Lint a notebook file's text; a broken notebook is one BNL902 diagnostic."""
    try:
        notebook = Notebook(text)
    except NotebookError as error:
        return _broken(error, path, config)
    program = notebook.program()
    if program is None:
        return []
    diagnostics = _lint_program(program, program.text, path, config, package)
    return program.to_cells(diagnostics, program.text, notebook)


def fix_notebook(
    text: str, path: str, config: Config, package: str | None = None, unsafe: bool = False
) -> FixOutcome:
    """``fixer.fix_text`` for a notebook: the outcome's text is the whole file."""
    try:
        notebook = Notebook(text)
    except NotebookError as error:
        return FixOutcome(text, 0, _broken(error, path, config))
    program = notebook.program()
    if program is None:
        return FixOutcome(text, 0, [])
    outcome = fix_text(
        program.text, lambda code: _lint_program(program, code, path, config, package), unsafe
    )
    fixed = Notebook(notebook.with_sources(program.cell_sources(outcome.text)))
    return FixOutcome(
        fixed.text,
        outcome.applied,
        program.to_cells(outcome.remaining, outcome.text, fixed),
        [program.relocate_message(message, outcome.text, path) for message in outcome.rejected],
    )


def _broken(error: NotebookError, path: str, config: Config) -> list[Diagnostic]:
    if not config.is_enabled("BNL902", path):
        return []
    return [input_diagnostic(path, "BNL902", str(error), error.line, error.column)]


def _lint_program(
    program: Program, code: str, path: str, config: Config, package: str | None
) -> list[Diagnostic]:
    """Diagnostics of one version of the program, in its own coordinates, without
    the fixes that would edit outside the diagnostic's cell."""
    layout = program.layout(code)
    return [
        d if d.fix is None or layout.fix_stays_in_cell(d) else replace(d, fix=None)
        for d in lint_source(code, path, config, package)
    ]


# -- the notebook file ------------------------------------------------------------


class Notebook:
    """A notebook file's text, checked to be nbformat 4, and where its cells' sources are."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise NotebookError(
                f"not a notebook: invalid JSON: {error.msg}", error.lineno, error.colno
            ) from error
        except RecursionError as error:
            raise NotebookError("not a notebook: JSON nested too deeply") from error
        self.cells = _checked_cells(data)
        self.language = _language(data)
        self._spans: list[tuple[int, int]] | None = None
        self._line_starts: list[int] | None = None
        self._items: dict[int, tuple[list[int], list[int]]] = {}

    def program(self) -> Program | None:
        """The code cells as one program; None for a notebook in another language."""
        if self.language is not None and "python" not in self.language:
            return None
        code = [
            (number, _joined(cell["source"]))
            for number, cell in enumerate(self.cells, start=1)
            if cell["cell_type"] == "code"
        ]
        return Program.build(code)

    def with_sources(self, sources: dict[int, str]) -> str:
        """The file's text with the source of cell ``number`` replaced, for each
        changed cell; everything else is kept as it is."""
        ascii_only = self.text.isascii()  # a file written with \\u escapes keeps them
        text = self.text
        for number in sorted(sources, reverse=True):
            if sources[number] == _joined(self.cells[number - 1]["source"]):
                continue
            start, end = self._source_spans()[number - 1]
            value = _render_source(sources[number], text[start:end], ascii_only)
            text = text[:start] + value + text[end:]
        return text

    def file_line(self, number: int, cell_offset: int) -> int:
        """The line of the file that holds character ``cell_offset`` of cell ``number``'s source."""
        start, _ = self._source_spans()[number - 1]
        offset = start
        if self.text[start] == "[":  # a list of strings, each on one line of the file
            item_starts, item_ends = self._source_items(number)
            if item_starts:
                index = bisect.bisect_right(item_ends, cell_offset)
                offset = item_starts[min(index, len(item_starts) - 1)]
        if self._line_starts is None:
            self._line_starts = line_starts(self.text)
        return bisect.bisect_right(self._line_starts, offset)

    def _source_items(self, number: int) -> tuple[list[int], list[int]]:
        """For a list-valued source: where each item starts in the file, and where
        it ends in the cell's source text."""
        if number not in self._items:
            spans = _array_items(self.text, self._source_spans()[number - 1][0])
            lengths = (len(json.loads(self.text[start:end])) for start, end in spans)
            self._items[number] = (
                [start for start, _ in spans],
                list(itertools.accumulate(lengths)),
            )
        return self._items[number]

    def _source_spans(self) -> list[tuple[int, int]]:
        if self._spans is None:
            cells = _member(self.text, _skip_space(self.text, 0), "cells")
            self._spans = [
                _member(self.text, cell_start, "source")
                for cell_start, _ in _array_items(self.text, cells[0])
            ]
        return self._spans


def _checked_cells(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or data.get("nbformat") != 4:
        version = data.get("nbformat") if isinstance(data, dict) else None
        found = f" (nbformat {version!r})" if version is not None else ""
        raise NotebookError(f"not a Jupyter notebook in nbformat 4{found}")
    cells = data.get("cells")
    if not isinstance(cells, list):
        raise NotebookError("not a valid notebook: no list of cells")
    for number, cell in enumerate(cells, start=1):
        if not (
            isinstance(cell, dict)
            and isinstance(cell.get("cell_type"), str)
            and _is_source(cell.get("source"))
        ):
            raise NotebookError(f"not a valid notebook: cell {number} has no type or source")
    return cells


def _is_source(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    )


def _language(data: dict[str, Any]) -> str | None:
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        return None
    for key, field in (("language_info", "name"), ("kernelspec", "language")):
        section = metadata.get(key)
        if isinstance(section, dict) and isinstance(section.get(field), str):
            return section[field].lower()
    return None


def _joined(source: str | list[str]) -> str:
    return source if isinstance(source, str) else "".join(source)


def _render_source(source: str, old_value: str, ascii_only: bool) -> str:
    """``source`` as JSON, in the shape of the value it replaces: one string, or
    a list of lines laid out like the old list."""
    if not old_value.startswith("["):
        return json.dumps(source, ensure_ascii=ascii_only)
    lines = re.findall(r"[^\n]*\n|[^\n]+", source)
    if not lines:
        return "[]"
    items = [json.dumps(line, ensure_ascii=ascii_only) for line in lines]
    if "\n" not in old_value:
        return "[" + ", ".join(items) + "]"
    before_first = re.match(r"\[(\s*)", old_value)[1]  # type: ignore[index]
    before_close = re.search(r"(\s*)\]$", old_value)[1]  # type: ignore[index]
    if "\n" not in before_first:  # an old empty list spread over lines
        before_first = before_close + " "
    return "[" + before_first + ("," + before_first).join(items) + before_close + "]"


# Walking the JSON text itself, to find where values are (json gives no positions).
_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, index: int) -> int:
    return _SPACE.match(text, index).end()  # type: ignore[union-attr]


def _value_end(text: str, start: int) -> int:
    return _DECODER.raw_decode(text, start)[1]


def _array_items(text: str, start: int) -> list[tuple[int, int]]:
    """The spans of the items of the JSON array whose ``[`` is at ``start``."""
    items = []
    index = _skip_space(text, start + 1)
    while text[index] != "]":
        end = _value_end(text, index)
        items.append((index, end))
        index = _skip_space(text, end)
        if text[index] == ",":
            index = _skip_space(text, index + 1)
    return items


def _member(text: str, start: int, name: str) -> tuple[int, int]:
    """The span of member ``name``'s value in the JSON object whose ``{`` is at
    ``start`` (the last one, as ``json.loads`` takes the last of duplicates)."""
    found = None
    index = _skip_space(text, start + 1)
    while text[index] != "}":
        key, index = _DECODER.raw_decode(text, index)
        value_start = _skip_space(text, _skip_space(text, index) + 1)  # past the colon
        index = _value_end(text, value_start)
        if key == name:
            found = (value_start, index)
        index = _skip_space(text, index)
        if text[index] == ",":
            index = _skip_space(text, index + 1)
    if found is None:
        raise NotebookError(f"not a valid notebook: no {name!r}")
    return found


# -- the program of the code cells ----------------------------------------------------


@dataclass(frozen=True)
class Program:
    """The code cells joined into one Python program.

    Separator and placeholder lines carry ``tag``, a word found nowhere in the
    cells, so they can be recognised in any later (fixed) version of the text.
    """

    text: str
    tag: str
    cells: tuple[int, ...]  # the notebook number of each code cell, in order
    ends_with_newline: tuple[bool, ...]  # per code cell: did its source end with one
    replaced: tuple[str, ...]  # the IPython line behind placeholder n (without newline)
    # Per code cell: the indentation IPython strips from it, and the lines it strips it from.
    indents: tuple[str, ...]
    dedented: tuple[frozenset[int], ...]

    @classmethod
    def build(cls, code_cells: list[tuple[int, str]]) -> Program:
        tag = _unused_tag("".join(source for _, source in code_cells))
        replaced: list[str] = []
        cells = [_leading_indent_removed(_with_newline(source)) for _, source in code_cells]
        parts = [_neutralise(code, tag, replaced) for code, _, _ in cells]
        return cls(
            _separator(tag).join(parts),
            tag,
            tuple(number for number, _ in code_cells),
            tuple(source == "" or source.endswith(("\n", "\r")) for _, source in code_cells),
            tuple(replaced),
            tuple(indent for _, indent, _ in cells),
            tuple(lines for _, _, lines in cells),
        )

    def layout(self, code: str) -> Layout:
        return Layout(self, code)

    def cell_sources(self, code: str) -> dict[int, str]:
        """Each code cell's source in a (fixed) version of the program."""
        parts = code.split(_separator(self.tag))
        if len(parts) != len(self.cells):
            raise RuntimeError("bnlint bug: a fix moved a notebook cell separator")
        placeholder = re.compile(rf"^[ \t]*pass  # {re.escape(self.tag)}:(\d+)", re.MULTILINE)
        sources = {}
        for number, part, had_newline in zip(
            self.cells, parts, self.ends_with_newline, strict=True
        ):
            source = placeholder.sub(lambda match: self.replaced[int(match[1])], part)
            source = self._indented_again(number, source)
            if not had_newline and source.endswith("\n"):
                source = source[:-1]
            sources[number] = source
        return sources

    def _indented_again(self, number: int, source: str) -> str:
        """A cell's source with the indentation IPython strips put back (fixes
        never edit such a cell, so its lines are where they were)."""
        cell = self.cells.index(number)
        indent, dedented = self.indents[cell], self.dedented[cell]
        if not indent:
            return source
        lines = _lines(source)
        return "".join(
            indent + line if index in dedented else line
            for index, line in enumerate(lines, start=1)
        )

    def column_in_cell(self, cell: int, line: int, column: int) -> int:
        """A column of the program's version of a cell line, in the cell's source."""
        return column + len(self.indents[cell]) if line in self.dedented[cell] else column

    def to_cells(
        self, diagnostics: list[Diagnostic], code: str, notebook: Notebook
    ) -> list[Diagnostic]:
        """``diagnostics`` of ``code`` (a version of this program) in cell coordinates;
        ``notebook`` is the file whose text holds ``code``'s cells."""
        layout = self.layout(code)
        return [layout.to_cell(d, notebook) for d in diagnostics]

    def relocate_message(self, message: str, code: str, path: str) -> str:
        """A fixer message that starts ``path:line:col:`` with the position in the cell."""
        match = re.match(r"(\d+):(\d+):", message.removeprefix(f"{path}:"))
        if not message.startswith(f"{path}:") or match is None:
            return message
        cell, line, column = self.layout(code).locate(int(match[1]), int(match[2]))
        rest = message[len(path) + 1 + match.end() :]
        return f"{path}:cell {self.cells[cell]}:{line}:{column}:{rest}"


# Python's messages for it may name lines of the whole program.
_SYNTAX_ERROR = "BNL901"


def _separator(tag: str) -> str:
    # A statement at column 0: an indented block cannot run on into the next cell.
    return f"pass  # {tag}\n"


def _unused_tag(text: str) -> str:
    return next(f"bnlint-cell-{n}" for n in itertools.count() if f"bnlint-cell-{n}" not in text)


def _with_newline(source: str) -> str:
    return source if source == "" or source.endswith(("\n", "\r")) else source + "\n"


def _lines(text: str) -> list[str]:
    """The lines of ``text`` with their newlines, split where Python splits them."""
    starts = line_starts(text)
    return [
        text[start:end]
        for start, end in zip(starts, [*starts[1:], len(text)], strict=True)
        if start < end
    ]


class Layout:
    """Where each line of one version of the program comes from."""

    def __init__(self, program: Program, code: str) -> None:
        self.program = program
        # Per program line: (index of the code cell, line in the cell), None for a separator.
        self.rows: list[tuple[int, int] | None] = []
        self.placeholders: set[int] = set()  # program lines holding a placeholder
        self.line_lengths: list[int] = []
        separator = _separator(program.tag)
        cell, line = 0, 0
        for number, text in enumerate(_lines(code), start=1):
            self.line_lengths.append(len(text.rstrip("\r\n")))
            if text == separator:
                self.rows.append(None)
                cell, line = cell + 1, 0
                continue
            line += 1
            self.rows.append((cell, line))
            if program.tag in text:
                self.placeholders.add(number)

    def locate(self, line: int, column: int) -> tuple[int, int, int]:
        """(code cell index, line, column) of a program position; a position on a
        separator (a syntax error at the end of a cell) goes to the end of the cell before."""
        if 1 <= line <= len(self.rows) and self.rows[line - 1] is not None:
            cell, cell_line = self.rows[line - 1]  # type: ignore[misc]
            return cell, cell_line, self.program.column_in_cell(cell, cell_line, column)
        for earlier in range(min(line - 1, len(self.rows)), 0, -1):
            row = self.rows[earlier - 1]
            if row is not None:
                end = self.line_lengths[earlier - 1] + 1
                return row[0], row[1], self.program.column_in_cell(row[0], row[1], end)
        return 0, 1, 1

    def _lines_in_cells(self, message: str, cell: int) -> str:
        """Python's "after function definition on line 151" counts lines of the whole
        program: say the line of the cell, and which cell when it is another one."""

        def in_cell(match: re.Match[str]) -> str:
            other, line, _ = self.locate(int(match[1]), 1)
            where = "" if other == cell else f" of cell {self.program.cells[other]}"
            return f"line {line}{where}"

        return re.sub(r"\bline (\d+)", in_cell, message)

    def _cell_of(self, line: int) -> int | None:
        """The code cell of an ordinary program line (not a separator or placeholder)."""
        if not 1 <= line <= len(self.rows) or line in self.placeholders:
            return None
        row = self.rows[line - 1]
        return None if row is None else row[0]

    def fix_stays_in_cell(self, diagnostic: Diagnostic) -> bool:
        """Does the fix edit only the diagnostic's cell, one whose lines are as
        written (not one IPython dedents, whose edits would need indenting)?"""
        cell = self._cell_of(diagnostic.line)
        return (
            cell is not None
            and not self.program.indents[cell]
            and all(
                self._cell_of(edit.line) == cell and self._cell_of(edit.end_line) == cell
                for edit in diagnostic.fix.edits  # type: ignore[union-attr]
            )
        )

    def to_cell(self, diagnostic: Diagnostic, notebook: Notebook) -> Diagnostic:
        cell, line, column = self.locate(diagnostic.line, diagnostic.column)
        end_cell, end_line, end_column = self.locate(diagnostic.end_line, diagnostic.end_column)
        if end_cell != cell:
            end_line, end_column = line, column
        number = self.program.cells[cell]
        fix = diagnostic.fix
        if fix is not None:
            edits = tuple(self._cell_edit(edit) for edit in fix.edits)
            fix = Fix(edits, fix.safe, fix.description)
        extra = {key: value for key, value in diagnostic.extra.items() if key != "noqa_lines"}
        extra["cell"] = number
        extra["location"] = f"cell {number}:{line}:{column}"
        extra["notebook_line"] = notebook.file_line(
            number, self._cell_offset(notebook, number, line)
        )
        message = diagnostic.message
        if diagnostic.code == _SYNTAX_ERROR:
            message = self._lines_in_cells(message, cell)
        return replace(
            diagnostic,
            message=message,
            line=line,
            column=column,
            end_line=end_line,
            end_column=end_column,
            fix=fix,
            extra=extra,
        )

    def _cell_edit(self, edit: Edit) -> Edit:
        _, line, column = self.locate(edit.line, edit.column)
        _, end_line, end_column = self.locate(edit.end_line, edit.end_column)
        return Edit(line, column, end_line, end_column, edit.content)

    @staticmethod
    def _cell_offset(notebook: Notebook, number: int, line: int) -> int:
        """Where line ``line`` of cell ``number``'s source starts, in characters."""
        starts = line_starts(_joined(notebook.cells[number - 1]["source"]))
        return starts[min(line, len(starts)) - 1]


# -- IPython syntax -----------------------------------------------------------------

# IPython's escapes at the start of a statement: magics, shell, help and the
# autocall forms (`/f x`, `,f a b`, `;f a b`). None of them can start Python code.
_ESCAPES = ("%", "!", "?", "/", ",", ";")
_ASSIGNED_ESCAPE = re.compile(r"[ \t]*[\w.]+(?:[ \t]*,[ \t]*[\w.]+)*[ \t]*=[ \t]*[!%]")
_HELP_AFTER = re.compile(r"[ \t]*%{0,2}[\w.*]+\?\??[ \t]*$")
# Line magics IPython runs without their ``%`` (automagic, on by default) when the
# line is no Python: ``pip install timm``, ``matplotlib inline``, ``cd ..``.
_AUTOMAGIC = re.compile(
    r"[ \t]*(pip|conda|mamba|cd|ls|ll|pwd|mkdir|rmdir|rm|cp|mv|cat|env|set_env|matplotlib"
    r"|load_ext|reload_ext|autoreload|time|timeit|run|load|who|whos|reset|config|history"
    r"|precision|xmode|pylab|store|bookmark)[ \t]+(?![=(\[{:,;])\S"
)


def _leading_indent_removed(source: str) -> tuple[str, str, frozenset[int]]:
    """``source`` as IPython runs it: when its first non-blank line is indented,
    that indentation is removed from every line that starts with it (IPython's
    ``leading_indent``). Returns the code, the indentation and the numbers of
    the lines it was removed from."""
    lines = _lines(source)
    first = next((line for line in lines if line.strip()), "")
    indent = first[: len(first) - len(first.lstrip(" \t"))]
    if not indent:
        return source, "", frozenset()
    dedented = frozenset(
        number for number, line in enumerate(lines, start=1) if line.startswith(indent)
    )
    code = "".join(
        line[len(indent) :] if number in dedented else line
        for number, line in enumerate(lines, start=1)
    )
    return code, indent, dedented


def _neutralise(source: str, tag: str, replaced: list[str]) -> str:
    """``source`` with each IPython line replaced by ``pass  # tag:n``, at the
    indentation of the statement it belongs to; ``replaced[n]`` keeps the line."""
    lines = _lines(source)
    first_code = next((line for line in lines if line.strip()), "")
    if first_code.startswith("%%"):
        ipython = {index: "" for index in range(len(lines))}  # a cell magic: the whole cell
    else:
        ipython = _ipython_lines(lines)
    out = []
    for index, line in enumerate(lines):
        if index not in ipython:
            out.append(line)
            continue
        content = line.rstrip("\r\n")
        out.append(f"{ipython[index]}pass  # {tag}:{len(replaced)}{line[len(content) :]}")
        replaced.append(content)
    return "".join(out)


def _ipython_lines(lines: list[str]) -> dict[int, str]:
    """The indices of the IPython lines, each with its statement's indentation."""
    found: dict[int, str] = {}
    scanner = _StatementScanner()
    indent = ""
    for index, line in enumerate(lines):
        continues_ipython = index - 1 in found and lines[index - 1].rstrip("\r\n").endswith("\\")
        if continues_ipython:
            found[index] = indent
        elif scanner.at_statement_start and _is_ipython(line):
            indent = line[: len(line) - len(line.lstrip(" \t"))]
            found[index] = indent
        else:
            scanner.feed(line)
    return found


def _is_ipython(line: str) -> bool:
    return (
        line.lstrip(" \t").startswith(_ESCAPES)
        or _ASSIGNED_ESCAPE.match(line) is not None
        or _HELP_AFTER.match(line) is not None
        or (_AUTOMAGIC.match(line) is not None and not _is_python(line))
    )


def _is_python(line: str) -> bool:
    """Does ``line`` parse as Python on its own (``ls -la`` does: a subtraction)?"""
    try:
        ast.parse(line.strip())
    except SyntaxError:
        return False
    return True


class _StatementScanner:
    """Follows strings, brackets and backslash continuations line by line, to
    tell whether the next line starts a statement (IPython only rewrites those)."""

    def __init__(self) -> None:
        self.quote: str | None = None  # the delimiter of the string still open
        self.depth = 0
        self.continued = False

    @property
    def at_statement_start(self) -> bool:
        return self.quote is None and self.depth == 0 and not self.continued

    def feed(self, line: str) -> None:
        content = line.rstrip("\r\n")
        index, in_comment = 0, False
        while index < len(content):
            char = content[index]
            if self.quote is not None:
                if char == "\\":
                    index += 2
                    continue
                if content.startswith(self.quote, index):
                    index += len(self.quote)
                    self.quote = None
                    continue
            elif char == "#":
                in_comment = True
                break
            elif char in "'\"":
                self.quote = char * 3 if content.startswith(char * 3, index) else char
                index += len(self.quote)
                continue
            elif char in "([{":
                self.depth += 1
            elif char in ")]}":
                self.depth = max(0, self.depth - 1)
            index += 1
        backslash = content.endswith("\\") and not in_comment
        if self.quote in ("'", '"') and not backslash:
            self.quote = None  # an unterminated one-line string ends with its line
        self.continued = backslash and self.quote is None
