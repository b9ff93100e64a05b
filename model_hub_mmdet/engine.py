"""The engine: what the core trial asks of an MMDetection generation.

:class:`model_hub_mmdet.trial.MMDetTrial` is the only thing Determined sees; it owns the batch counter, the
schedule calls, the non-finite guard, the metrics, the loaders, the callbacks and the checkpoint metadata. Everything
that needs mmcv, mmengine or mmdet is asked of an :class:`Engine`: ``model_hub_mmdet/mmdet2/engine.py`` (mmdet 2.28,
mmcv 1.x) or ``model_hub_mmdet/mmdet3/engine.py`` (mmdet 3.3, mmengine), each a class named ``Engine`` with the
methods below, under the same names. An engine is built with the trial (``Engine(trial)``) and reads what the trial
has built so far from it (``trial.cfg``, ``trial.context``, ``trial.detector``, ...).

The engine's job, in the order the trial asks:

=================================  ===================================================================================
config                             :meth:`~Engine.build_config`, :meth:`~Engine.runtime_settings`,
                                   :meth:`~Engine.config_seed`, :meth:`~Engine.seed_rngs`,
                                   :meth:`~Engine.config_text`, :meth:`~Engine.dump_config`
data                               :meth:`~Engine.build_dataset` (the one place datasets are built),
                                   :meth:`~Engine.build_train_loader`, :meth:`~Engine.build_val_loader`,
                                   :meth:`~Engine.unpack`, :meth:`~Engine.image_metas`
model and optimisation             :meth:`~Engine.build_model`, :meth:`~Engine.build_optimizer`,
                                   :meth:`~Engine.scale_config_lr`, :meth:`~Engine.scale_optimizer_lr`,
                                   :meth:`~Engine.loss_scale`,
                                   :meth:`~Engine.wrap_model`, :meth:`~Engine.optimizer_wrapped`,
                                   :meth:`~Engine.clip_norm_kwargs`, :meth:`~Engine.clip_by_value`,
                                   :meth:`~Engine.accumulation`
schedule and hooks                 :meth:`~Engine.build_schedule`, :meth:`~Engine.config_length`,
                                   :meth:`~Engine.build_hooks` (the runner facade, :class:`RunnerFacade`)
one step                           :meth:`~Engine.autocast`, :meth:`~Engine.forward_loss`,
                                   :meth:`~Engine.loss_values`, :meth:`~Engine.num_samples`
validation                         :meth:`~Engine.build_metrics`, :meth:`~Engine.val_autocast`,
                                   :meth:`~Engine.predict`, :meth:`~Engine.evaluate`
export                             :meth:`~Engine.export_meta`
=================================  ===================================================================================
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from model_hub_mmdet.errors import ConfigError

if TYPE_CHECKING:
    from model_hub_mmdet.trial import MMDetTrial


class RunnerFacade(Protocol):
    """What the trial calls on an engine's runner facade (the object that runs the config's ``custom_hooks`` at the
    points of Determined's loop where the generation's runner would; ``mmdet2/hooks.py``, ``mmdet3/hooks.py``)."""

    hooks: list

    def call(self, stage: str) -> None:
        """Call ``stage`` (``before_run``) on every hook, in priority order."""

    def before_iter(self, batch_idx: int, data_batch: Any = None) -> None:
        """Before training batch ``batch_idx`` (0-based, global): the epoch's start when due, then
        ``before_train_iter``. Restarts the training loader's workers when a hook changed the pipeline."""

    def after_iter(self, batch_idx: int, data_batch: Any = None, outputs: Mapping | None = None,
                   loss: torch.Tensor | None = None, num_samples: int = 0) -> None:
        """After the optimizer step of batch ``batch_idx``: ``after_train_iter``, and the epoch's (run's) end."""

    def before_validation(self) -> None:
        """When Determined starts a validation (an EMA hook swaps its weights in)."""

    def after_validation(self, metrics: Mapping[str, Any] | None) -> None:
        """When it ends, with its metrics (an EMA hook swaps the training weights back)."""

    def restart(self, batch_idx: int) -> None:
        """A (re)start at ``batch_idx`` (on resume)."""

    def state_dict(self) -> dict[str, Any]:
        """What the hooks need in a checkpoint beyond the model's tensors."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` on resume (after Determined loaded the model)."""


class Engine(abc.ABC):
    """One MMDetection generation under the core trial (see the module docstring). Methods are called by the core
    trial only; a user customises the trial (``docs/customising.md``), not the engine."""

    #: what fixes a non-finite loss, in the generation's config keys (appended to the guard's error)
    nonfinite_advice: str = ""
    #: the config key of the AMP loss scale, for messages
    loss_scale_key: str = "loss_scale"

    def __init__(self, trial: MMDetTrial) -> None:
        self.trial = trial

    # ------------------------------------------------------------------------------------------------ config
    @abc.abstractmethod
    def build_config(self) -> Any:
        """The final mmdet config of ``trial.hparams`` and ``trial.data_config`` (the generation's config pipeline,
        every top-level key accounted for), with ``trial.per_slot_batch_size`` as the training batch size."""

    @abc.abstractmethod
    def runtime_settings(self) -> None:
        """The process settings the generation's ``tools/train.py`` applies from the config (cudnn, opencv
        threads, the start method, DDP options, open-files limit)."""

    @abc.abstractmethod
    def config_seed(self) -> int | None:
        """The config's own seed (``seed``; ``randomness.seed``), or None."""

    @abc.abstractmethod
    def seed_rngs(self, seed: int, on_cluster: bool) -> None:
        """Seed the RNGs as the generation's runner does with ``seed`` (on a cluster Determined seeded them)."""

    @abc.abstractmethod
    def config_text(self, cfg: Any) -> str:
        """The final config as mmdet ``.py`` text, secrets redacted."""

    @abc.abstractmethod
    def dump_config(self, cfg: Any, path: Path) -> Path:
        """Write :meth:`config_text` to ``path``; returns the path written."""

    def quiet(self) -> contextlib.AbstractContextManager:
        """Keeps the library's INFO chatter (initialisers, COCO indexes) out while datasets and model are built."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def registered_types(self, key: str) -> contextlib.AbstractContextManager:
        """Turns the registry's "X is not in the registry" ``KeyError`` into one ConfigError line naming ``key``."""

    # -------------------------------------------------------------------------------------------------- data
    @abc.abstractmethod
    def build_dataset(self, split: str) -> torch.utils.data.Dataset:
        """The ``"train"`` or ``"val"`` dataset of the config: the one place an engine builds datasets."""

    @abc.abstractmethod
    def build_train_loader(self, dataset: Any, batch_size: int, seed: int) -> Any:
        """This slot's endless, resumable training loader (a :class:`model_hub_mmdet.loaders.TrainLoader`)."""

    @abc.abstractmethod
    def build_val_loader(self, dataset: Any) -> Any:
        """Determined's validation loader over ``dataset`` (each image once across slots)."""

    @abc.abstractmethod
    def unpack(self, batch: Any) -> Any:
        """A loader's batch as the model takes it (the loaders' bookkeeping dropped; a failure it carries raised)."""

    @abc.abstractmethod
    def image_metas(self, data: Any) -> list[Mapping[str, Any]]:
        """The batch's image metas (``filename``), for messages."""

    # ----------------------------------------------------------------------------------- model and optimiser
    @abc.abstractmethod
    def build_model(self) -> torch.nn.Module:
        """The detector of ``trial.cfg``, initialised, classes from ``trial.train_dataset``."""

    @abc.abstractmethod
    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """The torch optimizer of the config (the generation's constructors, ``paramwise_cfg``)."""

    def adopt_optimizer(self, built: Any) -> torch.optim.Optimizer:
        """The torch optimizer of what a subclass's ``build_optimizer`` returned when it is not one."""
        raise ConfigError(f"build_optimizer returned {type(built).__name__}, not a torch.optim.Optimizer")

    def scale_config_lr(self, cfg: Any, factor: float) -> None:
        """``auto_scale_lr`` on the config's LR, for a generation whose runner scales it there (else a no-op)."""
        return None

    def scale_optimizer_lr(self, optimizer: torch.optim.Optimizer, factor: float) -> None:
        """``auto_scale_lr`` on the built optimizer, for a generation whose runner scales it there (else a no-op)."""
        return None

    @abc.abstractmethod
    def loss_scale(self) -> Any:
        """The config's AMP loss scale (``'dynamic'``, a number or GradScaler kwargs) where AMP trains here; None
        for fp32 (logging why when the config asks for AMP without a GPU)."""

    def amp_dtype(self) -> torch.dtype:
        """The dtype AMP trains in."""
        return torch.float16

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Determined's ``wrap_model`` (and what the generation checks first)."""
        return self.trial.context.wrap_model(model)

    def optimizer_wrapped(self, optimizer: torch.optim.Optimizer) -> None:
        """Told the optimizer Determined wrapped (an engine that keeps a wrapper around it updates it)."""
        return None

    @abc.abstractmethod
    def clip_norm_kwargs(self) -> dict[str, Any] | None:
        """``clip_grad_norm_`` arguments of the config's gradient clipping by norm, or None."""

    def clip_by_value(self, params: list[torch.nn.Parameter]) -> None:
        """The config's gradient clipping by value, if any (before the norm is measured)."""
        return None

    @abc.abstractmethod
    def accumulation(self) -> tuple[str, int] | None:
        """``(config key, batches)`` of the config's gradient accumulation, or None when it names none."""

    # ------------------------------------------------------------------------------------ schedule and hooks
    @abc.abstractmethod
    def config_length(self, iters_per_epoch: int) -> int:
        """The run's length in batches by the config's own loop (when the searcher sets none)."""

    @abc.abstractmethod
    def build_schedule(self, optimizer: torch.optim.Optimizer, iters_per_epoch: int, max_iters: int) -> Any:
        """The LR/momentum schedule: ``before_iter(batch_idx)`` sets the values, ``current_lr()`` reports one."""

    @abc.abstractmethod
    def build_hooks(self) -> RunnerFacade:
        """The runner facade with the config's ``custom_hooks`` registered."""

    # ------------------------------------------------------------------------------------------------ a step
    def autocast(self) -> contextlib.AbstractContextManager:
        """The training step's autocast: AMP when the trial has a GradScaler."""
        if self.trial.scaler is not None:
            return torch.autocast("cuda", dtype=self.amp_dtype())
        return contextlib.nullcontext()

    @abc.abstractmethod
    def forward_loss(self, data: Any) -> tuple[torch.Tensor, Mapping[str, Any]]:
        """``(loss, log_vars)`` of one training batch through the wrapped model: the generation's ``parse_losses``
        (``log_vars`` in the form the generation's hooks see)."""

    @abc.abstractmethod
    def loss_values(self, log_vars: Mapping[str, Any]) -> dict[str, float]:
        """``log_vars`` as numbers averaged over slots (every slot then takes the same skip decision)."""

    @abc.abstractmethod
    def num_samples(self, data: Any) -> int:
        """Images in a training batch."""

    # -------------------------------------------------------------------------------------------- validation
    def build_metrics(self) -> None:
        """Build what :meth:`predict` and :meth:`evaluate` need (once, when the trial is built)."""
        return None

    @abc.abstractmethod
    def val_autocast(self) -> contextlib.AbstractContextManager:
        """The validation's autocast, where the generation's validation loop has one."""

    @abc.abstractmethod
    def predict(self, data: Any) -> list[Any]:
        """One result per image of a validation batch, in the form :meth:`evaluate` takes (small to gather)."""

    @abc.abstractmethod
    def evaluate(self, results: list[Any], indices: list[int] | None = None) -> dict[str, float]:
        """The validation metrics of the gathered results (dataset order); ``indices``: the images predicted, when
        a validation covers only some."""

    # ------------------------------------------------------------------------------------------------ export
    @abc.abstractmethod
    def export_meta(self) -> dict[str, Any]:
        """What a native checkpoint's ``meta`` holds beyond the config text (classes, versions, EMA state)."""

    def scores(self, result: Any) -> Any:
        """The detection scores of one image's result (a numpy array), for metrics a subclass adds."""
        raise NotImplementedError


def mean_over_slots(values: Mapping[str, Any], world_size: int) -> dict[str, float]:
    """Numbers (or scalar tensors) averaged over the slots of a distributed run, in float64."""
    names = list(values)
    flat = torch.tensor([float(torch.as_tensor(values[n]).detach()) for n in names], dtype=torch.float64)
    if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(flat)
        flat /= world_size
    return dict(zip(names, flat.tolist()))


def grad_scaler_kwargs(loss_scale: Any, key: str) -> dict[str, Any]:
    """``torch.amp.GradScaler`` arguments of an mmcv/mmengine ``loss_scale``: ``'dynamic'``, a static number, or
    GradScaler kwargs; anything else is one ConfigError line naming ``key``."""
    if loss_scale == "dynamic":
        return {}
    if isinstance(loss_scale, (int, float)):
        return dict(init_scale=float(loss_scale), growth_factor=1.0, backoff_factor=1.0)  # a static scale
    if isinstance(loss_scale, Mapping):
        return dict(loss_scale)
    raise ConfigError(f"{key} must be 'dynamic', a number or GradScaler kwargs, got {loss_scale!r}")


class LoaderView:
    """What hooks read of a runner's data loader: its dataset and length. ``persistent_workers`` is False, so hooks
    leave torch's internals alone: the trial restarts its own workers."""

    persistent_workers = False

    def __init__(self, dataset: Any, length: Callable[[], int], batch_size: int) -> None:
        self.dataset = dataset
        self._length = length
        self.batch_size = batch_size

    def __len__(self) -> int:
        return self._length()

