"""The garbage collector paused while a trial builds its datasets and model.

Loading a COCO-size annotation file creates millions of dicts and lists in one go (``json.load``, then
pycocotools' index and the dataset's records). CPython's collector runs every few hundred new containers and,
as the heap grows, keeps walking the older generations too: on COCO 2017's training file that walking costs
about as much as the parse itself, and it finds nothing, since parsed JSON holds no reference cycles. Pausing
the collector for the build removes that cost (bench/startup.py measures it); whatever cycles the build leaves are
collected once the collector runs again. MMDetection's runners leave it on.

``MODEL_HUB_MMDET_GC_PAUSE=0`` leaves the collector on (the switch bench/startup.py compares).
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator

ENV = "MODEL_HUB_MMDET_GC_PAUSE"

__all__ = ["ENV", "gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with Python's cyclic garbage collector disabled, then enable it again (if it was on before:
    a nested pause, or a program that runs without the collector, is left as it is)."""
    if not gc.isenabled() or os.environ.get(ENV, "1") == "0":
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
