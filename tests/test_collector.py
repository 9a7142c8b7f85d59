"""The collector pauses while a file is linted, and frees the file's cycles after."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from bnlint.collector import collected_after, thaw
from bnlint.config import Config
from bnlint.engine import lint_source
from tests.conftest import BAD_MODEL


class Node:
    def __init__(self) -> None:
        self.partner: Node | None = None


@pytest.fixture
def collector_on() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    if not was_enabled:
        gc.disable()


@pytest.mark.usefixtures("collector_on")
def test_the_collector_pauses_inside_and_frees_the_cycles_after() -> None:
    with collected_after():
        assert not gc.isenabled()
        first, second = Node(), Node()
        first.partner, second.partner = second, first
        left = weakref.ref(first)
        del first, second
        assert left() is not None  # a cycle: only the collector frees it
    assert gc.isenabled()
    assert left() is None


@pytest.mark.usefixtures("collector_on")
def test_nested_uses_leave_the_pause_to_the_outer_one() -> None:
    with collected_after():
        with collected_after():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_an_error_in_the_body_still_turns_the_collector_back_on() -> None:
    with pytest.raises(ValueError), collected_after():
        raise ValueError
    assert gc.isenabled()


def test_a_caller_that_turned_the_collector_off_keeps_it_off() -> None:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with collected_after():
            pass
        assert not gc.isenabled()
    finally:
        if was_enabled:
            gc.enable()


@pytest.mark.usefixtures("collector_on")
def test_linting_a_file_leaves_the_collector_as_it_found_it() -> None:
    assert lint_source(BAD_MODEL, "train.py", Config())
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_survivors_asked_for_are_frozen_until_thawed() -> None:
    frozen_before = gc.get_freeze_count()
    with collected_after() as collection:
        kept = [Node() for _ in range(10)]
        collection.freeze_survivors = True
    assert gc.get_freeze_count() >= frozen_before + len(kept)
    thaw()
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("collector_on")
def test_survivors_are_not_frozen_unless_asked_for() -> None:
    frozen_before = gc.get_freeze_count()
    with collected_after():
        kept = [Node() for _ in range(10)]
    assert kept and gc.get_freeze_count() == frozen_before


@pytest.mark.usefixtures("collector_on")
def test_cycles_frozen_with_a_kept_tree_are_freed_once_thawed() -> None:
    with collected_after() as collection:
        first, second = Node(), Node()
        first.partner, second.partner = second, first
        left = weakref.ref(first)
        del first, second
        collection.freeze_survivors = True
    gc.collect()
    assert left() is not None  # frozen: no walk looks at it
    thaw()
    gc.collect()
    assert left() is None
