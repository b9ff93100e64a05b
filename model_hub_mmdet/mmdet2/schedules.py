"""LR and momentum schedules: mmcv's own updater hooks, driven by the global batch index.

MMDetection configs describe schedules with ``lr_config`` and ``momentum_config``. mmcv turns them into
``<Policy>LrUpdaterHook`` / ``<Policy>MomentumUpdaterHook`` objects that its runner calls around every
iteration. Re-implementing the policies would drift from mmcv (the old integration got epoch-based cosine
wrong and ignored momentum), so :class:`Schedule` builds those very hooks, exactly as
``BaseRunner.register_lr_hook`` / ``register_momentum_hook`` do, and calls them on a small stand-in runner
that exposes what they read (``optimizer``, ``iter``, ``epoch``, ``inner_iter``, ``max_iters``,
``max_epochs``, ``len(data_loader)``).

How Determined's loop maps onto mmcv's runner:

* **Epochs.** Determined has no epochs of its own for the schedule: epoch ``e`` is batches
  ``[e * iters_per_epoch, (e + 1) * iters_per_epoch)``, ``iters_per_epoch`` being the train loader's length
  per slot, as ``len(runner.data_loader)`` is for mmcv.
* **Length.** ``max_iters`` is the searcher's length in batches and wins over the config's ``runner``
  section. mmcv's ``EpochBasedRunner`` uses ``max_iters = max_epochs * len(loader)``; here
  ``max_epochs = ceil(max_iters / iters_per_epoch)``. With a searcher length of whole epochs both agree.
* **Runner type.** With an ``EpochBasedRunner`` (MMDetection's default) the hooks get
  ``before_train_epoch`` and ``before_train_iter``; with an ``IterBasedRunner`` only ``before_train_iter``
  and ``lr_config.by_epoch`` defaults to False, as in mmcv. mmcv never applies a ``by_epoch=True`` hook
  under an ``IterBasedRunner`` (it stays at the optimizer's values); that is reproduced, with a warning.
* **Resume.** ``before_iter(k)`` is a pure function of ``k`` and the base values (``initial_lr`` /
  ``initial_momentum``, which mmcv keeps in the param groups and so in Determined's optimizer state), so
  it is right for any ``k``: the first batch after a resume with a freshly built optimizer gets the same LR
  as in an uninterrupted run and nothing compounds.
* **Past the end.** A batch index ``>= max_iters`` (which mmcv never runs) gets the last batch's values.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping
from typing import Any

import torch

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.schedule_length import ScheduleLength

logger = logging.getLogger(__name__)

_LR_KEY, _LR_SUFFIX = "lr_config", "LrUpdaterHook"
_MOMENTUM_KEY, _MOMENTUM_SUFFIX = "momentum_config", "MomentumUpdaterHook"
# Pairs of arguments of which mmcv asserts (without a message) that exactly one is given.
_EXCLUSIVE_ARGS = (("min_lr", "min_lr_ratio"), ("min_momentum", "min_momentum_ratio"))
_HOOK_ERRORS = (TypeError, ValueError, AssertionError, KeyError, IndexError, ZeroDivisionError)


class _EpochLength:
    """Stands in for ``runner.data_loader``: the hooks only ever call ``len()`` on it."""

    def __init__(self, length: int) -> None:
        self._length = length

    def __len__(self) -> int:
        return self._length


class _RunnerView:
    """The attributes of mmcv's ``BaseRunner`` that LR/momentum updater hooks read."""

    def __init__(self, optimizer: torch.optim.Optimizer, iters_per_epoch: int, max_iters: int, by_iter: bool):
        self.optimizer = optimizer
        self.data_loader = _EpochLength(iters_per_epoch)
        self.max_iters = self._max_iters = max_iters
        # IterBasedRunner has no max_epochs; by_epoch hooks never compute a value there.
        self.max_epochs = self._max_epochs = None if by_iter else math.ceil(max_iters / iters_per_epoch)
        self.iter = self.epoch = self.inner_iter = 0
        self.mode = "train"


def _hook_registry():
    from mmcv.runner.hooks import HOOKS

    return HOOKS


def _register_mmdet_hooks() -> None:
    """Import MMDetection's hooks (e.g. ``YOLOXLrUpdaterHook``) so their policies resolve as in mmdet's train."""
    try:
        import mmdet.core.hook  # noqa: F401
    except ImportError:  # mmdet absent or broken: mmcv's own policies still work
        logger.debug("mmdet.core.hook not importable; only mmcv's schedule policies are available", exc_info=True)


def available_policies() -> dict[str, list[str]]:
    """Policy names accepted by ``lr_config`` and ``momentum_config`` (mmcv's and MMDetection's)."""
    _register_mmdet_hooks()
    names = sorted(_hook_registry().module_dict)
    return {
        _LR_KEY: [n[: -len(_LR_SUFFIX)] for n in names if n.endswith(_LR_SUFFIX) and n != _LR_SUFFIX],
        _MOMENTUM_KEY: [
            n[: -len(_MOMENTUM_SUFFIX)] for n in names if n.endswith(_MOMENTUM_SUFFIX) and n != _MOMENTUM_SUFFIX
        ],
    }


def hook_type_for(policy: str, suffix: str) -> str:
    """mmcv's rule: an all-lowercase policy is title-cased (``'step'`` -> ``'Step'``), others kept as written."""
    return (policy.title() if policy == policy.lower() else policy) + suffix


def _hook_class(key: str, policy: Any, suffix: str) -> type:
    if not isinstance(policy, str) or not policy:
        raise ConfigError(f"{key} needs a 'policy' string such as policy='step'; got policy={policy!r}")
    hook_type = hook_type_for(policy, suffix)
    cls = _hook_registry().get(hook_type)
    if cls is None:
        _register_mmdet_hooks()
        cls = _hook_registry().get(hook_type)
    if cls is None:
        known = ", ".join(available_policies()[key])
        raise ConfigError(f"{key}.policy={policy!r} is unknown (no {hook_type} registered); use one of: {known}")
    return cls


def accepted_args(cls: type) -> set[str]:
    """Keyword arguments a hook class takes, following ``**kwargs`` up to the base updater hook."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names.update(p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def _check_args(key: str, policy: str, cls: type, args: Mapping[str, Any]) -> None:
    accepted = accepted_args(cls)
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise ConfigError(f"{key} has unknown key(s) {', '.join(map(repr, unknown))} for policy={policy!r}; "
                          f"mmcv's {cls.__name__} takes: {', '.join(sorted(accepted))}")
    params = accepted
    for first, second in _EXCLUSIVE_ARGS:
        if first in params and second in params and (args.get(first) is None) == (args.get(second) is None):
            raise ConfigError(f"{key} (policy={policy!r}) needs exactly one of {first} or {second}")


def build_updater_hook(config: Mapping[str, Any], key: str = _LR_KEY):
    """Build the mmcv hook for one ``lr_config`` (``key='lr_config'``) or ``momentum_config`` exactly as
    ``BaseRunner.register_lr_hook`` / ``register_momentum_hook`` do, without mutating ``config``.

    Raises :class:`ConfigError` naming ``key`` for an unknown policy or arguments the hook rejects.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"{key} must be a dict with a 'policy' key, got {type(config).__name__}")
    suffix = _LR_SUFFIX if key == _LR_KEY else _MOMENTUM_SUFFIX
    args = dict(config)
    policy = args.pop("policy", None)
    cls = _hook_class(key, policy, suffix)
    args.pop("type", None)  # mmcv overwrites it with the policy's hook type
    if isinstance(args.get("target_ratio"), list):
        # YAML and dotted overrides have no tuples; mmcv's cyclic hooks accept only float or tuple.
        args["target_ratio"] = tuple(args["target_ratio"])
    _check_args(key, policy, cls, args)
    try:
        return cls(**args)
    except _HOOK_ERRORS as err:
        raise ConfigError(f"{key} (policy={policy!r}) is invalid for mmcv's {cls.__name__}: {_describe(err)}") from err


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if text else f"{type(err).__name__} (check the policy's arguments in mmcv's documentation)"


def _runner_is_iter_based(runner_type: str) -> bool:
    from mmcv.runner import RUNNERS, IterBasedRunner

    cls = RUNNERS.get(runner_type)
    if cls is None:
        logger.warning("runner.type=%r is not a registered mmcv runner; scheduling as an EpochBasedRunner", runner_type)
        return False
    return issubclass(cls, IterBasedRunner)


class Schedule(ScheduleLength):
    """Applies ``cfg.lr_config`` / ``cfg.momentum_config`` to an optimizer exactly like mmcv's runner.

    Call :meth:`before_iter` with the global 0-based batch index before every optimizer step. With
    ``lr_config=None`` the LR stays as the optimizer has it; with ``momentum_config=None`` so does momentum.

    Args:
        lr_config: MMDetection's ``lr_config`` (``policy`` plus the hook's arguments) or None.
        momentum_config: MMDetection's ``momentum_config`` or None.
        optimizer: the single optimizer whose param groups are scheduled (paramwise groups keep their ratios).
        iters_per_epoch: batches per epoch per slot (the train loader's length).
        max_iters: total batches of the run (the searcher's length); wins over the config's runner length.
        runner_type: the config's ``runner.type``; decides which of mmcv's runners is reproduced.
    """

    def __init__(
        self,
        lr_config: Mapping[str, Any] | None,
        momentum_config: Mapping[str, Any] | None,
        optimizer: torch.optim.Optimizer,
        iters_per_epoch: int,
        max_iters: int,
        *,
        runner_type: str = "EpochBasedRunner",
    ) -> None:
        if iters_per_epoch < 1 or max_iters < 1:
            raise ValueError(f"iters_per_epoch and max_iters must be >= 1, got {iters_per_epoch} and {max_iters}")
        self.optimizer = optimizer
        self.iters_per_epoch = iters_per_epoch
        self.max_iters = max_iters
        self.by_iter_runner = _runner_is_iter_based(runner_type)
        if lr_config is not None and self.by_iter_runner:
            lr_config = {"by_epoch": False, **lr_config}  # IterBasedRunner.register_training_hooks does this
        # Same order as mmcv's priorities: the LR hook (VERY_HIGH) runs before the momentum hook (HIGH).
        self._keys: dict[int, str] = {}
        self.lr_hook = self._add_hook(lr_config, _LR_KEY)
        self.momentum_hook = self._add_hook(momentum_config, _MOMENTUM_KEY)
        self._runner = _RunnerView(optimizer, iters_per_epoch, max_iters, self.by_iter_runner)
        self._warned_past_end = False
        self._check_runner_support()
        self._call("before_run")
        self._validate()

    # -- construction ---------------------------------------------------------------------------------------

    def _add_hook(self, config: Mapping[str, Any] | None, key: str):
        if config is None:
            return None
        hook = build_updater_hook(config, key)
        self._keys[id(hook)] = key
        return hook

    @property
    def hooks(self) -> list:
        """The mmcv updater hooks in the order the runner calls them."""
        return [h for h in (self.lr_hook, self.momentum_hook) if h is not None]

    def _check_runner_support(self) -> None:
        if not self.by_iter_runner:
            return
        for hook in self.hooks:
            key = self._keys[id(hook)]
            if getattr(hook, "warmup_epochs", None) is not None:
                # mmcv resolves epoch-counted warmup in before_train_epoch, which IterBasedRunner never calls.
                raise ConfigError(f"{key}.warmup_by_epoch=True does not work with an IterBasedRunner; count "
                                  f"warmup_iters in iterations and set warmup_by_epoch=False")
            if hook.by_epoch:
                logger.warning("%s has by_epoch=True, which mmcv's IterBasedRunner never applies, so it stays "
                               "constant as in mmcv; set %s.by_epoch=False to schedule by iterations", key, key)

    def _call(self, stage: str) -> None:
        for hook in self.hooks:
            try:
                getattr(hook, stage)(self._runner)
            except _HOOK_ERRORS as err:
                key = self._keys[id(hook)]
                raise ConfigError(f"{key} fails for {self.max_iters} iterations of {self.iters_per_epoch} per "
                                  f"epoch in mmcv's {type(hook).__name__}: {_describe(err)}") from err

    def _validate(self) -> None:
        """Compute the first and last iteration once, so a schedule that cannot cover the run (e.g. CosineRestart
        periods shorter than it) fails now with a ConfigError instead of mid-training; values are restored."""
        saved = [{k: g[k] for k in ("lr", "momentum", "betas") if k in g} for g in self.optimizer.param_groups]
        for k in sorted({0, self.max_iters - 1}):
            self.before_iter(k)
            for hook, value in ((self.lr_hook, self.current_lr()), (self.momentum_hook, self.current_momentum())):
                if hook is not None and not (isinstance(value, float) and math.isfinite(value)):
                    raise ConfigError(f"{self._keys[id(hook)]} gives {value!r} at iteration {k} of "
                                      f"{self.max_iters}; check the policy's arguments")
        for group, values in zip(self.optimizer.param_groups, saved):
            group.update(values)

    # -- per iteration --------------------------------------------------------------------------------------

    def before_iter(self, batch_idx: int) -> None:
        """Set every param group's LR and momentum (or Adam's beta1) for global 0-based batch ``batch_idx``,
        as mmcv's runner would before that iteration."""
        batch_idx = self.within_schedule(batch_idx, "LR")
        runner = self._runner
        runner.iter = batch_idx
        if self.by_iter_runner:
            # IterBasedRunner reads the loader's epoch before fetching the batch that ends it: it lags by one.
            runner.epoch, runner.inner_iter = max(batch_idx - 1, 0) // self.iters_per_epoch, 0
        else:
            runner.epoch, runner.inner_iter = divmod(batch_idx, self.iters_per_epoch)
            # mmcv calls this once per epoch; calling it every batch sets the same epoch values again (warmup
            # is applied after it), which keeps the result independent of what ran before, e.g. a resume.
            self._call("before_train_epoch")
        self._call("before_train_iter")

    def current_lr(self) -> float:
        """LR of param group 0 (for logging)."""
        return self.optimizer.param_groups[0]["lr"]

    def current_momentum(self) -> float | None:
        """Momentum (or Adam's beta1) of param group 0, None if the optimizer has neither."""
        group = self.optimizer.param_groups[0]
        if "momentum" in group:
            return group["momentum"]
        return group["betas"][0] if "betas" in group else None


def build_schedule(cfg: Mapping[str, Any], optimizer: torch.optim.Optimizer, iters_per_epoch: int,
                   max_iters: int) -> Schedule:
    """The :class:`Schedule` for an MMDetection config's ``lr_config``, ``momentum_config`` and ``runner.type``.

    ``max_iters`` (the searcher's length in batches) replaces the config's ``runner.max_epochs`` /
    ``runner.max_iters``; a difference is logged so the user sees which length the schedule follows.
    """
    runner_cfg = cfg.get("runner") or {}
    runner_type = runner_cfg.get("type", "EpochBasedRunner")
    _log_length_difference(runner_cfg, iters_per_epoch, max_iters)
    return Schedule(cfg.get("lr_config"), cfg.get("momentum_config"), optimizer, iters_per_epoch, max_iters,
                    runner_type=runner_type)


def _log_length_difference(runner_cfg: Mapping[str, Any], iters_per_epoch: int, max_iters: int) -> None:
    config_iters = runner_cfg.get("max_iters")
    if runner_cfg.get("max_epochs") is not None:
        config_iters = runner_cfg["max_epochs"] * iters_per_epoch
    if config_iters is not None and config_iters != max_iters:
        logger.info("the LR schedule follows the searcher's length of %d batches (%.4g epochs of %d), not the "
                    "config's runner length of %d batches", max_iters, max_iters / iters_per_epoch,
                    iters_per_epoch, config_iters)
