"""``MMDetTrial``: any MMDetection detector trained by Determined's PyTorchTrial loop, for both generations.

This is the only thing Determined sees. It owns the batch counter and the resume position, the schedule calls,
the non-finite guard, the training metrics and their loss-term policy, gradient accumulation, seeding, the loaders,
partial validation, the callbacks and the checkpoint metadata. What needs mmcv, mmengine or mmdet it asks of the
installed generation's engine (:mod:`model_hub_mmdet.engine`; ``mmdet2/engine.py``, ``mmdet3/engine.py``), as
detectron2's ``TrainerBase`` owns the loop and ``SimpleTrainer.run_step`` alone knows the model.

This module imports neither mmcv, mmengine nor mmdet: the engine is loaded when the trial is built.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from determined import pytorch

from model_hub_mmdet import checkpoints, determined_patches, generation
from model_hub_mmdet.bad_images import BadImagePolicy, skipped_samples
from model_hub_mmdet.engine import Engine, RunnerFacade, grad_scaler_kwargs
from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.expconf import local_hparams, searcher_length, section, with_defaults
from model_hub_mmdet.finite import NonFiniteGuard, check_finite_weights
from model_hub_mmdet.gather import ERROR_KEY, PredictionGatherer, raise_deferred_error
from model_hub_mmdet.gc_pause import gc_paused
from model_hub_mmdet.loaders import INDEX_KEY
from model_hub_mmdet.workers import worker_niceness

logger = logging.getLogger("model_hub_mmdet")

HOOKS_KEY = "hooks"  # the runner facade's state in the callback's state


class MMDetTrialCallback(pytorch.PyTorchCallback):
    """Checkpoints what Determined does not: the trial's batch counter (for the schedule and the data order), what
    the hooks keep (EMA state, YOLOX's mode switch), and the mmdet metadata (final config text, classes, versions)
    needed to export a native mmdet checkpoint (layout: :mod:`model_hub_mmdet.checkpoints`)."""

    def __init__(self, trial: MMDetTrial) -> None:
        self.trial = trial

    def state_dict(self) -> dict[str, Any]:
        return {"batches_trained": self.trial.batches_trained, HOOKS_KEY: self.trial.runner.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.trial.restore_position(batches_trained=int(state_dict.get("batches_trained", 0)))
        self.trial.runner.load_state_dict(state_dict.get(HOOKS_KEY) or {})

    def on_checkpoint_save_start(self, checkpoint: dict[str, Any]) -> None:
        check_finite_weights(checkpoint.get("models_state_dict") or [], advice=self.trial.engine.nonfinite_advice)
        checkpoint[checkpoints.META_KEY] = self.trial.mmdet_meta()

    def on_checkpoint_write_end(self, checkpoint_dir: str) -> None:
        checkpoints.write_config(checkpoint_dir, self.trial.mmdet_meta())
        checkpoints.redact_load_data(checkpoint_dir)

    def on_training_workload_end(self, avg_metrics: dict[str, Any], batch_metrics: Any) -> None:
        self.trial.new_reporting_period()

    def on_validation_start(self) -> None:
        self.trial.release_finished_training_loader()
        self.trial.runner.before_validation()  # custom_hooks' before_val(_epoch): EMA weights in for validation

    def on_validation_end(self, metrics: dict[str, Any]) -> None:
        self.trial.runner.after_validation({k: v for k, v in metrics.items() if k != ERROR_KEY})
        raise_deferred_error(metrics)  # an evaluation error: one line, on every slot (see gather.py)

    def on_checkpoint_upload_end(self, uuid: str) -> None:
        local = checkpoints.local_checkpoint(uuid)
        self.trial.guard.last_checkpoint = str(local) if local.is_dir() else uuid


# old method name -> the one both generations use now (a subclass overriding the old name keeps working, warned)
RENAMED = {"build_hook_runner": "build_hooks", "_loss_metrics": "loss_metrics", "_stable_terms": "loss_metrics"}


class MMDetTrial(pytorch.PyTorchTrial):
    """Trains and evaluates any MMDetection detector described by ``hyperparameters.config_file``, with the
    installed generation (2.x: mmcv configs; 3.x: mmengine configs).

    Hyperparameters: ``config_file`` (required), ``merge_config``, ``override_mmdet_config``, ``use_pretrained``,
    ``pretrained_weights``, ``auto_scale_lr``, ``save_cfg`` / ``save_dir``, ``skip_nonfinite_batches``,
    ``global_batch_size`` (required by Determined; per-slot batch = global / slots). The experiment's ``data``
    section may hold ``file_client_args`` (storage backend for images and annotations), ``bad_images`` and
    ``worker_niceness``.

    **The subclass contract** (both generations, the same names and signatures). A subclass may override these;
    the trial (and Determined, for its own) calls each with keyword arguments under exactly these names, so an
    override that keeps its signature keeps working. Call ``super()`` for the default behaviour.

    ===============================================================  ==============================================
    ``build_config(self) -> Config``                                 the final mmdet config (mmcv / mmengine)
    ``build_train_dataset(self) -> Dataset``                         the config's training dataset
    ``build_val_dataset(self) -> Dataset``                           the config's validation dataset (test mode)
    ``build_model(self) -> nn.Module``                               the detector, initialised, with its classes
    ``load_pretrained(self, model) -> None``                         warm start (zoo, weights, ``load_from``)
    ``build_optimizer(self, model) -> Optimizer``                    the config's torch optimizer
    ``build_scaler(self) -> GradScaler | None``                      AMP's loss scaler (``fp16``; AmpOptimWrapper)
    ``build_hooks(self) -> RunnerFacade``                            ``custom_hooks`` at the runner's calls
    ``build_schedule(self) -> Schedule``                             the LR / momentum schedule
    ``resolve_max_iters(self) -> int``                               the run's length in batches
    ``build_training_data_loader(self) -> DataLoader``               Determined's; any loader with a length
    ``build_validation_data_loader(self) -> DataLoader``             Determined's
    ``build_callbacks(self) -> dict``                                Determined's; keep ``super()``'s entries
    ``train_batch(self, batch, epoch_idx, batch_idx) -> dict``       one step; the training metrics
    ``forward_loss(self, data) -> (loss, log_vars)``                 the model's loss on one unpacked batch
    ``loss_metrics(self, log_vars) -> dict``                         the loss terms reported for a batch
    ``evaluate_batch(self, batch, batch_idx) -> dict``               predictions of one validation batch
    ``evaluate(self, results, indices=None) -> dict``                metrics of all predictions; ``indices``: the
                                                                     images predicted when a validation covers
                                                                     only some (test mode, skipped bad images)
    ``restore_position(self, batches_trained) -> None``              continue after a resume
    ``save_config(self) -> Path | None``                             ``save_cfg``
    ===============================================================  ==============================================

    ``build_train_dataset``, ``build_val_dataset`` and ``build_model`` run with the garbage collector paused
    (:mod:`model_hub_mmdet.gc_pause`).

    Old names still work, with a DeprecationWarning: ``build_hook_runner`` (2.x) is ``build_hooks``;
    ``_loss_metrics`` (2.x) and ``_stable_terms`` (3.x) are ``loss_metrics``. Attributes a subclass may read:
    ``cfg``, ``hparams``, ``data_config``, ``context``, ``detector`` (the unwrapped model), ``model`` (the wrapped
    one), ``optimizer``, ``scaler``, ``runner`` (the hook facade), ``train_dataset``, ``val_dataset``,
    ``batches_trained``, ``iters_per_epoch``, ``max_iters``, ``per_slot_batch_size``, ``seed`` and ``engine``
    (:mod:`model_hub_mmdet.engine`: ``engine.scores(result)`` gives one image's detection scores).

    ``build_training_data_loader`` may return any loader with a length: the schedule's epoch length is taken from
    it, and resume positions are restored into this class's own loader when it is the one in use (a
    ``det.pytorch.DataLoader`` is skipped ahead by Determined itself).
    """

    #: the engine class; None: the installed generation's (``model_hub_mmdet.<generation>.engine.Engine``)
    engine_class: type[Engine] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for old, new in RENAMED.items():
            if old in cls.__dict__ and new not in cls.__dict__:
                warnings.warn(f"{cls.__name__}.{old} overrides a deprecated name; override {new} instead",
                              DeprecationWarning, stacklevel=2)
                setattr(cls, new, cls.__dict__[old])

    def __init__(self, context: pytorch.PyTorchTrialContext) -> None:
        generation.setup()  # the Determined and generation patches, checked then applied (idempotent)
        self.context = context
        # Values for hyperparameter specs too: `det experiment create --local --test` passes the raw section.
        self.hparams: dict[str, Any] = local_hparams(context.get_hparams())
        self.exp_conf: dict[str, Any] = with_defaults(self._experiment_config())
        self.data_config: dict[str, Any] = dict(self.exp_conf.get("data") or {})
        self.batches_trained = 0
        self._loss_names: list[str] | None = None  # see loss_metrics
        self._new_loss_names: set[str] = set()
        self._train_loader: Any = None
        # The engine moves the batch (mmcv's DataContainers; mmengine's data_preprocessor); our own resumable
        # train sampler replaces Determined's.
        context.experimental.disable_auto_to_device()
        context.experimental.disable_dataset_reproducibility_checks()
        self.engine: Engine = (self.engine_class or generation.adapter("engine").Engine)(self)

        self.per_slot_batch_size = context.get_per_slot_batch_size()
        self.cfg = self.build_config()
        self._check_searcher_metric()
        lr_scale = self.lr_scale_factor(self.cfg)
        if lr_scale is not None:
            self.engine.scale_config_lr(self.cfg, lr_scale)
        self.engine.runtime_settings()
        self.seed = self._seed()
        # loader workers yield the cores to training on the CPU (model_hub_mmdet.workers)
        self.worker_niceness = worker_niceness(self.data_config.get("worker_niceness"), context.device.type)
        # (the collector paused: a COCO-size file is millions of new objects and no cycles; model_hub_mmdet.gc_pause)
        with self.engine.quiet(), gc_paused():
            self.train_dataset = self.build_train_dataset()
            self.val_dataset = self.build_val_dataset()
            model = self.build_model()
        self.load_pretrained(model=model)
        self.detector = model  # unwrapped: the loss parsing, the classes, exports
        optimizer = self.build_optimizer(model=model)
        if not isinstance(optimizer, torch.optim.Optimizer):
            optimizer = self.engine.adopt_optimizer(optimizer)
        if lr_scale is not None:
            self.engine.scale_optimizer_lr(optimizer, lr_scale)
        self.scaler = self.build_scaler()  # Determined needs wrap_scaler before wrap_model
        self.model = self.engine.wrap_model(model)
        self.optimizer = context.wrap_optimizer(optimizer)
        self.engine.optimizer_wrapped(self.optimizer)
        self.guard = NonFiniteGuard(
            self.engine.clip_norm_kwargs(),
            max_skips=int(self.hparams.get("skip_nonfinite_batches") or 0),
            enabled=self.scaler is None,  # AMP's GradScaler handles overflow itself
            advice=self.engine.nonfinite_advice,
        )
        self._check_accumulation()
        self.engine.build_metrics()
        self.gatherer = context.wrap_reducer(
            PredictionGatherer(self.evaluate, len(self.val_dataset), partial_ok=self._partial_validation_reason,
                               defer_errors=True),
            for_training=False,
            for_validation=True,
        )
        self.runner: RunnerFacade = self.build_hooks()
        self.runner.call("before_run")
        self.save_config()

    # ----------------------------------------------------------------------------------------- config
    def _experiment_config(self) -> dict[str, Any]:
        try:
            return dict(self.context.get_experiment_config() or {})
        except Exception:  # determined raises when pytorch.init() was given no exp_conf
            return {}

    def _check_searcher_metric(self) -> None:
        """``searcher.metric`` must be a name validation will report. Refused here in ``check``'s words, so the
        mistake stops ``train --local`` and a cluster trial at start, not at the first validation. Names come from
        the evaluator itself; a subclass with its own ``evaluate`` may report others, so it is not checked."""
        metric = section(self._experiment_config(), "searcher").get("metric")
        if not metric or type(self).evaluate is not MMDetTrial.evaluate:
            return
        problems = generation.adapter("check").metric_problems({"searcher": {"metric": metric}}, self.cfg)
        if problems:
            raise ConfigError(problems[0])

    def _partial_validation_reason(self) -> str | None:
        """Why a validation may cover only some images: Determined's test mode, or bad images being skipped."""
        if determined_patches.in_test_mode(self.context):
            return "test mode"
        if BadImagePolicy.from_config(self.data_config.get("bad_images")).skip_at_validation:
            return "data.bad_images.skip_at_validation"
        return None

    def build_config(self) -> Any:
        """The final MMDetection config (see :func:`model_hub_mmdet.build_mmdet_config`), every top-level key
        honoured, replaced (one INFO line) or refused, with this slot's batch size."""
        return self.engine.build_config()

    def _seed(self) -> int:
        """The trial seed: Determined's on a cluster (it seeded every RNG); locally the experiment's
        ``reproducibility.experiment_seed``, else the config's seed, else 0. The engine seeds the RNGs as the
        generation's runner does."""
        try:
            seed, on_cluster = int(self.context.get_trial_seed()), True
        except Exception:  # determined raises InternalException("Trial seed not set.") off-cluster
            exp_seed = (self.exp_conf.get("reproducibility") or {}).get("experiment_seed")
            seed, on_cluster = int(exp_seed if exp_seed is not None else self.engine.config_seed() or 0), False
        self.engine.seed_rngs(seed, on_cluster)
        return seed

    def lr_scale_factor(self, cfg: Any) -> float | None:
        """``auto_scale_lr: true`` (or the config's ``auto_scale_lr.enable``): global batch /
        ``auto_scale_lr.base_batch_size``, as mmdet's ``--auto-scale-lr`` and mmengine's runner scale the LR;
        None when off. The engine applies it where its runner does (the config's LR, or the built optimizer's)."""
        setting = cfg.get("auto_scale_lr") or {}
        if not (self.hparams.get("auto_scale_lr") or setting.get("enable", False)):
            return None
        base = setting.get("base_batch_size")
        if not base:
            raise ConfigError("auto_scale_lr needs auto_scale_lr.base_batch_size in the mmdet config")
        logger.info("auto_scale_lr: lr x %d/%d", self.context.get_global_batch_size(), base)
        return self.context.get_global_batch_size() / base

    def save_config(self) -> Path | None:
        """``save_cfg: true`` (the model hub's hyperparameter): write the final config, secrets redacted, to
        ``save_dir`` (default: the working directory) as ``<config_file name>`` (chief only)."""
        if not self.hparams.get("save_cfg") or self.context.distributed.get_rank() != 0:
            return None
        name = Path(str(self.hparams.get("config_file") or checkpoints.CONFIG_FILE)).name
        path = self.engine.dump_config(self.cfg, Path(str(self.hparams.get("save_dir") or ".")) / name)
        logger.info("save_cfg: wrote the final config to %s", path)
        return path

    @functools.cached_property
    def final_config_text(self) -> str:
        """The final config as mmdet ``.py`` text, secrets redacted (formatted once: yapf takes 0.1-0.5 s)."""
        return self.engine.config_text(self.cfg)

    def mmdet_meta(self) -> dict[str, Any]:
        """What a native mmdet checkpoint's ``meta`` holds (the config text, classes, versions; see the engine)."""
        return {"config": self.final_config_text, **self.engine.export_meta()}

    # -------------------------------------------------------------------------------------- datasets
    def build_train_dataset(self) -> torch.utils.data.Dataset:
        """The config's training dataset (``Engine.build_dataset("train")``)."""
        return self.engine.build_dataset("train")

    def build_val_dataset(self) -> torch.utils.data.Dataset:
        """The config's validation dataset, in test mode (``Engine.build_dataset("val")``)."""
        return self.engine.build_dataset("val")

    def build_training_data_loader(self) -> Any:
        """The endless, resumable, group-batched loader of this slot (:mod:`model_hub_mmdet.loaders`), built
        once."""
        if self._train_loader is None:
            self._train_loader = self.engine.build_train_loader(self.train_dataset, self.per_slot_batch_size,
                                                                self.seed)
            self._train_loader.resumable.position = self.batches_trained
        return self._train_loader

    def build_validation_data_loader(self) -> pytorch.DataLoader:
        """Determined's loader over the validation set: each image once across slots."""
        return self.engine.build_val_loader(self.val_dataset)

    def restore_position(self, batches_trained: int) -> None:
        """Continue the schedule, the hooks and the data order after ``batches_trained`` batches (on resume)."""
        self.batches_trained = batches_trained
        if self._train_loader is not None:
            self._train_loader.resumable.position = batches_trained
        self.runner.restart(batches_trained)

    def release_finished_training_loader(self) -> None:
        """Once the last batch is trained, stop the training loader's worker processes: they would otherwise hold
        their memory through the final validation (whose own workers start then), the checkpoint and the export,
        until the process exits. Should training go on after all, the loader starts new workers from this batch."""
        if self._train_loader is not None and self.batches_trained >= self.max_iters:
            self.release_training_workers()

    def release_training_workers(self) -> None:
        """Stop this package's training loader's workers; the next batch (if any) starts new ones, which copy the
        dataset as it is then (a switched pipeline), and continues the same sequence of batches."""
        loader = self._train_loader
        if loader is not None and hasattr(loader, "release_workers") and loader.release_workers():
            loader.resumable.position = self.batches_trained  # the workers had drawn batches ahead
            logger.debug("stopped the training loader's workers after batch %d", self.batches_trained)

    # ----------------------------------------------------------------------------------------- model
    def build_model(self) -> torch.nn.Module:
        """The config's detector, initialised, its classes from the training dataset; SyncBN -> BN off GPU."""
        return self.engine.build_model()

    def load_pretrained(self, model: torch.nn.Module) -> None:
        """Warm start from the model zoo (``use_pretrained``), ``pretrained_weights`` or ``cfg.load_from``."""
        from model_hub_mmdet import weights

        weights.warm_start(
            model, self.cfg, self.hparams, context_dir=os.getcwd(),
            file_client_args=self.data_config.get("file_client_args"),
        )

    # ------------------------------------------------------------------------------------- optimizer
    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """The config's optimizer (2.x: ``mmcv.runner.build_optimizer``; 3.x: ``build_optim_wrapper``'s)."""
        return self.engine.build_optimizer(model)

    def build_scaler(self) -> Any:
        """AMP's GradScaler where the config trains in fp16 on a GPU (``fp16``; ``AmpOptimWrapper``), else None."""
        loss_scale = self.engine.loss_scale()
        if loss_scale is None:
            return None
        kwargs = grad_scaler_kwargs(loss_scale, self.engine.loss_scale_key)
        return self.context.wrap_scaler(torch.amp.GradScaler("cuda", **kwargs))

    def _clip_grads(self, params: Any) -> None:
        """The config's clipping by value, then the guard (clipping by norm, the non-finite check)."""
        params = list(params)
        self.engine.clip_by_value(params)
        self.guard(params)

    def _check_accumulation(self) -> None:
        """The config's gradient accumulation becomes Determined's ``optimizations.aggregation_frequency``."""
        found = self.engine.accumulation()
        if found is None:
            return
        key, wanted = found
        running = determined_patches.aggregation_frequency(self.context)
        configured = int(self.exp_conf["optimizations"]["aggregation_frequency"])
        if wanted == running:
            return
        if wanted == configured:  # set right, but this runner did not pass it to pytorch.init()
            logger.warning(
                "optimizations.aggregation_frequency=%d is not applied by this runner (Determined's --test mode"
                " does not pass it to pytorch.init): this run steps the optimizer every batch",
                configured,
            )
            return
        raise ConfigError(
            f"{key}={wanted} needs the experiment setting optimizations.aggregation_frequency: {wanted} (it is"
            f" {configured}); Determined accumulates the gradients"
        )

    # -------------------------------------------------------------------------------------- schedule
    @functools.cached_property
    def iters_per_epoch(self) -> int:
        """Batches per epoch per slot: the length of the training loader in use."""
        try:
            return len(self.build_training_data_loader())
        except TypeError as err:
            raise ConfigError(
                f"{type(self).__name__}.build_training_data_loader returned a loader without a length; the LR"
                " schedule needs batches per epoch"
            ) from err

    @functools.cached_property
    def max_iters(self) -> int:
        """Total training batches (the schedule's length): see :meth:`resolve_max_iters`."""
        return self.resolve_max_iters()

    @functools.cached_property
    def schedule(self) -> Any:
        """The LR/momentum schedule of this run, built at first use (the loader's length is known then)."""
        return self.build_schedule()

    def resolve_max_iters(self) -> int:
        """Total training batches: the searcher's ``max_length`` (in batches, records or epochs), else the config's
        own loop length."""
        length = searcher_length(self.exp_conf)
        if length is not None and length.value > 0:
            return length.to_batches(
                global_batch_size=self.context.get_global_batch_size(), epoch_len=self.iters_per_epoch
            )
        return self.engine.config_length(self.iters_per_epoch)

    def build_schedule(self) -> Any:
        """The generation's LR/momentum schedulers as a function of the batch index."""
        return self.engine.build_schedule(self.optimizer, self.iters_per_epoch, self.max_iters)

    def build_hooks(self) -> RunnerFacade:
        """The runner facade that calls the config's ``custom_hooks`` as the generation's runner would
        (``mmdet2/hooks.py``, ``mmdet3/hooks.py``)."""
        with self.engine.registered_types("custom_hooks"):
            return self.engine.build_hooks()

    def build_hook_runner(self) -> RunnerFacade:
        """Deprecated name of :meth:`build_hooks` (2.x)."""
        warnings.warn("build_hook_runner is deprecated; use build_hooks", DeprecationWarning, stacklevel=2)
        return MMDetTrial.build_hooks(self)

    @property
    def hook_runner(self) -> RunnerFacade:
        """Deprecated name of :attr:`runner` (2.x)."""
        warnings.warn("hook_runner is deprecated; use runner", DeprecationWarning, stacklevel=2)
        return self.runner

    def build_callbacks(self) -> dict[str, pytorch.PyTorchCallback]:
        """The trial's checkpoint, validation and hook callbacks (:class:`MMDetTrialCallback`)."""
        return {checkpoints.CALLBACK_KEY: MMDetTrialCallback(self)}

    # ------------------------------------------------------------------------------------- training
    def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> dict[str, Any]:
        """One optimisation step; returns ``loss``, every logged loss term, ``lr`` (and ``grad_norm``)."""
        k = self.batches_trained
        self.schedule.before_iter(k)
        data = self.engine.unpack(batch)
        self.runner.before_iter(k, data)  # the epoch's start when due (a pipeline switch restarts the workers)
        self.guard.start_batch(batch_idx, self.engine.image_metas(data))
        loss, log_vars = self.forward_loss(data)
        values = self.engine.loss_values(log_vars)
        if self.guard.loss_ok(values):
            self.context.backward(self.scaler.scale(loss) if self.scaler is not None else loss)
            self.context.step_optimizer(self.optimizer, clip_grads=self._clip_grads, scaler=self.scaler)
        else:
            self.optimizer.zero_grad(set_to_none=True)
        self.batches_trained += 1
        self.runner.after_iter(k, data, outputs=log_vars, loss=loss.detach(),
                               num_samples=self.engine.num_samples(data))
        metrics = self.loss_metrics(values)
        metrics["lr"] = self.schedule.current_lr()
        metrics["skipped_samples"] = skipped_samples(batch)
        if self.guard.clip_kwargs is not None and self.guard.last_norm is not None:
            metrics["grad_norm"] = self.guard.last_norm
        if self.guard.max_skips:
            metrics["nonfinite_batches_skipped"] = self.guard.skipped
        return metrics

    def forward_loss(self, data: Any) -> tuple[torch.Tensor, Mapping[str, Any]]:
        """``(loss, log_vars)`` of one unpacked training batch (the engine's ``forward_loss``)."""
        return self.engine.forward_loss(data)

    def loss_metrics(self, log_vars: Mapping[str, float]) -> dict[str, float]:
        """The logged loss terms under the names of this reporting period. Determined refuses a period whose
        batches report different names, and a hook may add a term mid-run (YOLOX's mode switch adds ``loss_l1``):
        a new term is reported from the next period on (:meth:`new_reporting_period`; it counts in ``loss`` at
        once), a term missing from a batch as 0.0."""
        if self._loss_names is None:
            self._loss_names = list(log_vars)
        new = [k for k in log_vars if k not in self._loss_names and k not in self._new_loss_names]
        if new:
            logger.info("loss term(s) %s appeared at batch %d: reported from the next reporting period on",
                        ", ".join(new), self.batches_trained)
            self._new_loss_names.update(new)
        return {k: float(log_vars.get(k, 0.0)) for k in self._loss_names}

    def _loss_metrics(self, log_vars: Mapping[str, float]) -> dict[str, float]:
        """Deprecated name of :meth:`loss_metrics` (2.x)."""
        return MMDetTrial.loss_metrics(self, log_vars)

    def _stable_terms(self, terms: Mapping[str, float]) -> dict[str, float]:
        """Deprecated name of :meth:`loss_metrics` (3.x)."""
        return MMDetTrial.loss_metrics(self, terms)

    def new_reporting_period(self) -> None:
        """Determined reported the period's training metrics: newly logged loss terms join from here."""
        if self._loss_names is not None and self._new_loss_names:
            self._loss_names += sorted(self._new_loss_names)
        self._new_loss_names = set()

    # ----------------------------------------------------------------------------------- evaluation
    def evaluate_batch(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        """Predict one validation batch; the metrics are computed over the whole dataset by the reducer."""
        data = self.engine.unpack(batch)
        indices = data.pop(INDEX_KEY)
        with torch.no_grad(), self.engine.val_autocast():
            results = self.engine.predict(data)
        self.gatherer.update(indices, results)
        return {}

    def evaluate(self, results: list[Any], indices: list[int] | None = None) -> dict[str, float]:
        """The validation metrics of every image's results, in dataset order. With ``indices`` (test mode,
        skipped bad images: the images that were predicted), only those images are scored.

        ``results`` holds one item per image, in the engine's form: 2.x, mmdet's result (per-class arrays of
        ``[x1, y1, x2, y2, score]``, with RLE masks); 3.x, a tuple with, for each ``val_evaluator`` metric, what its
        ``process`` kept. ``self.engine.scores(result)`` gives an image's detection scores in both."""
        return self.engine.evaluate(results, indices)
