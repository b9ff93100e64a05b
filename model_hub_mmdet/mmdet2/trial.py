"""``MMDetTrial``: an MMDetection 2.x detector trained by Determined's PyTorchTrial loop.

The trial wires pieces together and keeps little logic of its own; each step is a method a subclass may override
(the list, with signatures, is :class:`MMDetTrial`'s docstring and docs/customising.md).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from determined import pytorch

from model_hub_mmdet import checkpoints, determined_patches, generation

# The trial applies its generation's patches (checked first) before mmcv and mmdet run: some of their modules call
# mmcv's get_logger at import, which would otherwise silence every root log handler.
generation.setup()

from mmcv import Config  # noqa: E402

from model_hub_mmdet.bad_images import BadImagePolicy  # noqa: E402
from model_hub_mmdet.errors import ConfigError  # noqa: E402
from model_hub_mmdet.expconf import local_hparams, searcher_length, with_defaults  # noqa: E402
from model_hub_mmdet.finite import NonFiniteGuard, check_finite_weights  # noqa: E402
from model_hub_mmdet.gather import raise_deferred_error  # noqa: E402
from model_hub_mmdet.mmdet2.config import build_mmdet_config, config_text, dump_config, evaluate_kwargs  # noqa: E402
from model_hub_mmdet.mmdet2.config.keys import account_for_keys  # noqa: E402
from model_hub_mmdet.mmdet2.data import build_train_loader, build_val_loader, skipped_samples, unwrap_batch  # noqa: E402
from model_hub_mmdet.mmdet2.evaluation import (  # noqa: E402
    PredictionGatherer,
    encode_results,
    evaluate_predictions,
    evaluation_subset,
)
from model_hub_mmdet.mmdet2.hooks import STATE_KEY, HookRunner, build_hook_runner  # noqa: E402
from model_hub_mmdet.workers import worker_niceness  # noqa: E402

logger = logging.getLogger("model_hub_mmdet")


class MMDetTrialCallback(pytorch.PyTorchCallback):
    """Checkpoints what Determined does not: the trial's batch counter (for the schedule and the data order) and
    the mmdet metadata (final config text, CLASSES, versions) needed to export a native mmdet checkpoint
    (layout: :mod:`model_hub_mmdet.checkpoints`)."""

    def __init__(self, trial: MMDetTrial) -> None:
        self.trial = trial

    def state_dict(self) -> dict[str, Any]:
        return {"batches_trained": self.trial.batches_trained, STATE_KEY: self.trial.hook_runner.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.trial.restore_position(batches_trained=int(state_dict.get("batches_trained", 0)))
        self.trial.hook_runner.load_state_dict(state_dict.get(STATE_KEY) or {})

    def on_checkpoint_save_start(self, checkpoint: dict[str, Any]) -> None:
        check_finite_weights(checkpoint.get("models_state_dict") or [])
        checkpoint[checkpoints.META_KEY] = self.trial.mmdet_meta()

    def on_checkpoint_write_end(self, checkpoint_dir: str) -> None:
        checkpoints.write_config(checkpoint_dir, self.trial.mmdet_meta())
        checkpoints.redact_load_data(checkpoint_dir)

    def on_training_workload_end(self, avg_metrics: dict[str, Any], batch_metrics: Any) -> None:
        self.trial.new_reporting_period()

    def on_validation_start(self) -> None:
        self.trial.release_finished_training_loader()
        self.trial.hook_runner.before_val()  # custom_hooks' before_val_epoch; EMA weights in for validation

    def on_validation_end(self, metrics: dict[str, Any]) -> None:
        self.trial.hook_runner.after_val()
        raise_deferred_error(metrics)  # an evaluation error: one line, on every slot (see gather.py)

    def on_checkpoint_upload_end(self, uuid: str) -> None:
        local = checkpoints.local_checkpoint(uuid)
        self.trial.guard.last_checkpoint = str(local) if local.is_dir() else uuid


@contextlib.contextmanager
def quiet_stdout() -> Any:
    """pycocotools prints "loading annotations into memory... index created!" for every COCO file it reads."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@contextlib.contextmanager
def registered_types(key: str) -> Any:
    """mmcv's registries raise ``KeyError('X is not in the models registry')`` for an unknown ``type``: one line."""
    try:
        yield
    except KeyError as err:
        if "registry" not in str(err):
            raise
        raise ConfigError(
            f"{key}: {str(err).strip(chr(34) + chr(39))}; check the type name, or import the module that registers"
            " it with custom_imports = dict(imports=[...])"
        ) from err


class MMDetTrial(pytorch.PyTorchTrial):
    """Trains and evaluates any MMDetection 2.x detector described by ``hyperparameters.config_file``.

    Hyperparameters: ``config_file`` (required), ``merge_config``, ``override_mmdet_config``,
    ``use_pretrained``, ``pretrained_weights``, ``auto_scale_lr``, ``save_cfg`` / ``save_dir``,
    ``global_batch_size`` (required by Determined; per-slot batch = global / slots). The experiment's ``data``
    section may hold ``file_client_args`` (storage backend for images and annotations).

    **The subclass contract.** A subclass may override these methods; the trial (and Determined, for its own)
    calls each with keyword arguments under exactly these names, so an override that keeps the signature keeps
    working. Call ``super()`` for the default behaviour.

    ==============================================================  ==========================================
    ``build_config(self) -> mmcv.Config``                           the final mmdet config
    ``build_train_dataset(self) -> Dataset``                        ``build_dataset(cfg.data.train)``
    ``build_val_dataset(self) -> Dataset``                          ``build_dataset(cfg.data.val, test_mode)``
    ``build_model(self) -> nn.Module``                              ``build_detector`` + ``init_weights``
    ``load_pretrained(self, model) -> None``                        warm start (zoo, weights, ``load_from``)
    ``build_optimizer(self, model) -> Optimizer``                   ``mmcv.runner.build_optimizer``
    ``build_scaler(self) -> GradScaler | None``                     ``fp16``
    ``build_hook_runner(self) -> HookRunner``                       ``custom_hooks`` (``mmdet2/hooks.py``)
    ``build_schedule(self) -> Schedule``                            ``lr_config`` / ``momentum_config``
    ``resolve_max_iters(self) -> int``                              the run's length in batches
    ``build_training_data_loader(self) -> DataLoader``              Determined's; must have a length
    ``build_validation_data_loader(self) -> DataLoader``            Determined's
    ``train_batch(self, batch, epoch_idx, batch_idx) -> dict``      one step; the training metrics
    ``evaluate_batch(self, batch, batch_idx) -> dict``              predictions of one validation batch
    ``evaluate(self, results, indices=None) -> dict``               metrics of all predictions; ``indices``:
                                                                    the images predicted, when a validation
                                                                    covers only some (test mode, skipped
                                                                    bad images), else None
    ``restore_position(self, batches_trained) -> None``             continue after a resume
    ``save_config(self) -> Path | None``                            ``save_cfg``
    ==============================================================  ==========================================

    ``build_training_data_loader`` may return any loader with a length: the schedule's epoch length is taken from
    it, and resume positions are restored into this class's own loader when it is the one in use (a
    ``det.pytorch.DataLoader`` is skipped ahead by Determined itself).
    """

    def __init__(self, context: pytorch.PyTorchTrialContext) -> None:
        generation.setup()  # idempotent; also here for a subclass that reloaded this module
        self.context = context
        # Values for hyperparameter specs too: `det experiment create --local --test` passes the raw section.
        self.hparams: dict[str, Any] = local_hparams(context.get_hparams())
        self.exp_conf: dict[str, Any] = with_defaults(self._experiment_config())
        self.data_config: dict[str, Any] = dict(self.exp_conf.get("data") or {})
        self.batches_trained = 0
        self._loss_names: list[str] | None = None  # see _loss_metrics
        self._new_loss_names: set[str] = set()
        self._train_loader: torch.utils.data.DataLoader | None = None
        # We move mmcv DataContainers ourselves and run our own resumable train sampler.
        context.experimental.disable_auto_to_device()
        context.experimental.disable_dataset_reproducibility_checks()

        self.cfg = self.build_config()
        self._runtime_settings()
        self.seed = self._seed()
        self.per_slot_batch_size = context.get_per_slot_batch_size()
        # loader workers yield the cores to training on the CPU (model_hub_mmdet.workers)
        self.worker_niceness = worker_niceness(self.data_config.get("worker_niceness"), context.device.type)
        self.cfg.data.samples_per_gpu = self.per_slot_batch_size
        self.train_dataset = self.build_train_dataset()
        self.val_dataset = self.build_val_dataset()

        model = self.build_model()
        self.load_pretrained(model=model)
        self.detector = model  # unwrapped: _parse_losses, CLASSES, exports
        self.scaler = self.build_scaler()  # Determined needs wrap_scaler before wrap_model
        self.model = context.wrap_model(model)
        self.optimizer = context.wrap_optimizer(self.build_optimizer(model=model))
        self.guard = NonFiniteGuard(
            (self.cfg.get("optimizer_config") or {}).get("grad_clip"),
            max_skips=int(self.hparams.get("skip_nonfinite_batches") or 0),
            enabled=self.scaler is None,  # fp16's GradScaler handles overflow itself
        )
        self._check_cumulative_gradients()
        self.hook_runner = self.build_hook_runner()
        self.hook_runner.optimizer = self.optimizer
        self.hook_runner.call("before_run")
        self.gatherer = context.wrap_reducer(
            PredictionGatherer(self.evaluate, len(self.val_dataset), partial_ok=self._partial_validation_reason,
                               defer_errors=True),
            for_training=False,
            for_validation=True,
        )
        self.save_config()

    # ----------------------------------------------------------------------------------------- config
    def _experiment_config(self) -> dict[str, Any]:
        try:
            return dict(self.context.get_experiment_config() or {})
        except Exception:  # determined raises when pytorch.init() was given no exp_conf
            return {}

    def _partial_validation_reason(self) -> str | None:
        """Why a validation may cover only some images: Determined's test mode, or bad images being skipped."""
        if determined_patches.in_test_mode(self.context):
            return "test mode"
        if BadImagePolicy.from_config(self.data_config.get("bad_images")).skip_at_validation:
            return "data.bad_images.skip_at_validation"
        return None

    def save_config(self) -> Path | None:
        """``save_cfg: true`` (the model hub's hyperparameter): write the final config, secrets redacted, to
        ``save_dir`` (default: the working directory) as ``<config_file name>`` (chief only)."""
        if not self.hparams.get("save_cfg") or self.context.distributed.get_rank() != 0:
            return None
        name = Path(str(self.hparams.get("config_file") or checkpoints.CONFIG_FILE)).name
        path = dump_config(self.cfg, Path(str(self.hparams.get("save_dir") or ".")) / name)
        logger.info("save_cfg: wrote the final config to %s", path)
        return path
    def _seed(self) -> int:
        """The trial seed. On a cluster Determined sets it and seeds every RNG; locally there is none, so the
        experiment's ``reproducibility.experiment_seed`` (else the config's ``seed``, else 0) seeds them here."""
        try:
            return int(self.context.get_trial_seed())
        except Exception:  # determined raises InternalException("Trial seed not set.") off-cluster
            pass
        exp_conf = self.context.get_experiment_config() or {}
        seed = int((exp_conf.get("reproducibility") or {}).get("experiment_seed", self.cfg.get("seed") or 0))
        import random

        import numpy as np

        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        return seed

    def build_config(self) -> Config:
        """The final MMDetection config (see :func:`model_hub_mmdet.build_mmdet_config`)."""
        cfg = build_mmdet_config(self.hparams, self.data_config, context_dir=os.getcwd())
        account_for_keys(cfg)  # every top-level key honoured, replaced (one INFO line) or refused
        self._auto_scale_lr(cfg)
        return cfg

    def _runtime_settings(self) -> None:
        """The config keys mmdet's tools/train.py applies to the process: opencv threads and the multiprocessing
        start method (``setup_multi_processes``), ``cudnn_benchmark``, and DDP's ``find_unused_parameters``."""
        from mmdet.utils import setup_multi_processes

        setup_multi_processes(self.cfg)
        if self.cfg.get("cudnn_benchmark", False):
            torch.backends.cudnn.benchmark = True
        if self.cfg.get("find_unused_parameters", False):
            determined_patches.ddp_options(self.context, find_unused_parameters=True)

    def _auto_scale_lr(self, cfg: Config) -> None:
        """``auto_scale_lr: true`` (or the config's ``auto_scale_lr.enable``) scales ``optimizer.lr`` by
        global batch / ``auto_scale_lr.base_batch_size``, like mmdet 2.28's ``--auto-scale-lr``."""
        setting = cfg.get("auto_scale_lr") or {}
        if not (self.hparams.get("auto_scale_lr") or setting.get("enable", False)):
            return
        base = setting.get("base_batch_size")
        if not base:
            raise ConfigError("auto_scale_lr needs auto_scale_lr.base_batch_size in the mmdet config")
        factor = self.context.get_global_batch_size() / base
        cfg.optimizer.lr = cfg.optimizer.lr * factor
        logger.info("auto_scale_lr: lr x %d/%d = %g", self.context.get_global_batch_size(), base, cfg.optimizer.lr)

    @functools.cached_property
    def final_config_text(self) -> str:
        """The final config as mmdet ``.py`` text, secrets redacted (formatted once: yapf takes 0.1-0.5 s)."""
        return config_text(self.cfg)

    def mmdet_meta(self) -> dict[str, Any]:
        """What a native mmdet checkpoint's ``meta`` holds."""
        import mmcv
        import mmdet

        return {
            "config": self.final_config_text,
            "CLASSES": list(self.detector.CLASSES or []),
            "mmdet_version": mmdet.__version__,
            "mmcv_version": mmcv.__version__,
            "ema_swapped_in": self.hook_runner.ema_swapped_in if self.hook_runner.has_ema else None,
        }

    # -------------------------------------------------------------------------------------- datasets
    def build_train_dataset(self) -> torch.utils.data.Dataset:
        from mmdet.datasets import build_dataset

        with registered_types("data.train"), quiet_stdout():
            return build_dataset(self.cfg.data.train)

    def build_val_dataset(self) -> torch.utils.data.Dataset:
        from mmdet.datasets import build_dataset

        with registered_types("data.val"), quiet_stdout():
            return build_dataset(self.cfg.data.val, dict(test_mode=True))

    def build_training_data_loader(self) -> torch.utils.data.DataLoader:
        """The endless, resumable, group-batched loader of this slot
        (:func:`model_hub_mmdet.mmdet2.data.build_train_loader`), built once."""
        if self._train_loader is None:
            self._train_loader = build_train_loader(
                self.train_dataset,
                self.per_slot_batch_size,
                num_workers=self.cfg.data.get("workers_per_gpu", 2),
                seed=self.seed,
                rank=self.context.distributed.get_rank(),
                num_replicas=self.context.distributed.get_size(),
                file_client_args=self.data_config.get("file_client_args"),
                bad_images=self.data_config.get("bad_images"),
                worker_niceness=self.worker_niceness,
            )
            self._train_loader.resumable.position = self.batches_trained
        return self._train_loader

    def build_validation_data_loader(self) -> pytorch.DataLoader:
        val_cfg = self.cfg.data.get("val_dataloader") or {}
        return build_val_loader(
            self.val_dataset,
            batch_size=val_cfg.get("samples_per_gpu", 1),
            num_workers=val_cfg.get("workers_per_gpu", self.cfg.data.get("workers_per_gpu", 2)),
            bad_images=self.data_config.get("bad_images"),
            worker_niceness=self.worker_niceness,
        )

    def restore_position(self, batches_trained: int) -> None:
        """Continue the schedule and the data order after ``batches_trained`` batches (called on resume)."""
        self.batches_trained = batches_trained
        if self._train_loader is not None:
            self._train_loader.resumable.position = batches_trained

    def release_finished_training_loader(self) -> None:
        """Once the last batch is trained, stop the training loader's worker processes: they would otherwise hold
        their memory through the final validation (whose own workers start then), the checkpoint and the export,
        until the process exits (bench/parity.py: the peak of the process tree). Should training go on after all,
        the loader starts new workers from this batch."""
        if self._train_loader is not None and self.batches_trained >= self.max_iters:
            self.release_training_workers()

    def release_training_workers(self) -> None:
        """Stop this package's training loader's worker processes; the next batch (if any) starts new ones and
        continues the same sequence of batches."""
        loader = self._train_loader
        if loader is not None and loader.release_workers():
            loader.resumable.position = self.batches_trained  # the workers had drawn batches ahead
            logger.debug("stopped the training loader's workers after batch %d", self.batches_trained)

    # ----------------------------------------------------------------------------------------- model
    def build_model(self) -> torch.nn.Module:
        """``build_detector`` + ``init_weights``; ``CLASSES`` from the training dataset; SyncBN -> BN off GPU."""
        from mmdet.models import build_detector

        with registered_types("model"):
            model = build_detector(
                self.cfg.model, train_cfg=self.cfg.get("train_cfg"), test_cfg=self.cfg.get("test_cfg")
            )
        mmcv_logger = logging.getLogger("mmcv")  # init_weights logs every tensor's initialiser at INFO
        level = mmcv_logger.level
        mmcv_logger.setLevel(max(level, logging.WARNING))
        try:
            model.init_weights()
        finally:
            mmcv_logger.setLevel(level)
        model.CLASSES = self.train_dataset.CLASSES
        if not torch.cuda.is_available() and any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules()):
            from mmcv.cnn.utils import revert_sync_batchnorm

            logger.info("SyncBN needs CUDA; converted to BatchNorm for this CPU run")
            model = revert_sync_batchnorm(model)
        return model

    def load_pretrained(self, model: torch.nn.Module) -> None:
        """Warm start from the model zoo (``use_pretrained``), ``pretrained_weights`` or ``cfg.load_from``."""
        from model_hub_mmdet import weights

        weights.warm_start(
            model, self.cfg, self.hparams, context_dir=os.getcwd(),
            file_client_args=self.data_config.get("file_client_args"),
        )

    # ------------------------------------------------------------------------------------- optimizer
    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        from mmcv.runner import build_optimizer

        return build_optimizer(model, self.cfg.optimizer)

    def build_scaler(self) -> Any:
        """``fp16 = dict(loss_scale=...)``: torch AMP with a GradScaler on GPU; on CPU a logged no-op."""
        fp16 = self.cfg.get("fp16")
        if not fp16:
            return None
        if not torch.cuda.is_available():
            logger.warning("fp16 is configured but there is no GPU: training in fp32")
            return None
        loss_scale = fp16.get("loss_scale", "dynamic")
        if loss_scale == "dynamic":
            kwargs: dict[str, Any] = {}
        elif isinstance(loss_scale, (int, float)):
            kwargs = dict(init_scale=float(loss_scale), growth_factor=1.0, backoff_factor=1.0)  # static scale
        elif isinstance(loss_scale, Mapping):
            kwargs = dict(loss_scale)
        else:
            raise ConfigError(f"fp16.loss_scale must be 'dynamic', a number or GradScaler kwargs, got {loss_scale!r}")
        return self.context.wrap_scaler(torch.cuda.amp.GradScaler(**kwargs))

    def _check_cumulative_gradients(self) -> None:
        """mmcv's ``GradientCumulativeOptimizerHook`` becomes Determined's gradient aggregation."""
        opt_cfg = self.cfg.get("optimizer_config") or {}
        if "cumulative_iters" not in opt_cfg and "Cumulative" not in str(opt_cfg.get("type", "")):
            return
        wanted = int(opt_cfg.get("cumulative_iters", 1))
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
            f"optimizer_config.cumulative_iters={wanted} needs the experiment setting"
            f" optimizations.aggregation_frequency: {wanted} (it is {configured}); Determined accumulates the"
            " gradients"
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
        """mmcv's LR/momentum hooks for this run, built at first use (the loader's length is known then)."""
        return self.build_schedule()

    def resolve_max_iters(self) -> int:
        """Total training batches: the searcher's ``max_length`` (in batches, records or epochs), else the config's
        runner length."""
        length = searcher_length(self.exp_conf)
        if length is not None and length.value > 0:
            return length.to_batches(
                global_batch_size=self.context.get_global_batch_size(), epoch_len=self.iters_per_epoch
            )
        runner = self.cfg.get("runner") or {}
        if runner.get("max_iters"):
            return int(runner["max_iters"])
        return int(runner.get("max_epochs", self.cfg.get("total_epochs", 12))) * self.iters_per_epoch

    def build_schedule(self) -> Any:
        from model_hub_mmdet.mmdet2.schedules import build_schedule

        return build_schedule(self.cfg, self.optimizer, self.iters_per_epoch, self.max_iters)

    def build_hook_runner(self) -> HookRunner:
        """The runner facade that calls the config's ``custom_hooks`` as mmcv's runner would
        (:mod:`model_hub_mmdet.mmdet2.hooks`)."""
        with registered_types("custom_hooks"):
            return self._build_hook_runner()

    def _build_hook_runner(self) -> HookRunner:
        return build_hook_runner(
            self.cfg.get("custom_hooks"),
            self.detector,
            train_dataset=self.train_dataset,
            val_dataset=self.val_dataset,
            iters_per_epoch=lambda: self.iters_per_epoch,
            max_iters=lambda: self.max_iters,
            batch_size=self.per_slot_batch_size,
            # what train_detector's runner.meta holds that hooks read (hook_msgs: CheckpointHook/EvalHook's notes)
            meta={"seed": self.seed, "exp_name": Path(str(self.hparams.get("config_file") or "")).name,
                  "hook_msgs": {}},
        )

    def build_callbacks(self) -> dict[str, pytorch.PyTorchCallback]:
        return {checkpoints.CALLBACK_KEY: MMDetTrialCallback(self)}

    # ------------------------------------------------------------------------------------- training
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.scaler is not None:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> dict[str, Any]:
        """One optimisation step; returns ``loss``, every logged loss term, ``lr`` (and ``grad_norm``)."""
        self.schedule.before_iter(self.batches_trained)
        # the run's first epoch (later ones start right after the previous epoch's last batch)
        if self.hook_runner.start_epoch_if_due(self.batches_trained):
            self.release_training_workers()
        self.hook_runner.before_iter(self.batches_trained)
        data = unwrap_batch(batch, self.context.device)
        self.guard.start_batch(batch_idx, data.get("img_metas"))
        with self._autocast():
            losses = self.model(**data)
        loss, log_vars = self.detector._parse_losses(losses)  # log_vars are averaged over slots: all agree
        if self.guard.loss_ok(log_vars):
            self.context.backward(self.scaler.scale(loss) if self.scaler is not None else loss)
            self.context.step_optimizer(self.optimizer, clip_grads=self.guard, scaler=self.scaler)
        else:
            self.optimizer.zero_grad(set_to_none=True)
        self.batches_trained += 1
        if self.hook_runner.after_iter(loss.detach(), log_vars, len(data.get("img_metas") or ())):
            self.release_training_workers()  # a hook changed the pipeline (YOLOX's mode switch)
        metrics = self._loss_metrics(log_vars)
        metrics["lr"] = self.schedule.current_lr()
        metrics["skipped_samples"] = skipped_samples(batch)
        if self.guard.clip_kwargs is not None and self.guard.last_norm is not None:
            metrics["grad_norm"] = self.guard.last_norm
        if self.guard.max_skips:
            metrics["nonfinite_batches_skipped"] = self.guard.skipped
        return metrics

    def _loss_metrics(self, log_vars: Mapping[str, float]) -> dict[str, float]:
        """The logged loss terms under the names of this reporting period. Determined refuses a period whose
        batches report different names, and a hook may add a term mid-run (YOLOX's mode switch adds ``loss_l1``):
        a new term is reported from the next period on (:meth:`new_reporting_period`), a missing one as 0.0."""
        if self._loss_names is None:
            self._loss_names = list(log_vars)
        self._new_loss_names.update(k for k in log_vars if k not in self._loss_names)
        return {k: float(log_vars.get(k, 0.0)) for k in self._loss_names}

    def new_reporting_period(self) -> None:
        """Determined reported the period's training metrics: newly logged loss terms join from here."""
        if self._loss_names is not None and self._new_loss_names:
            self._loss_names += sorted(self._new_loss_names)
        self._new_loss_names = set()

    # ----------------------------------------------------------------------------------- evaluation
    def evaluate_batch(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        """Predict one validation batch; metrics are computed over the whole dataset by the reducer."""
        data = unwrap_batch(batch, self.context.device)
        indices = data.pop("sample_idx")
        with torch.no_grad(), self._autocast():
            results = self.model(return_loss=False, rescale=True, **data)
        self.gatherer.update(indices, encode_results(results))
        return {}

    def evaluate(self, results: list[Any], indices: list[int] | None = None) -> dict[str, float]:
        """``dataset.evaluate`` on predictions in dataset order, with the config's metric arguments. With
        ``indices`` (test mode: the images that were predicted), only those images are scored."""
        dataset = self.val_dataset if indices is None else evaluation_subset(self.val_dataset, indices)
        kwargs = evaluate_kwargs(self.cfg.get("evaluation"), dataset.evaluate)
        kwargs.setdefault("logger", "silent")
        return evaluate_predictions(dataset.evaluate, results, kwargs)
