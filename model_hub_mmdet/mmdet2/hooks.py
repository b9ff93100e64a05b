"""``custom_hooks`` run as under MMDetection 2.x's runner, inside Determined's training loop.

mmdet's ``train_detector`` builds an mmcv runner, registers the config's ``custom_hooks`` on it
(``register_custom_hooks``: built from mmcv's ``HOOKS`` registry, ordered by ``priority``) and calls them at fixed
points of its loop. Determined owns the loop here, so :class:`HookRunner` is a runner facade: a subclass of mmcv's
own ``BaseRunner`` (registration, priority order, ``call_hook``, ``log_buffer`` and every attribute a hook reads
come from mmcv), whose ``epoch``/``iter``/``inner_iter``/``max_epochs``/``max_iters`` follow the trial's batch
counter. The trial calls it at mmcv's points, with mmcv's values at each:

=======================  ========================================================================================
``before_run``           once, when the trial is built (before Determined wraps the model and loads a checkpoint)
``before_train_epoch``   before the first batch of each epoch (``epoch`` = that epoch)
``before_train_iter``    before each batch (``iter`` = batches trained so far, ``inner_iter`` = index in the epoch)
``after_train_iter``     after the optimizer step (``outputs`` = ``{"loss", "log_vars", "num_samples"}``)
``after_train_epoch``    after the last batch of each epoch and of the run (``epoch`` = the epoch that ended)
``before_val_epoch``     when Determined starts a validation (``data_loader`` = the validation loader)
``after_val_epoch``      when it ends
``after_run``            after the last batch of the run
=======================  ========================================================================================

The next epoch's ``before_train_epoch`` runs right after the previous ``after_train_epoch``, before its first batch
is loaded: so a hook that changes the pipeline (YOLOX's mode switch) changes that epoch's first batch too, as
under mmcv, and the loader's workers are restarted when the dataset's skipped transforms change.

Hooks whose job Determined or the trial does are not run; each gets one INFO line naming its replacement
(:data:`REPLACEMENTS`). EMA hooks (mmdet's ``BaseEMAHook`` family, mmcv's ``EMAHook``): validation runs on the EMA
weights, as mmdet's ``EvalHook`` does after the EMA hook's ``after_train_epoch`` swap, whenever Determined
validates; the EMA buffers are buffers of the model, so Determined checkpoints them with it, and
:meth:`HookRunner.state_dict` adds whether the EMA is swapped in and each hook's plain attributes (plus the model's
boolean flags, e.g. YOLOX's ``use_l1``, and the dataset's skipped transforms), so a resume is bit-exact.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from mmcv.runner import HOOKS, BaseRunner, Hook

from model_hub_mmdet.engine import LoaderView

logger = logging.getLogger("model_hub_mmdet")

# mmcv/mmdet hook classes (by name, so optional ones need not be importable) -> what replaces them here
REPLACEMENTS: dict[str, str] = {
    "CheckpointHook": "Determined's checkpoints (min_checkpoint_period, checkpoint_storage)",
    "LoggerHook": "Determined's metrics and TensorBoard (every logged loss term, lr)",
    "EvalHook": "the trial's validation (min_validation_period; the config's evaluation arguments)",
    "DistEvalHook": "the trial's validation (min_validation_period; the config's evaluation arguments)",
    "OptimizerHook": "the trial's train_batch (optimizer_config.grad_clip, optimizations.aggregation_frequency)",
    "LrUpdaterHook": "the trial's LR schedule (lr_config, applied per batch)",
    "MomentumUpdaterHook": "the trial's momentum schedule (momentum_config, applied per batch)",
    "IterTimerHook": "Determined's timing of batches",
    "DistSamplerSeedHook": "the trial's resumable sampler (seeded per epoch)",
}


def replacement(hook_cls: type) -> str | None:
    """What replaces a hook of class ``hook_cls`` here (a subclass of one in :data:`REPLACEMENTS`), or None."""
    for klass in hook_cls.__mro__:
        if klass.__name__ in REPLACEMENTS and klass.__module__.startswith(("mmcv.", "mmdet.")):
            return REPLACEMENTS[klass.__name__]
    return None


def _hook_class(cfg: Any) -> type | None:
    if isinstance(cfg, Hook):
        return type(cfg)
    kind = cfg.get("type") if isinstance(cfg, Mapping) else None
    if isinstance(kind, type):
        return kind
    return HOOKS.get(kind) if isinstance(kind, str) else None


def split_custom_hooks(custom_hooks: Any) -> tuple[list[Any], list[tuple[str, str]]]:
    """``custom_hooks`` -> (the ones to run, [(name, replacement)] of the ones Determined replaces)."""
    if custom_hooks is None:
        return [], []
    items = list(custom_hooks) if isinstance(custom_hooks, (list, tuple)) else [custom_hooks]
    run, replaced = [], []
    for item in items:
        klass = _hook_class(item)
        why = replacement(klass) if klass is not None else None
        if why is None:
            run.append(item)
        else:
            replaced.append((klass.__name__, why))
    return run, replaced


def _is_ema(hook: Hook) -> bool:
    return callable(getattr(hook, "_swap_ema_parameters", None))


def _plain(value: Any) -> bool:
    """Values checkpointed as a hook's state: numbers, strings, flags, and tuples/lists of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_plain(v) for v in value)


class HookRunner(BaseRunner):
    """mmcv's ``BaseRunner`` with the trial's counters: registers and calls ``custom_hooks``; never runs a loop.

    ``iters_per_epoch`` and ``max_iters`` are callables: the trial knows them once its training loader exists;
    ``restart_workers`` is called when a hook changed the training pipeline (the loader's workers copy it anew).
    The trial calls it through the runner facade's protocol (:class:`model_hub_mmdet.engine.RunnerFacade`).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        train_dataset: Any,
        val_dataset: Any,
        iters_per_epoch: Callable[[], int],
        max_iters: Callable[[], int],
        batch_size: int,
        restart_workers: Callable[[], Any] = lambda: None,
        meta: dict | None = None,
        work_dir: str | None = None,
    ) -> None:
        super().__init__(model, work_dir=work_dir or os.getcwd(), logger=logging.getLogger("mmdet"), meta=meta)
        self._iters_per_epoch = iters_per_epoch
        self._max_iters_fn = max_iters
        self._restart_workers = restart_workers
        self.train_loader = LoaderView(train_dataset, iters_per_epoch, batch_size)
        self.val_loader = LoaderView(val_dataset, lambda: len(val_dataset), 1)
        self.data_loader: Any = self.train_loader
        self.outputs: dict[str, Any] = {}
        self.batches = 0  # batches trained: mmcv's _iter
        self.epoch_started = -1  # the epoch whose before_train_epoch has run
        self.ema_swapped_in = False  # EMA weights in the model's parameters (raw ones in the EMA buffers)

    # mmcv's _epoch/_iter/_inner_iter (read through BaseRunner's properties) are set at each call point
    @property
    def max_iters(self) -> int:
        """The run's length in batches (the trial's ``max_iters``)."""
        return self._max_iters_fn()

    @property
    def max_epochs(self) -> int:
        """The run's length in epochs of the training loader, rounded up."""
        return -(-self.max_iters // self._iters_per_epoch())

    # BaseRunner's abstract loop: Determined runs it
    def train(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("Determined's Trainer runs the training loop")

    def val(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("Determined's Trainer runs the validation loop")

    def run(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("Determined's Trainer runs the loop")

    def save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("Determined writes the checkpoints")

    # ---------------------------------------------------------------------------------------- the calls
    @property
    def has_hooks(self) -> bool:
        """Whether any hook runs (without hooks every call is a no-op)."""
        return bool(self._hooks)

    @property
    def has_ema(self) -> bool:
        """Whether an EMA hook runs (validation and export then use the EMA weights)."""
        return any(_is_ema(h) for h in self._hooks)

    def call(self, fn_name: str) -> None:
        """mmcv's ``call_hook`` (priority order), a no-op without hooks."""
        if self._hooks:
            self.call_hook(fn_name)

    def _at(self, batches: int) -> None:
        """mmcv's counters while batch ``batches`` (0-based) is trained."""
        ipe = self._iters_per_epoch()
        self._iter, self._epoch, self._inner_iter = batches, batches // ipe, batches % ipe

    def start_epoch_if_due(self, batches_trained: int | None = None) -> bool:
        """``before_train_epoch`` when the next batch starts an epoch that has not started; True when the dataset's
        skipped transforms changed (the loader's workers must be restarted)."""
        if batches_trained is not None:
            self.batches = batches_trained
        ipe = self._iters_per_epoch()
        if not self._hooks or self.batches >= self.max_iters or self.batches % ipe != 0:
            return False
        epoch = self.batches // ipe
        if self.epoch_started == epoch:
            return False
        dataset = self.train_loader.dataset
        before = getattr(dataset, "_skip_type_keys", None)
        self.mode, self.data_loader = "train", self.train_loader
        self._epoch, self._iter = epoch, self.batches
        self.log_buffer.clear()  # the history of one epoch, as mmcv's loggers leave it at most
        self.call_hook("before_train_epoch")
        self._after_swap_calls("before_train_epoch")
        self.epoch_started = epoch
        return getattr(dataset, "_skip_type_keys", None) != before

    def before_iter(self, batch_idx: int, data_batch: Any = None) -> None:
        """Before training batch ``batch_idx`` (0-based): the run's first epoch when due (later ones start right
        after the previous epoch's last batch), then ``before_train_iter``."""
        if self.start_epoch_if_due(batch_idx):
            self._restart_workers()
        self._before_train_iter(batch_idx)

    def after_iter(self, batch_idx: int, data_batch: Any = None, outputs: Mapping | None = None,
                   loss: torch.Tensor | None = None, num_samples: int = 0) -> None:
        """After the optimizer step of batch ``batch_idx``: ``after_train_iter`` with ``outputs`` (the log_vars)
        and the end of the epoch (run); restarts the loader's workers when the next epoch changed the pipeline
        (YOLOX's mode switch)."""
        if self._after_train_iter(loss, outputs or {}, num_samples):
            self._restart_workers()

    def _before_train_iter(self, batches_trained: int) -> None:
        """``before_train_iter`` of batch ``batches_trained`` (0-based)."""
        self.batches = batches_trained
        self.mode, self.data_loader = "train", self.train_loader
        if self._hooks:
            self._at(batches_trained)
            self.call_hook("before_train_iter")

    def _after_train_iter(self, loss: torch.Tensor | None, log_vars: Mapping[str, float], num_samples: int) -> bool:
        """``after_train_iter``, then ``after_train_epoch`` (and ``after_run`` at the end) when the batch ended one;
        returns :meth:`start_epoch_if_due` of the next epoch."""
        if not self._hooks:
            self.batches += 1
            return False
        self._at(self.batches)
        self.outputs = {"loss": loss, "log_vars": dict(log_vars), "num_samples": num_samples}
        self.log_buffer.update(dict(log_vars), num_samples)
        self.call_hook("after_train_iter")
        self.batches += 1
        self._iter = self.batches  # mmcv counts the iteration after its after_train_iter
        last = self.batches >= self.max_iters
        if self.batches % self._iters_per_epoch() == 0 or last:
            self.call_hook("after_train_epoch")  # epoch: the one that ended; inner_iter: its last batch
            self._after_swap_calls("after_train_epoch")
            self._epoch += 1
        if last:
            self.call_hook("after_run")
            return False
        return self.start_epoch_if_due()

    def _after_swap_calls(self, fn_name: str) -> None:
        # mmdet's EMA hooks swap parameters and EMA buffers in both calls
        if any(_is_ema(h) for h in self._hooks):
            self.ema_swapped_in = fn_name == "after_train_epoch"

    def restart(self, batch_idx: int) -> None:
        """A (re)start at ``batch_idx`` (on resume)."""
        self.batches = batch_idx

    def before_validation(self) -> None:
        """``before_val_epoch``, with the EMA weights in the model for the validation."""
        if not self._hooks:
            return
        self.mode, self.data_loader = "val", self.val_loader
        self._iter = self.batches
        self._validation_swapped = self._swap_ema(True)
        self.call_hook("before_val_epoch")

    def after_validation(self, metrics: Mapping[str, Any] | None = None) -> None:
        """``after_val_epoch``; the raw weights back in the model if :meth:`before_validation` swapped the EMA
        in (mmcv's hooks take no metrics)."""
        if not self._hooks:
            return
        self.call_hook("after_val_epoch")
        if getattr(self, "_validation_swapped", False):
            self._swap_ema(False)
        self.mode, self.data_loader = "train", self.train_loader

    def _swap_ema(self, into_model: bool) -> bool:
        """Swap the EMA weights into the model (or back); False when there is nothing to swap."""
        emas = [h for h in self._hooks if _is_ema(h) and hasattr(h, "model_parameters")]
        if not emas or self.ema_swapped_in == into_model:
            return False
        for hook in emas:
            hook._swap_ema_parameters()
        self.ema_swapped_in = into_model
        return True

    # ---------------------------------------------------------------------------------------- the state
    def state_dict(self) -> dict[str, Any]:
        """What a resume needs beyond the model's tensors (the EMA buffers are among those)."""
        model = self.model.module if hasattr(self.model, "module") else self.model
        flags = {name: {k: v for k, v in vars(m).items() if isinstance(v, bool) and not k.startswith("_")}
                 for name, m in model.named_modules()}
        return {
            "epoch_started": self.epoch_started,
            "ema_swapped_in": self.ema_swapped_in,
            "hooks": [{k: v for k, v in vars(h).items() if k != "priority" and _plain(v)} for h in self._hooks],
            "model_flags": {name: f for name, f in flags.items() if f},
            "skip_type_keys": getattr(self.train_loader.dataset, "_skip_type_keys", None),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (on resume, after Determined loaded the model's tensors)."""
        self.epoch_started = int(state.get("epoch_started", -1))
        self.ema_swapped_in = bool(state.get("ema_swapped_in", False))
        for hook, attrs in zip(self._hooks, state.get("hooks") or []):
            for key, value in attrs.items():
                setattr(hook, key, value)
        model = self.model.module if hasattr(self.model, "module") else self.model
        modules = dict(model.named_modules())
        for name, attrs in (state.get("model_flags") or {}).items():
            if name in modules:
                for key, value in attrs.items():
                    setattr(modules[name], key, value)
        keys = state.get("skip_type_keys")
        dataset = self.train_loader.dataset
        if keys is not None and hasattr(dataset, "update_skip_type_keys"):
            dataset.update_skip_type_keys(keys)


def build_hook_runner(
    custom_hooks: Sequence[Any] | None,
    model: torch.nn.Module,
    **kwargs: Any,
) -> HookRunner:
    """A :class:`HookRunner` with the ``custom_hooks`` that run here registered (mmcv's ``register_custom_hooks``);
    one INFO line per hook that Determined replaces."""
    runner = HookRunner(model, **kwargs)
    run, replaced = split_custom_hooks(custom_hooks)
    for name, why in replaced:
        logger.info("custom_hooks: %s is replaced by %s; not run", name, why)
    runner.register_custom_hooks(run)
    if runner.has_hooks:
        names = ", ".join(f"{type(h).__name__} ({h.priority})" for h in runner.hooks)
        logger.info("custom_hooks: running %s at mmcv's runner calls, in priority order", names)
    return runner


def ema_state_dict(state: Mapping[str, torch.Tensor], swapped_in: bool) -> dict[str, torch.Tensor]:
    """A model state dict as mmdet saves it after training with an EMA hook: the EMA weights in the parameters
    and the raw ones in the ``ema_*`` buffers (``swapped_in`` says whether ``state`` is already that way)."""
    out = dict(state)
    if swapped_in:
        return out
    for name in state:
        buffer = f"ema_{name.replace('.', '_')}"  # BaseEMAHook's buffer names, registered on the model itself
        if buffer in state and not name.startswith("ema_"):
            out[name], out[buffer] = state[buffer], state[name]
    return out
