"""Validation predictions of every slot, gathered for one evaluation on the chief (both generations).

Each slot predicts its share of the validation batches; :class:`PredictionGatherer` (a Determined
``MetricReducer``) collects ``(dataset index, result)`` pairs from every slot, puts them back in dataset order and
calls the generation's evaluation once, on the chief.

When that evaluation raises, the user sees one line naming the method and the error (:class:`EvaluationError`),
with the traceback in the debug log. Determined wraps a reducer's exception in a ``ValueError`` whose message
holds ``repr(per_slot_metrics)``: every prediction's arrays and RLE strings. So each slot's predictions travel as
:class:`SlotPredictions`, whose repr is a count, and with ``defer_errors`` the chief does not raise inside
Determined's reducer at all: it returns :data:`ERROR_KEY` with the line, and the trial's ``on_validation_end``
(which Determined runs on every slot, with the chief's metrics) raises it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from determined import pytorch

from model_hub_mmdet.errors import UserError

logger = logging.getLogger("model_hub_mmdet")

ERROR_KEY = "model_hub_mmdet_evaluation_error"  # a validation "metric" carrying a deferred evaluation error


class EvaluationError(UserError):
    """The evaluation of the gathered predictions failed; the message is one line naming the method and error."""


class SlotPredictions(list):
    """One slot's ``(dataset index, result)`` pairs; its repr is a count, not the predictions."""

    def __repr__(self) -> str:
        return f"<{len(self)} predictions>"


def method_name(func: Callable[..., Any]) -> str:
    """``FrozenBackboneTrial.evaluate`` for a bound method (the class of the instance), else the qualified name."""
    owner = getattr(func, "__self__", None)
    name = getattr(func, "__name__", repr(func))
    return f"{type(owner).__name__}.{name}" if owner is not None else getattr(func, "__qualname__", name)


def evaluation_error(func: Callable[..., Any], err: BaseException) -> EvaluationError:
    """The one-line error for ``func`` having raised ``err`` (the first line of its message)."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return EvaluationError(f"validation: {method_name(func)} raised {type(err).__name__}" + (
        f": {message}" if message else "") + " (the traceback is in the debug log: --debug)")


def raise_deferred_error(metrics: dict[str, Any]) -> None:
    """Raise the :class:`EvaluationError` a ``defer_errors`` gatherer put into the validation metrics, if any."""
    message = metrics.get(ERROR_KEY)
    if message:
        raise EvaluationError(str(message))


class PredictionGatherer(pytorch.MetricReducer):
    """Collects per-image predictions on each slot and evaluates the whole dataset on the chief.

    ``evaluate`` is called as ``evaluate(results=[...])`` in dataset order, or ``evaluate(results=[...],
    indices=[...])`` for a partial validation. Every validation image must have been predicted once, except
    when ``partial_ok()`` gives a reason (Determined's test mode validates one batch per slot; skipped bad
    images): then the images that were predicted are evaluated, and a log line says how many and why.

    An error of ``evaluate`` becomes one :class:`EvaluationError` line (traceback logged at DEBUG). With
    ``defer_errors`` it is returned as ``{ERROR_KEY: line}`` for :func:`raise_deferred_error` to raise outside
    Determined's reducer wrapper.
    """

    def __init__(
        self,
        evaluate: Callable[..., dict[str, float]],
        dataset_size: int,
        partial_ok: Callable[[], str | bool | None] = lambda: None,
        defer_errors: bool = False,
    ) -> None:
        self.evaluate = evaluate
        self.defer_errors = defer_errors
        self.dataset_size = dataset_size
        self.partial_ok = partial_ok
        self.reset()

    def reset(self) -> None:
        self.items: list[tuple[int, Any]] = []

    def update(self, indices: Iterable[int], results: Iterable[Any]) -> None:
        self.items.extend(zip((int(i) for i in indices), results))

    def per_slot_reduce(self) -> SlotPredictions:
        return SlotPredictions(self.items)

    def cross_slot_reduce(self, per_slot_metrics: list[list[tuple[int, Any]]]) -> dict[str, Any]:
        try:
            return self._reduce(per_slot_metrics)
        except EvaluationError as err:
            if self.defer_errors:
                return {ERROR_KEY: str(err)}
            raise

    def _evaluate(self, **kwargs: Any) -> dict[str, float]:
        """``self.evaluate(**kwargs)`` (keywords: an override keeping the documented names keeps working); any
        error becomes one :class:`EvaluationError` line."""
        try:
            return self.evaluate(**kwargs)
        except UserError as err:  # already one line naming its cause (e.g. an annotation file)
            raise EvaluationError(f"validation: {method_name(self.evaluate)}: {err}") from err
        except Exception as err:
            logger.debug("validation: %s failed", method_name(self.evaluate), exc_info=True)
            raise evaluation_error(self.evaluate, err) from None

    def _reduce(self, per_slot_metrics: list[list[tuple[int, Any]]]) -> dict[str, float]:
        by_index: dict[int, Any] = {}
        for items in per_slot_metrics:
            for idx, result in items:
                if idx in by_index:
                    raise RuntimeError(f"validation image {idx} was predicted by more than one slot")
                by_index[idx] = result
        missing = self.dataset_size - len(by_index)
        if not missing:
            return self._evaluate(results=[by_index[i] for i in range(self.dataset_size)])
        reason = self.partial_ok()
        if not reason:
            raise RuntimeError(f"validation covered {len(by_index)} of {self.dataset_size} images ({missing} missing)")
        covered = sorted(by_index)
        logger.info("%s: evaluating the %d of %d validation images that were predicted",
                    reason if isinstance(reason, str) else "partial validation", len(covered), self.dataset_size)
        return self._evaluate(results=[by_index[i] for i in covered], indices=covered)
