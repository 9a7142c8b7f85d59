"""Fix builders shared by several rules."""

from __future__ import annotations

import libcst as cst

from bnlint.rules.base import Anchor, FixPlan, NodeEdit


def set_keyword(
    call: cst.Call, arg: cst.Arg | None, keyword: str, value: str, *, safe: bool
) -> FixPlan | None:
    """Set ``keyword=value`` on ``call``: replace the given argument's value, or add
    the keyword after the last argument (before its trailing comma, if any)."""
    if arg is not None:
        edit = NodeEdit(arg.value, Anchor.REPLACE, value)
    else:
        if not call.args:
            return None
        last = call.args[-1]
        edit = NodeEdit(last.value, Anchor.AFTER, f", {keyword}={value}")
    return FixPlan((edit,), safe=safe, description=f"Pass `{keyword}={value}`")
