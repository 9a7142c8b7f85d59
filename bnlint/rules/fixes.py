"""Fix builders shared by several rules."""

from __future__ import annotations

import libcst as cst

from bnlint.analysis.model import SemanticModel
from bnlint.rules.base import Anchor, FixPlan, NodeEdit


def set_keyword(
    model: SemanticModel,
    call: cst.Call,
    arg: cst.Arg | None,
    keyword: str,
    value: str,
    *,
    safe: bool,
) -> FixPlan | None:
    """Set ``keyword=value`` on ``call``: replace the given argument's value, or add
    the keyword after the last argument (on a line of its own when the call puts
    one argument per line and ends with a trailing comma)."""
    if arg is not None:
        edit = NodeEdit(arg.value, Anchor.REPLACE, value)
    elif not call.args:
        return None
    else:
        separator = _one_per_line_separator(model, call) or " "
        edit = NodeEdit(call.args[-1].value, Anchor.AFTER, f",{separator}{keyword}={value}")
    return FixPlan((edit,), safe=safe, description=f"Pass `{keyword}={value}`")


def _one_per_line_separator(model: SemanticModel, call: cst.Call) -> str | None:
    """A newline plus the last argument's indentation, if the last argument sits on
    its own line and is followed by a trailing comma and a line break."""
    last = call.args[-1]
    if not (isinstance(last.comma, cst.Comma) and _breaks_line(last.comma.whitespace_after)):
        return None
    before_last = call.args[-2].comma if len(call.args) > 1 else None
    opening = (
        before_last.whitespace_after
        if isinstance(before_last, cst.Comma)
        else call.whitespace_before_args
    )
    if not _breaks_line(opening):
        return None
    column = model.positions[last].start.column
    return model.module.default_newline + " " * column


def _breaks_line(whitespace: cst.BaseParenthesizableWhitespace) -> bool:
    return isinstance(whitespace, cst.ParenthesizedWhitespace)
