"""What every data-loader worker process does first: its CPU priority (``data.worker_niceness``) and its heap.

When the model trains on the CPU, its intra-op threads occupy every core. A loader worker that wakes up to
prepare the next batch then preempts one of those threads, and the others wait for it at their next
synchronisation point: a millisecond of loading costs up to a millisecond of the whole step. At a lower
priority the worker runs in the moments the training threads leave a core free instead, and when the training
process does wait for a batch nothing else wants the cores, so loading is never slower than doing it in the
training process itself. Measured on the shapes demo (2 cores, 2 threads, 1 worker; ``bench/compute.py``):
0.388 s per step with the worker at normal priority, 0.336 s at niceness 19, 0.332 s for pure compute.

On a GPU the training threads mostly wait for the device and leave the cores to the workers, so the default
leaves the workers' priority alone there.

Setting, in the experiment config's ``data`` section: ``worker_niceness: auto`` (the default: 19 when the trial
trains on the CPU, 0 otherwise) or an integer from 0 to 19 added to each worker's niceness.

**The heap.** A worker decodes full-size images (a few MB each) and frees them a moment later. glibc's malloc
raises its mmap threshold to the size of the largest block freed, so after the first image every later one comes
from the heap, and the heap keeps its high-water mark as private memory for the rest of the worker's life (the
small objects allocated between the images keep it from being trimmed). Fixing the threshold (and the trim
threshold) in each worker sends large blocks back to the system when freed, at the cost of a fresh mapping per
image. Before the fork, the training process gives its heap's free pages back and plugs the holes that building
the dataset left (:func:`plug_heap_holes`), so the workers' own allocations do not land in pages they share with
it. ``MODEL_HUB_MMDET_WORKER_MALLOC=0`` leaves all of this to glibc's defaults (bench/loader_memory.py measures
both).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable
from functools import partial
from typing import Any

from model_hub_mmdet.errors import ConfigError

SETTING = "data.worker_niceness"
CPU_NICENESS = 19  # the lowest priority: the workers only take what the training threads leave


def worker_niceness(setting: Any, device_type: str) -> int:
    """The niceness to add to each loader worker, from the experiment's ``data.worker_niceness`` (None or
    ``auto``: :data:`CPU_NICENESS` when ``device_type`` is ``cpu``, else 0). A bad value is a one-line
    :class:`~model_hub_mmdet.errors.ConfigError` naming the setting."""
    if setting is None or setting == "auto":
        return CPU_NICENESS if device_type == "cpu" else 0
    if isinstance(setting, bool) or not isinstance(setting, int) or not 0 <= setting <= 19:
        raise ConfigError(
            f"{SETTING} must be auto or an integer from 0 (the training process's priority) to 19 (the lowest),"
            f" got {setting!r}"
        )
    return setting


def lower_priority(niceness: int, worker_id: int) -> None:
    """A loader's ``worker_init_fn``: add ``niceness`` to this worker's niceness before it loads anything (the
    threads it starts later, such as the queue's feeder, inherit it)."""
    if niceness > 0 and hasattr(os, "nice"):
        try:
            os.nice(niceness)
        except OSError:  # a sandbox that forbids it: the worker keeps its priority
            pass


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
HEAP_THRESHOLD = 128 * 1024  # glibc's initial mmap threshold, kept from changing
heap_bounded = False  # set by bound_heap in the processes it tuned


def _tunable_libc() -> ctypes.CDLL | None:
    """glibc, when this process may tune its heap: None off glibc (musl, macOS) or with
    ``MODEL_HUB_MMDET_WORKER_MALLOC=0``."""
    if os.environ.get("MODEL_HUB_MMDET_WORKER_MALLOC", "1") == "0":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if all(hasattr(libc, name) for name in ("mallopt", "malloc_trim", "sbrk")) else None


def bound_heap() -> bool:
    """Fix glibc malloc's mmap and trim thresholds in this process (see the module docstring); returns whether
    they were set (False off glibc, or with ``MODEL_HUB_MMDET_WORKER_MALLOC=0``)."""
    global heap_bounded
    libc = _tunable_libc()
    if libc is None:
        return False
    heap_bounded = (bool(libc.mallopt(M_MMAP_THRESHOLD, HEAP_THRESHOLD))
                    and bool(libc.mallopt(M_TRIM_THRESHOLD, HEAP_THRESHOLD)))
    return heap_bounded


def release_free_heap() -> bool:
    """Give the free pages inside this process's malloc heaps back to the system (glibc's ``malloc_trim``), before
    the loader forks its workers: what building the dataset freed (the JSON text, the parsed file) stays in the
    heap as free chunks, and a worker that later allocates into one of them copies its page. Returns whether
    glibc trimmed anything (False off glibc or with ``MODEL_HUB_MMDET_WORKER_MALLOC=0``)."""
    libc = _tunable_libc()
    return libc is not None and bool(libc.malloc_trim(0))


MAX_PLUGS = 1 << 18  # a bound on the loop below, far above the few thousand holes a COCO-size start leaves
_plugs: list[int] = []  # never freed: freeing them after the fork would copy their pages in this process


def plug_heap_holes(largest: int = 1 << 20, smallest: int = 32) -> int:
    """Fill the free chunks inside this process's main malloc heap with blocks that are never used or freed, just
    before the loader forks its workers; returns how many were filled (0 off glibc or with
    ``MODEL_HUB_MMDET_WORKER_MALLOC=0``).

    Building a large dataset frees a great deal (the JSON text, the parsed file, pycocotools' index) and leaves holes
    between the objects that stay. A forked worker would put its own allocations into those holes, and each one
    copies a page it shares with the parent. With the holes taken, a worker allocates at the top of the heap instead,
    into pages of its own. A block counts as a hole when the heap did not grow for it and it does not lie at its top."""
    libc = _tunable_libc()
    if libc is None:
        return 0
    malloc, free, sbrk = libc.malloc, libc.free, libc.sbrk
    malloc.restype, malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    free.argtypes = [ctypes.c_void_p]
    sbrk.restype, sbrk.argtypes = ctypes.c_void_p, [ctypes.c_ssize_t]
    filled, size = 0, largest
    while size >= smallest and filled < MAX_PLUGS:
        top = sbrk(0)
        block = malloc(size)
        if not block:
            break
        if top is None or sbrk(0) != top or block >= top - 2 * HEAP_THRESHOLD:  # grew, near the top, or mapped
            free(block)
            size //= 2
            continue
        _plugs.append(block)
        filled += 1
    return filled


def init_worker(niceness: int, worker_id: int) -> None:
    """A loader's ``worker_init_fn``: the worker's priority, then its heap."""
    lower_priority(niceness, worker_id)
    bound_heap()


def worker_init(niceness: int) -> Callable[[int], None]:
    """The ``worker_init_fn`` for a loader whose workers get ``niceness``."""
    return partial(init_worker, niceness)
