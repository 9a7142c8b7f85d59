"""When Python's cyclic garbage collector runs while bnlint lints a file.

By default the collector runs after every 700 new objects, and every few runs
it walks every live object. Parsing one file builds hundreds of thousands of
nodes, and the workers keep parsed trees for the project rounds, so the
collector kept walking trees that cannot be garbage: pausing it made a cold
run over yolov5 or ultralytics 10-15% faster (in-process, alternating runs).
LibCST trees hold no cycles, so reference counting frees them; the cycles a
lint makes are its semantic model and analysis, which point back at each other.

So the collector pauses while one file is linted, and its youngest
generation is collected once afterwards: one walk over what the file
allocated frees the file's cycles. A tree kept for the next round would
survive that walk and be walked again by every collection of the older
generations (a tenth of a second per worker on ultralytics, at the start of
the second round), so a lint that keeps one asks for what it allocated to be
frozen instead: set aside where the collector does not look until ``thaw``.
It is frozen without the walk, which would cost more than it frees: on
yolov5 the walks over kept trees took 22 ms to find 9,000 objects of garbage
(the analyses' cycles), left until the run thaws them.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Collection:
    """What the body of ``collected_after`` asks of the collection after it."""

    freeze_survivors: bool = False


@contextmanager
def collected_after() -> Iterator[Collection]:
    """Pause the collector for the body, then collect what it left. Nested uses,
    and callers that turned the collector off themselves, are left alone."""
    collection = Collection()
    if not gc.isenabled():
        yield collection
        return
    gc.disable()
    try:
        yield collection
    finally:
        gc.enable()
        if collection.freeze_survivors:
            _freeze()
        else:
            gc.collect(0)


_frozen = False  # has this process frozen anything since it last thawed?


def _freeze() -> None:
    global _frozen
    gc.freeze()
    _frozen = True


def thaw() -> None:
    """Let the collector see again what ``freeze_survivors`` set aside (and
    anything frozen before it: gc has one frozen generation)."""
    global _frozen
    if _frozen:
        gc.unfreeze()
        _frozen = False
