"""Validation predictions of every slot, gathered for one evaluation on the chief (both generations).

Each slot predicts its share of the validation batches; :class:`PredictionGatherer` (a Determined
``MetricReducer``) collects ``(dataset index, result)`` pairs from every slot, puts them back in dataset order and
calls the generation's evaluation once, on the chief.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from determined import pytorch

logger = logging.getLogger("model_hub_mmdet")


class PredictionGatherer(pytorch.MetricReducer):
    """Collects per-image predictions on each slot and evaluates the whole dataset on the chief.

    Every validation image must have been predicted once, except when ``partial_ok()`` gives a reason
    (Determined's test mode validates one batch per slot; skipped bad images): then the images that were
    predicted are evaluated, and a log line says how many and why.
    """

    def __init__(
        self,
        evaluate: Callable[..., dict[str, float]],
        dataset_size: int,
        partial_ok: Callable[[], str | bool | None] = lambda: None,
    ) -> None:
        self.evaluate = evaluate
        self.dataset_size = dataset_size
        self.partial_ok = partial_ok
        self.reset()

    def reset(self) -> None:
        self.items: list[tuple[int, Any]] = []

    def update(self, indices: Iterable[int], results: Iterable[Any]) -> None:
        self.items.extend(zip((int(i) for i in indices), results))

    def per_slot_reduce(self) -> list[tuple[int, Any]]:
        return self.items

    def cross_slot_reduce(self, per_slot_metrics: list[list[tuple[int, Any]]]) -> dict[str, float]:
        by_index: dict[int, Any] = {}
        for items in per_slot_metrics:
            for idx, result in items:
                if idx in by_index:
                    raise RuntimeError(f"validation image {idx} was predicted by more than one slot")
                by_index[idx] = result
        missing = self.dataset_size - len(by_index)
        if not missing:
            return self.evaluate([by_index[i] for i in range(self.dataset_size)])
        reason = self.partial_ok()
        if not reason:
            raise RuntimeError(f"validation covered {len(by_index)} of {self.dataset_size} images ({missing} missing)")
        covered = sorted(by_index)
        logger.info("%s: evaluating the %d of %d validation images that were predicted",
                    reason if isinstance(reason, str) else "partial validation", len(covered), self.dataset_size)
        return self.evaluate([by_index[i] for i in covered], covered)
