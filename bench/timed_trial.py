"""``MMDetTrial`` that appends a timestamp per training batch to ``$BENCH_STAMPS`` (rank 0; benchmarks only).

Used as ``model-hub-mmdet train EXP --local --trial bench.timed_trial:TimedTrial`` from the repository root.
"""

from __future__ import annotations

import os
import time
from typing import Any

from model_hub_mmdet.mmdet2.trial import MMDetTrial


class TimedTrial(MMDetTrial):
    def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> Any:
        metrics = super().train_batch(batch, epoch_idx, batch_idx)
        path = os.environ.get("BENCH_STAMPS")
        if path and self.context.distributed.get_rank() == 0:
            with open(path, "a") as f:
                f.write(f"{time.monotonic()}\n")
        return metrics
