"""``# noqa`` in every spelling, honoured by the CLI."""

from __future__ import annotations

import pytest

from bnlint.config import Config
from bnlint.engine import lint_source

SOURCE = """\
import torch.nn.functional as F
from torch import nn


class Head(nn.Module):
    def forward(self, x):
        return F.dropout(x, 0.1){comment}
"""

MULTILINE = """\
import torch.nn.functional as F
from torch import nn


class Head(nn.Module):
    def forward(self, x):
        return F.dropout({first}
            x,
            0.1,
        ){last}
"""


def found(source: str) -> list[str]:
    return [d.code for d in lint_source(source, "m.py", Config())]


@pytest.mark.parametrize(
    "comment",
    [
        "  # noqa",
        "  # NOQA",
        "  # noqa: BNL201",
        "  # noqa:BNL201",
        "  # noqa: BNL004,BNL201",
        "  # noqa: BNL004, BNL201",
        "  # noqa: BNL004 BNL201",
        "  # noqa: bnl201",
        "  # noqa: BNL2",
        "  # some note  # noqa: BNL201",
    ],
)
def test_noqa_suppresses(comment: str) -> None:
    assert found(SOURCE.format(comment=comment)) == []


@pytest.mark.parametrize("comment", ["", "  # noqa: BNL004", "  # noqa: E501", "  # no qa"])
def test_other_comments_do_not(comment: str) -> None:
    assert found(SOURCE.format(comment=comment)) == ["BNL201"]


@pytest.mark.parametrize(("first", "last"), [("  # noqa: BNL201", ""), ("", "  # noqa: BNL201")])
def test_noqa_on_first_or_last_line_of_a_multiline_call(first: str, last: str) -> None:
    assert found(MULTILINE.format(first=first, last=last)) == []
    assert found(MULTILINE.format(first="", last="")) == ["BNL201"]


def test_noqa_can_be_disabled_for_flake8() -> None:
    source = SOURCE.format(comment="  # noqa")
    assert [d.code for d in lint_source(source, "m.py", Config(), noqa=False)] == ["BNL201"]
