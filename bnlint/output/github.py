"""``--format github``: workflow commands that GitHub Actions turns into annotations
on the pull request, one per finding (here on two lines)::

    ::error file=train.py,line=12,col=5,endLine=12,endColumn=15,
    title=BNL004 (mode-call-missing-parens)::`model.eval` without a call does nothing...

Warnings use ``::warning``. Values are escaped as the runner expects: ``%``,
CR and LF everywhere, and ``:`` and ``,`` inside properties. A notebook
finding points at the line of the ``.ipynb`` file that holds the code, and its
message starts with the cell position (``cell 4:12:5: ...``).
"""

from __future__ import annotations

import os

from bnlint.diagnostic import Diagnostic, Severity
from bnlint.output import Report
from bnlint.output.sarif import relative_path


def render(report: Report) -> str:
    return "".join(annotation(d) + "\n" for d in report.diagnostics)


def annotation(diagnostic: Diagnostic) -> str:
    level = "error" if diagnostic.severity is Severity.ERROR else "warning"
    message = diagnostic.message
    properties: dict[str, object] = {"file": _path(diagnostic.path)}
    if "cell" in diagnostic.extra:
        message = f"{diagnostic.extra['location']}: {message}"
        properties["line"] = diagnostic.extra["notebook_line"]
    else:
        properties.update(
            line=diagnostic.line,
            col=diagnostic.column,
            endLine=diagnostic.end_line,
            endColumn=diagnostic.end_column,
        )
    properties["title"] = f"{diagnostic.code} ({diagnostic.name})"
    listed = ",".join(f"{key}={escape_property(str(value))}" for key, value in properties.items())
    return f"::{level} {listed}::{escape_data(message)}"


def _path(path: str) -> str:
    """Relative to the current directory (the workspace, in a workflow) with forward slashes."""
    return relative_path(path) or os.path.abspath(path)


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")
