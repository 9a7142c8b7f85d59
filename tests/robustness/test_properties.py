"""Generated programs keep every promise of ``properties.check_file``: linting
raises nothing, fixes parse, fixing is idempotent, nothing fixable is left, and
nothing outside the edits changes.

Inputs: PyTorch training code from building blocks (``generators``), every
fixture re-laid-out (newlines, tabs, BOM, Latin-1 cookie, noqa comments),
arbitrary Python from hypothesmith's grammar and LibCST strategies behind a
header that wakes every rule, and arbitrary text and bytes.
"""

from __future__ import annotations

import os

import hypothesmith
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bnlint.rules import ALL_RULES
from tests.fixture_cases import FIXTURES
from tests.robustness.generators import layout, training_files
from tests.robustness.properties import check_file

# Generation and LibCST are slow: no deadline, no health check for slow data.
# The "quick" profile keeps tests/robustness under 3 minutes on 2 cores;
# BNLINT_FUZZ=thorough runs ten times the examples (a nightly job, a sweep).
settings.register_profile("quick", deadline=None, suppress_health_check=list(HealthCheck))
settings.register_profile("thorough", settings.get_profile("quick"), print_blob=True)
PROFILE = os.environ.get("BNLINT_FUZZ", "quick")
FUZZ = settings.get_profile(PROFILE)
SCALE = 10 if PROFILE == "thorough" else 1


def fuzz(examples: int) -> settings:
    """The profile's settings with ``examples`` (times its scale) examples."""
    return settings(FUZZ, max_examples=examples * SCALE)


# A comment holding every rule's trigger text: all rules run on whatever follows.
WAKE_EVERY_RULE = (
    "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n# "
    + " ".join(sorted({trigger for rule in ALL_RULES for trigger in rule.triggers}))
    + "\n"
)
# BNL902's fixtures are not UTF-8 text, on purpose.
FIXTURE_FILES = sorted(
    path
    for path in FIXTURES.rglob("*.py")
    if path.is_file() and path.relative_to(FIXTURES).parts[0] != "BNL902"
)


# LibCST drops a form feed before a statement at column 0, and the positions on
# that line with it: BNL006's fix replaced `\fmodel.train(` and left the `)`.
@example(
    data=b"\x0cimport torch\nfrom torch import nn\n\nclass Block(nn.Module):\n    pass\n\n"
    b"\x0cmodel.train() \n\x0cwith torch.enable_grad(): \n    for x, y in val_loader: \n"
    b"        out = model(x) \n",
    unsafe=True,
)
# A tab-indented loop got a space-indented `with`; a form-feed line shifted the
# lines the fix re-indents (``str.splitlines`` splits at form feeds).
@example(
    data=b"import torch\nmodel.eval\nwith torch.enable_grad():\n\tfor x, y in val_loader:\n"
    b"\t\tout = model(x)\n",
    unsafe=False,
)
@example(
    data=b"import torch\n\x0c\nmodel.eval()\nwith torch.enable_grad():\n"
    b"    for x, y in val_loader:\n        out = model(x)\n",
    unsafe=False,
)
# BNL002 offered `@torch.no_grad()` on a function whose loop runs under
# `with torch.enable_grad():`: the decorator changes nothing, the fix repeated.
@example(
    data=b"import torch\n\ndef evaluate(model, loader):\n    model.eval()\n"
    b"    with torch.enable_grad():\n        for x, y in train_loader:\n"
    b"            out = model(x)\n    return out\n",
    unsafe=False,
)
@fuzz(150)
@given(data=training_files, unsafe=st.booleans())
def test_training_code(data: bytes, unsafe: bool) -> None:
    check_file(data, "train.py", unsafe)


@st.composite
def relaid_fixture(draw: st.DrawFn) -> bytes:
    """A fixture, with its lines re-indented and re-terminated by ``layout``,
    and noqa comments or trailing spaces on some lines."""
    text = draw(st.sampled_from(FIXTURE_FILES)).read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        spaces = len(line) - len(stripped)
        depth, rest = divmod(spaces, 4)
        extra = draw(st.sampled_from(["", "", "", "  # noqa", "  # noqa: BNL201"]))
        comment_safe = stripped and '"""' not in stripped and not stripped.endswith("\\")
        lines.append((depth, " " * rest + stripped + (extra if comment_safe else "")))
    return draw(layout(lines))


@fuzz(100)
@given(data=relaid_fixture(), unsafe=st.booleans())
def test_relaid_fixtures(data: bytes, unsafe: bool) -> None:
    check_file(data, "fixture.py", unsafe)


@fuzz(25)
@given(code=hypothesmith.from_grammar())
def test_grammar_programs(code: str) -> None:
    check_file((WAKE_EVERY_RULE + code).encode("utf-8", "surrogatepass"), "grammar.py", True)


@fuzz(10)
@given(code=hypothesmith.from_node())
def test_libcst_programs(code: str) -> None:
    check_file((WAKE_EVERY_RULE + code).encode("utf-8", "surrogatepass"), "node.py", True)


# Pieces of Python that tokenizers trip on, and any character at all.
PIECES = [*"()[]{}:=.,'\"#\\\n\r\t\f \x0b\x00\ufeff\xe9", "model.eval", "F.dropout(", "    "]


@fuzz(150)
@given(text=st.lists(st.sampled_from(PIECES) | st.characters(), max_size=120).map("".join))
def test_arbitrary_text(text: str) -> None:
    check_file((WAKE_EVERY_RULE + text).encode("utf-8", "surrogatepass"), "text.py", True)


@fuzz(150)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    check_file(data, "bytes.py", True)
    check_file(WAKE_EVERY_RULE.encode() + data, "bytes.py", True)
