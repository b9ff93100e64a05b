"""What both generations' schedules do with a batch index: the run's length they were built for is the end.

A schedule (``mmdet2/schedules.py``: mmcv's LR/momentum hooks; ``mmdet3/schedules.py``: mmengine's parameter
schedulers) is computed for ``max_iters`` batches. A batch past the end (a run continued beyond its
``searcher.max_length``) keeps the last iteration's values, with one warning per schedule.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("model_hub_mmdet")


class ScheduleLength:
    """Mixin: :meth:`within_schedule` for a schedule of :attr:`max_iters` batches."""

    max_iters: int
    _warned_past_end: bool = False

    def within_schedule(self, batch_idx: int, kept: str) -> int:
        """``batch_idx`` (0-based, global), or the last iteration's when it is past the end (one warning naming
        ``kept``, what the schedule keeps); a negative index is a ValueError."""
        if batch_idx < 0:
            raise ValueError(f"batch_idx must be >= 0, got {batch_idx}")
        if batch_idx < self.max_iters:
            return batch_idx
        if not self._warned_past_end:
            logger.warning("batch %d is past the schedule's %d iterations; keeping the last iteration's %s",
                           batch_idx, self.max_iters, kept)
            self._warned_past_end = True
        return self.max_iters - 1
