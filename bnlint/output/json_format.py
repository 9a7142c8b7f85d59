"""``--format json``: a JSON array of diagnostics (DESIGN.md lists the fields)."""

from __future__ import annotations

import json

from bnlint.output import Report


def render(report: Report) -> str:
    items = []
    for diagnostic in report.diagnostics:
        item = diagnostic.to_json()
        item.pop("noqa_lines", None)
        items.append(item)
    return json.dumps(items, indent=2) + "\n"
