"""The CPU priority of data-loader worker processes (``data.worker_niceness``).

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
"""

from __future__ import annotations

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


def worker_init(niceness: int) -> Callable[[int], None] | None:
    """The ``worker_init_fn`` for a loader whose workers get ``niceness`` (None when there is nothing to do)."""
    return partial(lower_priority, niceness) if niceness > 0 else None
