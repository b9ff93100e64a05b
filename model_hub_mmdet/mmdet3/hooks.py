"""``custom_hooks`` as under mmengine's runner, through a thin runner facade.

Determined runs the loop, so mmengine's ``Runner`` is not there to call hooks. :class:`RunnerFacade` is what hooks
see of a runner (``model``, ``epoch``, ``iter``, ``max_epochs``, ``max_iters``, ``train_dataloader``,
``optim_wrapper``, ``message_hub``, ``logger``, ``cfg`` ...) and calls, at the matching points of Determined's loop,
the hooks mmengine would run: mmengine's ``RuntimeInfoHook`` (it keeps ``MessageHub``'s ``iter``/``epoch``/
``max_iters``, which models read, current) and the config's ``custom_hooks`` (``EMAHook``, ``PipelineSwitchHook``,
``YOLOXModeSwitchHook``, ``SyncNormHook``, ``NumClassCheckHook``, user hooks), in mmengine's priority order.
``default_hooks`` (timer, logger, param_scheduler, checkpoint, sampler_seed, visualization), ``log_processor``,
``visualizer`` and the loops are Determined's and this package's here; the trial's INFO line of replaced config
keys says so (``config/keys.py``).

Where each hook point falls:

* ``before_run``: when the trial is built (after the model is wrapped); ``before_train``: at the first batch.
* ``before_train_epoch``: at the first batch of each epoch and at the first batch after a (re)start, so that a
  hook that switches a pipeline from some epoch on does so again after a resume; ``after_train_epoch``: after the
  last batch of each epoch. Epoch ``e`` is batches ``[e * iters_per_epoch, (e + 1) * iters_per_epoch)``.
* ``before_train_iter`` / ``after_train_iter``: around each batch (``outputs`` are the loss terms).
* ``before_val`` / ``before_val_epoch`` and ``after_val_epoch`` / ``after_val``: around each validation.
* ``before_save_checkpoint`` / ``after_load_checkpoint``: on an mmengine-style checkpoint dict whose additions
  (``ema_state_dict``, the swapped EMA weights) travel in the trial's checkpoint.

A hook that replaces the training dataset's pipeline (``PipelineSwitchHook``, ``YOLOXModeSwitchHook``) makes the
loader's workers restart from the current position, so they pick the new pipeline up.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import torch

from model_hub_mmdet.engine import LoaderView
from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.mmdet3.config import unknown_type
from model_hub_mmdet.mmdet3.schedules import loop_is_iter_based

logger = logging.getLogger("model_hub_mmdet")

class _LoopView:
    """What hooks read of ``runner.train_loop``."""

    def __init__(self, runner: RunnerFacade) -> None:
        self._runner = runner

    @property
    def dataloader(self) -> LoaderView:
        """The training loader, as ``runner.train_dataloader``."""
        return self._runner.train_dataloader

    def __getattr__(self, name: str) -> Any:
        if name in ("epoch", "iter", "max_epochs", "max_iters"):
            return getattr(self._runner, name)
        raise AttributeError(name)


class _ConfigView:
    """``runner.cfg``: the final config, whose ``pretty_text`` is the trial's formatted and redacted text (formatted
    once; yapf fails on some values, and a hook must not print secrets)."""

    def __init__(self, cfg: Any, text: Callable[[], str]) -> None:
        self._cfg = cfg
        self._text = text

    @property
    def pretty_text(self) -> str:
        return self._text()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cfg, name)

    def __getitem__(self, key: str) -> Any:
        return self._cfg[key]

    def __contains__(self, key: str) -> bool:
        return key in self._cfg


def _pipeline_state(dataset: Any) -> tuple:
    return id(getattr(dataset, "pipeline", None)), tuple(getattr(dataset, "_skip_type_keys", None) or ())


class RunnerFacade:
    """The runner that mmengine hooks see (see the module docstring); the trial calls it through the runner facade's
    protocol (:class:`model_hub_mmdet.engine.RunnerFacade`).

    Args:
        cfg: the final config.
        model: the unwrapped detector.
        optim_wrapper: the mmengine ``OptimWrapper`` (hooks read ``get_lr``).
        train_dataset: the training dataset.
        iters_per_epoch, max_iters: callables (the loader's length is known late).
        restart_workers: called when a hook changed the training pipeline.
        seed, rank, world_size, batch_size: what the runner would report.
        config_text: the final config's text for ``runner.cfg.pretty_text`` (RuntimeInfoHook records it).
    """

    # what mmengine's runner has that hooks may read, and no loop of its own here
    work_dir = log_dir = "."
    visualizer = val_loop = val_dataloader = None
    _resume = False

    def __init__(
        self,
        cfg: Any,
        model: torch.nn.Module,
        optim_wrapper: Any,
        train_dataset: Any,
        iters_per_epoch: Callable[[], int],
        max_iters: Callable[[], int],
        restart_workers: Callable[[], Any] = lambda: None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
        experiment_name: str = "model_hub_mmdet",
        config_text: Callable[[], str] | None = None,
    ) -> None:
        from mmengine.logging import MessageHub, MMLogger

        self.cfg = _ConfigView(cfg, config_text) if config_text is not None else cfg
        self.model = model
        self.optim_wrapper = optim_wrapper
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.experiment_name = self.timestamp = experiment_name
        self._iters_per_epoch = iters_per_epoch
        self._max_iters = max_iters
        self._restart_workers = restart_workers
        self.train_dataloader = LoaderView(train_dataset, iters_per_epoch, batch_size)
        self.train_loop = _LoopView(self)
        self.message_hub = MessageHub.get_instance(experiment_name)  # the current instance: models read it
        self.logger = MMLogger.get_current_instance()
        self.iter = 0
        self.epoch = 0
        self._iter_loop = loop_is_iter_based(cfg.get("train_cfg"))
        self._started = False
        self._epoch_open = False
        self.hooks = self.build_hooks(cfg)

    # -- what hooks read ------------------------------------------------------------------------------------
    @property
    def max_iters(self) -> int:
        """The run's length in batches (the searcher's)."""
        return self._max_iters()

    @property
    def max_epochs(self) -> int:
        """Epochs the run spans."""
        # mmengine's IterBasedTrainLoop reports one epoch; an epoch loop as many as the searcher's length spans.
        return 1 if self._iter_loop else -(-self.max_iters // self._iters_per_epoch())

    @property
    def distributed(self) -> bool:
        """Whether several slots train."""
        return self.world_size > 1

    # -- the hooks ------------------------------------------------------------------------------------------
    @staticmethod
    def build_hooks(cfg: Any) -> list:
        """mmengine's ``RuntimeInfoHook`` and the config's ``custom_hooks``, in mmengine's priority order."""
        from mmdet.registry import HOOKS
        from mmengine.hooks import RuntimeInfoHook
        from mmengine.runner import get_priority

        hooks: list[tuple[int, int, Any]] = [(get_priority("VERY_HIGH"), 0, RuntimeInfoHook())]
        for i, spec in enumerate(cfg.get("custom_hooks") or []):
            spec = dict(spec) if isinstance(spec, Mapping) else spec
            priority = spec.pop("priority", None) if isinstance(spec, dict) else None
            try:
                hook = HOOKS.build(spec) if isinstance(spec, dict) else spec
            except KeyError as err:
                if "registry" not in str(err):
                    raise
                raise ConfigError(f"custom_hooks.{i}: {unknown_type(err)}") from err
            except (TypeError, AssertionError, ValueError) as err:
                raise ConfigError(f"custom_hooks.{i} ({spec.get('type')}): {err}") from err
            if hook is None:
                raise ConfigError(f"custom_hooks.{i}: {spec!r} is not a hook")
            priority = get_priority(priority if priority is not None else getattr(hook, "priority", "NORMAL"))
            hook.priority = priority
            hooks.append((priority, i + 1, hook))
        return [hook for _, _, hook in sorted(hooks, key=lambda item: (item[0], item[1]))]

    def call(self, stage: str, **kwargs: Any) -> None:
        """Call ``stage`` on every hook, in priority order."""
        for hook in self.hooks:
            getattr(hook, stage)(self, **kwargs)

    # -- Determined's loop -> hook points --------------------------------------------------------------------
    def before_iter(self, batch_idx: int, data_batch: Any = None) -> None:
        """Before training batch ``batch_idx`` (global, 0-based)."""
        length = self._iters_per_epoch()
        self.iter, self.epoch = batch_idx, batch_idx // length
        if not self._started:
            self.call("before_train")
            self._started = True
        if batch_idx % length == 0 or not self._epoch_open:
            dataset = self.train_dataloader.dataset
            before = _pipeline_state(dataset)
            self.call("before_train_epoch")
            self._epoch_open = True
            if _pipeline_state(dataset) != before:
                self._restart_workers()
        self.call("before_train_iter", batch_idx=self._inner(batch_idx), data_batch=data_batch)

    def after_iter(self, batch_idx: int, data_batch: Any = None, outputs: Mapping | None = None,
                   loss: torch.Tensor | None = None, num_samples: int = 0) -> None:
        """After training batch ``batch_idx``: ``after_train_iter`` (``outputs``: the log_vars), and
        ``after_train_epoch`` at an epoch's end."""
        self.call("after_train_iter", batch_idx=self._inner(batch_idx), data_batch=data_batch, outputs=outputs)
        self.iter = batch_idx + 1
        if (batch_idx + 1) % self._iters_per_epoch() == 0:
            self.call("after_train_epoch")
            self.epoch = (batch_idx + 1) // self._iters_per_epoch()
            self._epoch_open = False

    def _inner(self, batch_idx: int) -> int:
        """The ``batch_idx`` mmengine's loop passes to hooks: global for an iteration loop, in the epoch else."""
        return batch_idx if self._iter_loop else batch_idx % self._iters_per_epoch()

    def before_validation(self) -> None:
        """At the start of a validation (EMAHook swaps the averaged weights in)."""
        self.call("before_val")
        self.call("before_val_epoch")

    def after_validation(self, metrics: Mapping[str, Any] | None) -> None:
        """At the end of a validation, with its metrics (EMAHook swaps the training weights back)."""
        self.call("after_val_epoch", metrics=dict(metrics or {}))
        self.call("after_val")

    def restart(self, batch_idx: int) -> None:
        """A (re)start at ``batch_idx``: the next batch opens its epoch again."""
        self.iter, self._epoch_open = batch_idx, False

    # -- checkpoints ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What hooks add to an mmengine checkpoint (``before_save_checkpoint``): the keys they added, and the
        model weights they replaced in its ``state_dict`` (EMAHook puts the averaged weights there)."""
        state = OrderedDict(self.model.state_dict())
        checkpoint: dict[str, Any] = {"state_dict": OrderedDict(state), "meta": {}}
        self.call("before_save_checkpoint", checkpoint=checkpoint)
        changed = {k: v for k, v in checkpoint["state_dict"].items() if state.get(k) is not v}
        extra = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "meta")}
        return {"added": extra, "state_dict_changes": changed}

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        """Give hooks the checkpoint :meth:`state_dict` described (``after_load_checkpoint``, resuming)."""
        if not saved:
            return
        state = OrderedDict(self.model.state_dict())
        state.update(saved.get("state_dict_changes") or {})
        checkpoint = {"state_dict": state, "meta": {}, **dict(saved.get("added") or {})}
        self._resume = True
        self.call("after_load_checkpoint", checkpoint=checkpoint)
