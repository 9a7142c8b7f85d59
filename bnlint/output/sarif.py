"""``--format sarif``: SARIF 2.1.0, as GitHub code scanning and SARIF viewers read it.

One run. The driver lists every rule, and the input codes BNL901/BNL902, with
its documentation; each result points at its rule by id and index. Paths are
relative URIs with forward slashes, resolved against ``%SRCROOT%``, the folder
bnlint ran in (the repository root in CI). Columns count Unicode code points.
A fix becomes a SARIF fix: one artifact change whose replacements delete a
region and insert text.

A notebook finding points at the line of the ``.ipynb`` file that holds the
code, its message starts with the cell position (``cell 4:12:5: ...``), and it
carries no SARIF fix (its edits are in cell coordinates, not file ones).

Rule documentation lives at ``DOCS_URL`` with the code in it: one stable page
per code (codes are never reused; names may change).
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

from bnlint import __version__
from bnlint.diagnostic import Diagnostic, Edit, Fix, Severity
from bnlint.output import Report
from bnlint.rules import DOCUMENTED

SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
INFORMATION_URI = "https://bnlint.readthedocs.io/"
DOCS_URL = "https://bnlint.readthedocs.io/en/stable/rules/{code}.html"
SOURCE_ROOT = "%SRCROOT%"


def help_uri(code: str) -> str:
    """The documentation page of rule ``code``."""
    return DOCS_URL.format(code=code)


def render(report: Report) -> str:
    rules = rule_descriptors()
    index = {rule["id"]: position for position, rule in enumerate(rules)}
    run = {
        "tool": {
            "driver": {
                "name": "bnlint",
                "version": __version__,
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }
        },
        "originalUriBaseIds": {SOURCE_ROOT: {"uri": Path.cwd().as_uri().rstrip("/") + "/"}},
        "columnKind": "unicodeCodePoints",
        "results": [_result(d, index.get(d.code)) for d in report.diagnostics],
    }
    log = {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}
    return json.dumps(log, indent=2) + "\n"


def rule_descriptors() -> list[dict[str, Any]]:
    """Every code bnlint can report, rules first, in code order."""
    descriptors = []
    for documented in DOCUMENTED:
        documentation = documented.documentation()
        descriptor = _descriptor(
            documented.code,
            documented.name,
            documented.summary,
            _first_section(documentation),
            documentation,
        )
        descriptor["defaultConfiguration"] = {"level": _level(documented.severity)}
        descriptors.append(descriptor)
    return descriptors


def _descriptor(code: str, name: str, summary: str, full: str, help_text: str) -> dict[str, Any]:
    return {
        "id": code,
        "name": name,
        "shortDescription": {"text": summary},
        "fullDescription": {"text": full},
        "help": {"text": help_text, "markdown": help_text},
        "helpUri": help_uri(code),
    }


def _first_section(documentation: str) -> str:
    """The text of the documentation's first section ("What it does"), on one line."""
    sections = [part for part in documentation.split("## ") if part.strip()]
    body = sections[0].split("\n", 1)[1] if sections and "\n" in sections[0] else documentation
    return " ".join(body.split())


def _result(diagnostic: Diagnostic, rule_index: int | None) -> dict[str, Any]:
    artifact = artifact_location(diagnostic.path)
    message = diagnostic.message
    if "cell" in diagnostic.extra:
        message = f"{diagnostic.extra['location']}: {message}"
        region = {"startLine": diagnostic.extra["notebook_line"]}
    else:
        region = _region(
            diagnostic.line, diagnostic.column, diagnostic.end_line, diagnostic.end_column
        )
    result: dict[str, Any] = {"ruleId": diagnostic.code}
    if rule_index is not None:
        result["ruleIndex"] = rule_index
    result["level"] = _level(diagnostic.severity)
    result["message"] = {"text": message}
    result["locations"] = [{"physicalLocation": {"artifactLocation": artifact, "region": region}}]
    if diagnostic.fix is not None and "cell" not in diagnostic.extra:
        result["fixes"] = [_fix(diagnostic.fix, artifact)]
    return result


def _fix(fix: Fix, artifact: dict[str, str]) -> dict[str, Any]:
    description = fix.description or "Apply the fix"
    return {
        "description": {"text": description if fix.safe else f"{description} (unsafe)"},
        "artifactChanges": [
            {
                "artifactLocation": artifact,
                "replacements": [_replacement(edit) for edit in fix.edits],
            }
        ],
    }


def _replacement(edit: Edit) -> dict[str, Any]:
    # An insertion is an empty region: start and end at the same place.
    return {
        "deletedRegion": _region(edit.line, edit.column, edit.end_line, edit.end_column),
        "insertedContent": {"text": edit.content},
    }


def _region(line: int, column: int, end_line: int, end_column: int) -> dict[str, int]:
    return {"startLine": line, "startColumn": column, "endLine": end_line, "endColumn": end_column}


def _level(severity: Severity) -> str:
    return "error" if severity is Severity.ERROR else "warning"


def relative_path(path: str) -> str | None:
    """``path`` relative to the current directory, with forward slashes; None
    when it lies outside the current directory."""
    absolute, here = os.path.abspath(path), os.getcwd()
    if os.path.commonpath([absolute, here]) != here:
        return None
    return PurePath(os.path.relpath(absolute, here)).as_posix()


def artifact_location(path: str) -> dict[str, str]:
    """A relative, percent-encoded URI below ``%SRCROOT%``, or a ``file:`` URI for
    a file outside the current directory."""
    relative = relative_path(path)
    if relative is None:
        return {"uri": Path(path).resolve().as_uri()}
    return {"uri": quote(relative, safe="/"), "uriBaseId": SOURCE_ROOT}
