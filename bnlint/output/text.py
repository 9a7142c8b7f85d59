"""Text output: ``path:line:col: CODE message``, like flake8 and ruff."""

from __future__ import annotations

from bnlint.diagnostic import Diagnostic
from bnlint.output import Report
from bnlint.source import line_starts, line_text

_BOLD, _RED, _CYAN, _RESET = "\033[1m", "\033[31m", "\033[36m", "\033[0m"


def render(report: Report) -> str:
    lines = [_format(d, report) for d in report.diagnostics]
    return "".join(f"{line}\n" for line in lines)


def _format(diagnostic: Diagnostic, report: Report) -> str:
    location = diagnostic.extra.get("location") or f"{diagnostic.line}:{diagnostic.column}"
    code = diagnostic.code
    if report.color:
        head = f"{_BOLD}{diagnostic.path}{_RESET}{_CYAN}:{location}:{_RESET}"
        text = f"{head} {_BOLD}{_RED}{code}{_RESET} {diagnostic.message}"
    else:
        text = f"{diagnostic.path}:{location}: {code} {diagnostic.message}"
    source = report.sources.get(diagnostic.path) if report.show_source else None
    if source is not None:
        starts = line_starts(source)
        if diagnostic.line <= len(starts):
            offending = line_text(source, starts, diagnostic.line).expandtabs(1)
            text += f"\n    {offending}\n    {' ' * (diagnostic.column - 1)}^"
    return text


def summary(report: Report, fix_mode: bool = False) -> str:
    """The closing line: problems found (or fixed and remaining) and how many --fix can fix."""
    count = len(report.diagnostics)
    if fix_mode:
        text = f"Fixed {_plural(report.fixed, 'problem')}, {count} remaining"
    elif count:
        text = f"Found {_plural(count, 'problem')}"
    else:
        return "All checks passed!"
    if report.fixable and not fix_mode:
        flag = "--fix --unsafe-fixes" if report.unsafe_fixes else "--fix"
        text += f" ({report.fixable} fixable with {flag})"
    return text + "."


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
