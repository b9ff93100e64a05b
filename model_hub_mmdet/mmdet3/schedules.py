"""LR and momentum schedules: mmengine's own parameter schedulers, as a pure function of the batch index.

MMDetection 3.x configs describe schedules with ``param_scheduler``: a list of mmengine schedulers (``LinearLR``,
``CosineAnnealingLR``, ``MultiStepLR``, ``QuadraticWarmupLR``, momentum and generic ``*ParamScheduler`` ...), each
by epoch or by iteration, with ``begin``/``end`` and ``convert_to_iter_based``. mmengine's schedulers are
*chainable*: each value is computed from the value the optimizer holds, they step once in their constructor, and
the runner steps the iteration-based ones after every iteration (``ParamSchedulerHook.after_train_iter``) and the
epoch-based ones after every epoch. Stepping them on the real optimizer would make the value depend on history
(a resume, a rebuilt optimizer). So :class:`Schedule` runs mmengine's very classes, built as
``Runner._build_param_scheduler`` builds them, on a *shadow* optimizer that holds only the base hyperparameters
(captured when the optimizer was built), replays the runner's sequence of steps up to the batch asked for, and
copies the scheduled values into the real optimizer. Going forward one batch is one step; any other jump (a
resume) replays from the start, so the value at batch ``k`` is a pure function of ``k`` and the config.

How Determined's loop maps onto mmengine's runner:

* **Epochs.** Epoch ``e`` is batches ``[e * iters_per_epoch, (e + 1) * iters_per_epoch)``, ``iters_per_epoch``
  being the training loader's length per slot, as ``len(runner.train_dataloader)`` is for mmengine.
* **Length.** ``max_iters`` is the searcher's length in batches and replaces ``train_cfg.max_epochs`` /
  ``max_iters``: ``max_epochs = ceil(max_iters / iters_per_epoch)`` for an ``EpochBasedTrainLoop``, 1 for an
  ``IterBasedTrainLoop`` (as mmengine has it). They are the default ``end`` of schedulers without one.
* **Loop type.** Under an ``IterBasedTrainLoop`` mmengine never steps ``by_epoch`` schedulers during training;
  that is reproduced.
* **Past the end.** A batch index ``>= max_iters`` gets the last batch's values.
* ``ReduceOnPlateau*`` depends on validation metrics, not on the batch index, and is refused in one line.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.schedule_length import ScheduleLength

logger = logging.getLogger("model_hub_mmdet")

KEY = "param_scheduler"
_BUILD_ERRORS = (TypeError, ValueError, AssertionError, KeyError, IndexError, ZeroDivisionError)


class _ShadowOptimizer(torch.optim.Optimizer):
    """An optimizer with param groups of hyperparameters only: what mmengine's schedulers read and write."""

    def __init__(self, groups: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]) -> None:
        # torch's constructor wants parameters; the schedulers only use param_groups, defaults and step.
        self.param_groups = [copy.deepcopy(dict(g)) for g in groups]
        self.defaults = dict(defaults)
        self.state: dict = {}

    def step(self, closure: Any = None) -> None:
        return None


def hyperparameters(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The param groups of ``optimizer`` without their parameters (the base values a schedule starts from)."""
    return [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]


def loop_is_iter_based(train_cfg: Mapping[str, Any] | None) -> bool:
    """Whether ``train_cfg`` describes mmengine's ``IterBasedTrainLoop`` (or a subclass, or ``by_epoch=False``)."""
    train_cfg = train_cfg or {}
    if "type" not in train_cfg:
        return not train_cfg.get("by_epoch", True)
    from mmdet.registry import LOOPS
    from mmengine.runner import IterBasedTrainLoop

    cls = LOOPS.get(train_cfg["type"]) if isinstance(train_cfg["type"], str) else train_cfg["type"]
    if cls is None:
        raise ConfigError(f"train_cfg.type={train_cfg['type']!r} is not a registered training loop")
    return isinstance(cls, type) and issubclass(cls, IterBasedTrainLoop)


def scheduler_configs(param_scheduler: Any) -> list[Mapping[str, Any]]:
    """``param_scheduler`` as a list of scheduler dicts (None: no schedule)."""
    if param_scheduler is None:
        return []
    items = [param_scheduler] if isinstance(param_scheduler, Mapping) else param_scheduler
    if not isinstance(items, (list, tuple)) or not all(isinstance(s, Mapping) and "type" in s for s in items):
        raise ConfigError(f"{KEY} must be a scheduler dict with a 'type' or a list of them, got {param_scheduler!r}")
    return list(items)


class Schedule(ScheduleLength):
    """Applies a config's ``param_scheduler`` to an optimizer exactly as mmengine's runner does.

    Call :meth:`before_iter` with the global 0-based batch index before every optimizer step.

    Args:
        param_scheduler: the config's ``param_scheduler`` (a dict, a list of dicts, or None).
        optimizer: the real optimizer, whose param groups receive the scheduled values.
        base_groups: the optimizer's hyperparameters before any scheduling (:func:`hyperparameters`).
        iters_per_epoch: batches per epoch per slot (the train loader's length).
        max_iters: total batches of the run (the searcher's length).
        iter_based_loop: whether the config trains with an ``IterBasedTrainLoop``.
    """

    def __init__(
        self,
        param_scheduler: Any,
        optimizer: torch.optim.Optimizer,
        base_groups: Sequence[Mapping[str, Any]],
        iters_per_epoch: int,
        max_iters: int,
        iter_based_loop: bool = False,
    ) -> None:
        if iters_per_epoch < 1 or max_iters < 1:
            raise ValueError(f"iters_per_epoch and max_iters must be >= 1, got {iters_per_epoch} and {max_iters}")
        self.configs = scheduler_configs(param_scheduler)
        self.optimizer = optimizer
        self.base_groups = [dict(g) for g in base_groups]
        self.iters_per_epoch = iters_per_epoch
        self.max_iters = max_iters
        self.iter_based_loop = iter_based_loop
        self.max_epochs = 1 if iter_based_loop else math.ceil(max_iters / iters_per_epoch)
        self._warned_past_end = False
        self._position = -1
        self._rebuild()
        self.param_names = sorted({s.param_name for s in self.schedulers} | self._momentum_aliases())

    # -- construction ---------------------------------------------------------------------------------------
    def _rebuild(self) -> None:
        """Fresh schedulers on a fresh shadow optimizer: the state before batch 0 (their constructors step once)."""
        from mmdet.registry import PARAM_SCHEDULERS

        self.shadow = _ShadowOptimizer(self.base_groups, self.optimizer.defaults)
        self.schedulers = []
        for i, cfg in enumerate(self.configs):
            cfg = copy.deepcopy(dict(cfg))
            if cfg.get("type") in ("ReduceOnPlateauLR", "ReduceOnPlateauMomentum", "ReduceOnPlateauParamScheduler"):
                raise ConfigError(
                    f"{KEY}.{i}: {cfg['type']} follows validation metrics, so a resumed run could not continue it"
                    " exactly; use a schedule of epochs or iterations (e.g. MultiStepLR)"
                )
            # Runner._build_param_scheduler: the loop's length is the default end.
            cfg.setdefault("end", self.max_epochs if cfg.get("by_epoch", True) else self.max_iters)
            try:
                scheduler = PARAM_SCHEDULERS.build(
                    cfg, default_args=dict(optimizer=self.shadow, epoch_length=self.iters_per_epoch)
                )
            except _BUILD_ERRORS as err:
                text = " ".join(str(err).split()) or type(err).__name__
                raise ConfigError(f"{KEY}.{i} ({cfg.get('type')}) is invalid: {text}") from err
            self.schedulers.append(scheduler)
        self._position = 0

    def _momentum_aliases(self) -> set[str]:
        # mmengine's momentum schedulers keep Adam's beta1 under "momentum" and write it back into "betas".
        return {"betas"} if any(getattr(s, "use_betas", False) for s in self.schedulers) else set()

    # -- per iteration --------------------------------------------------------------------------------------
    def _step(self, batch_idx: int) -> None:
        """What the runner's ParamSchedulerHook does after iteration ``batch_idx``."""
        self.shadow.step()  # as the optimizer steps before the schedulers (mmengine warns otherwise)
        for scheduler in self.schedulers:
            if not scheduler.by_epoch:
                scheduler.step()
        if not self.iter_based_loop and (batch_idx + 1) % self.iters_per_epoch == 0:
            for scheduler in self.schedulers:
                if scheduler.by_epoch:
                    scheduler.step()

    def values_at(self, batch_idx: int) -> list[dict[str, Any]]:
        """The scheduled hyperparameters of every param group for 0-based batch ``batch_idx``."""
        batch_idx = self.within_schedule(batch_idx, "values")
        if batch_idx < self._position:
            self._rebuild()
        while self._position < batch_idx:
            self._step(self._position)
            self._position += 1
        return [{k: copy.deepcopy(g[k]) for k in self.param_names if k in g} for g in self.shadow.param_groups]

    def before_iter(self, batch_idx: int) -> None:
        """Set every param group's scheduled values for global 0-based batch ``batch_idx``, as mmengine's runner
        has them when it runs that iteration."""
        for group, values in zip(self.optimizer.param_groups, self.values_at(batch_idx)):
            group.update(values)

    def current_lr(self) -> float:
        """LR of param group 0 (for logging)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def current_momentum(self) -> float | None:
        """Momentum (or Adam's beta1) of param group 0, None if the optimizer has neither."""
        group = self.optimizer.param_groups[0]
        if "betas" in group:
            return float(group["betas"][0])
        return float(group["momentum"]) if "momentum" in group else None


def build_schedule(cfg: Mapping[str, Any], optimizer: torch.optim.Optimizer, base_groups: Sequence[Mapping[str, Any]],
                   iters_per_epoch: int, max_iters: int) -> Schedule:
    """The :class:`Schedule` of a config's ``param_scheduler`` and ``train_cfg``; ``max_iters`` (the searcher's
    length in batches) replaces ``train_cfg.max_epochs``/``max_iters``, and a difference is logged."""
    train_cfg = cfg.get("train_cfg") or {}
    iter_based = loop_is_iter_based(train_cfg)
    config_iters = train_cfg.get("max_iters") if iter_based else None
    if not iter_based and train_cfg.get("max_epochs") is not None:
        config_iters = int(train_cfg["max_epochs"]) * iters_per_epoch
    if config_iters is not None and config_iters != max_iters:
        logger.info("the schedule follows the searcher's length of %d batches (%.4g epochs of %d), not train_cfg's"
                    " %d batches", max_iters, max_iters / iters_per_epoch, iters_per_epoch, config_iters)
    return Schedule(cfg.get(KEY), optimizer, base_groups, iters_per_epoch, max_iters, iter_based_loop=iter_based)
