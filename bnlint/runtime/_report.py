"""Turning runtime observations into :class:`~bnlint.diagnostic.Diagnostic` values.

Runtime findings are located at the user's own source line: the first stack
frame outside torch, bnlint and the stdlib decorator helpers. Codes and names
are the ones of the rule catalogue (RULES.md), so a runtime finding confirms
the static finding with the same code at the same line.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from types import CodeType, FrameType
from typing import NamedTuple

import torch

from bnlint.diagnostic import Diagnostic, Severity

NAMES = {
    "BNL001": "eval-loop-in-train-mode",
    "BNL002": "eval-loop-without-no-grad",
    "BNL003": "train-mode-not-restored",
    "BNL005": "export-in-train-mode",
    "BNL101": "frozen-bn-still-updates",
    "BNL103": "track-running-stats-toggled",
    "BNL106": "inference-with-batch-statistics",
    "BNL201": "functional-dropout-always-on",
    "BNL203": "attention-dropout-always-on",
    "BNL301": "evaluation-on-training-data",
}
# Batch statistics at inference can be a deliberate choice (RULES.md allows a noqa).
_WARNINGS = {"BNL106"}

_BNLINT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_SKIPPED_DIRS = (os.path.dirname(torch.__file__) + os.sep, _BNLINT_DIR)
# Decorators such as contextlib.ContextDecorator wrap user functions in stdlib frames.
_SKIPPED_FILES = frozenset({contextlib.__file__, functools.__file__})
# Functions that run train-mode forward passes on purpose to recompute BatchNorm statistics.
_RECALIBRATORS = frozenset({"update_bn", "recalibrate_batchnorm"})


class Where(NamedTuple):
    """A user source position: file, line, and the code/instruction to find the column."""

    path: str
    line: int
    code: CodeType | None = None
    lasti: int = -1

    @property
    def key(self) -> tuple[str, int]:
        return (self.path, self.line)


def _skipped(filename: str) -> bool:
    return filename.startswith(_SKIPPED_DIRS) or filename in _SKIPPED_FILES


def user_frame(frame: FrameType | None) -> tuple[Where, bool]:
    """The first user frame at or above ``frame``, and whether a recalibrator is on the way."""
    recalibrating = False
    while frame is not None:
        code = frame.f_code
        if not _skipped(code.co_filename):
            return Where(code.co_filename, frame.f_lineno, code, frame.f_lasti), recalibrating
        recalibrating = recalibrating or code.co_name in _RECALIBRATORS
        frame = frame.f_back
    return Where("<unknown>", 1), recalibrating


def caller(depth: int = 1) -> tuple[Where, bool]:
    """:func:`user_frame` starting ``depth`` frames above the function that calls this."""
    return user_frame(sys._getframe(depth + 1))


def _span(where: Where) -> tuple[int, int, int, int]:
    """(line, column, end_line, end_column), 1-based, of the call expression at ``where``."""
    positions = getattr(where.code, "co_positions", None)  # Python >= 3.11
    if positions is None or where.lasti < 0:
        return where.line, 1, where.line, 1
    for index, (line, end_line, col, end_col) in enumerate(positions()):
        if index == where.lasti // 2:
            if line is None or col is None:
                break
            return line, col + 1, end_line or line, (end_col or col) + 1
    return where.line, 1, where.line, 1


def diagnostic(
    code: str, where: Where, message: str, *, module: str = "", model: str = ""
) -> Diagnostic:
    line, column, end_line, end_column = _span(where)
    return Diagnostic(
        path=where.path,
        line=line,
        column=column,
        end_line=end_line,
        end_column=end_column,
        code=code,
        name=NAMES[code],
        message=message,
        severity=Severity.WARNING if code in _WARNINGS else Severity.ERROR,
        extra={"module": module, "model": model, "source": "runtime"},
    )
