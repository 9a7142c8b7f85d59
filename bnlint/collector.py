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
allocated frees the file's cycles.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collected_after() -> Iterator[None]:
    """Pause the collector for the body, then collect what it left. Nested uses,
    and callers that turned the collector off themselves, are left alone."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(0)
