"""The README's rules table is the registry's, so the two cannot drift apart."""

from __future__ import annotations

from pathlib import Path

from bnlint.cli import rules_markdown

README = Path(__file__).resolve().parent.parent / "README.md"


def test_rules_table_matches_registry() -> None:
    text = README.read_text()
    start = text.index("<!-- rules-table:start -->\n") + len("<!-- rules-table:start -->\n")
    end = text.index("<!-- rules-table:end -->")
    assert text[start:end] == rules_markdown(), "run `bnlint rules --markdown` into the README"
