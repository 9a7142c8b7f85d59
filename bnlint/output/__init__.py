"""Output formats: one module per format, each a ``render(report) -> str``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bnlint.diagnostic import Diagnostic


@dataclass
class Report:
    diagnostics: list[Diagnostic]
    sources: dict[str, str] = field(default_factory=dict)  # path -> text, for --show-source
    fixed: int = 0
    show_source: bool = False
    color: bool = False
    unsafe_fixes: bool = False

    @property
    def fixable(self) -> int:
        return sum(
            1 for d in self.diagnostics if d.fix is not None and (d.fix.safe or self.unsafe_fixes)
        )


def formatters() -> dict[str, Callable[[Report], str]]:
    from bnlint.output import github, json_format, sarif, text

    return {
        "text": text.render,
        "json": json_format.render,
        "sarif": sarif.render,
        "github": github.render,
    }
