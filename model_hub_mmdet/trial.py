"""``MMDetTrial``: an MMDetection 2.x detector trained by Determined's PyTorchTrial loop.

The trial wires pieces together and keeps little logic of its own; every step is a small method a subclass
can override:

==========================  ====================================================================
``build_config``            experiment hyperparameters -> final ``mmcv.Config`` (config pipeline)
``build_train_dataset``     ``mmdet.datasets.build_dataset(cfg.data.train)``
``build_val_dataset``       ``build_dataset(cfg.data.val, dict(test_mode=True))``
``build_model``             ``build_detector`` + ``init_weights`` + CLASSES + SyncBN handling
``load_pretrained``         warm start (model zoo, ``pretrained_weights``, ``load_from``)
``build_optimizer``         ``mmcv.runner.build_optimizer`` (``paramwise_cfg``, custom constructors)
``build_schedule``          mmcv's LR/momentum hooks, applied per batch (``schedules.py``)
``train_batch``             forward, ``_parse_losses``, backward, clip, step
``evaluate_batch``          predictions gathered across slots; ``evaluate`` runs ``dataset.evaluate``
==========================  ====================================================================
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from determined import pytorch
from mmcv import Config

from model_hub_mmdet import compat
from model_hub_mmdet.config import build_mmdet_config, config_text, evaluate_kwargs
from model_hub_mmdet.data import build_train_loader, build_val_loader, unwrap_batch
from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.evaluation import PredictionGatherer, encode_results, evaluate_predictions

compat.apply()
logger = logging.getLogger("model_hub_mmdet")

CONFIG_FILENAME = "mmdet_config.py"


def searcher_max_batches(exp_conf: Mapping[str, Any], iters_per_epoch: int, global_batch_size: int) -> int | None:
    """``searcher.max_length`` of the experiment in batches (``batches``, ``epochs`` or ``records``)."""
    length = ((exp_conf or {}).get("searcher") or {}).get("max_length")
    if isinstance(length, int):
        return length
    if not isinstance(length, Mapping):
        return None
    if "batches" in length:
        return int(length["batches"])
    if "epochs" in length:
        return int(length["epochs"]) * iters_per_epoch
    if "records" in length:
        return -(-int(length["records"]) // global_batch_size)
    return None


class _TrialState(pytorch.PyTorchCallback):
    """Checkpoints what Determined does not: our batch counter (for the schedule and the data order) and
    the mmdet metadata (final config text, CLASSES, versions) needed to export a native mmdet checkpoint."""

    def __init__(self, trial: MMDetTrial) -> None:
        self.trial = trial

    def state_dict(self) -> dict[str, Any]:
        return {"batches_trained": self.trial.batches_trained}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.trial.restore_position(int(state_dict.get("batches_trained", 0)))

    def on_checkpoint_save_start(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mmdet_meta"] = self.trial.mmdet_meta()

    def on_checkpoint_write_end(self, checkpoint_dir: str) -> None:
        Path(checkpoint_dir, CONFIG_FILENAME).write_text(self.trial.mmdet_meta()["config"], encoding="utf-8")


class MMDetTrial(pytorch.PyTorchTrial):
    """Trains and evaluates any MMDetection 2.x detector described by ``hyperparameters.config_file``.

    Hyperparameters: ``config_file`` (required), ``merge_config``, ``override_mmdet_config``,
    ``use_pretrained``, ``pretrained_weights``, ``auto_scale_lr``, ``global_batch_size`` (required by
    Determined; per-slot batch = global / slots). The experiment's ``data`` section may hold
    ``file_client_args`` (storage backend for images and annotations).
    """

    def __init__(self, context: pytorch.PyTorchTrialContext) -> None:
        self.context = context
        self.hparams: dict[str, Any] = dict(context.get_hparams())
        self.data_config: dict[str, Any] = dict(context.get_data_config() or {})
        self.batches_trained = 0
        # We move mmcv DataContainers ourselves and run our own resumable train sampler.
        context.experimental.disable_auto_to_device()
        context.experimental.disable_dataset_reproducibility_checks()

        self.cfg = self.build_config()
        self.seed = self._seed()
        self.per_slot_batch_size = context.get_per_slot_batch_size()
        self.cfg.data.samples_per_gpu = self.per_slot_batch_size
        self.train_dataset = self.build_train_dataset()
        self.val_dataset = self.build_val_dataset()

        model = self.build_model()
        self.load_pretrained(model)
        self.detector = model  # unwrapped: _parse_losses, CLASSES, exports
        self.model = context.wrap_model(model)
        self.scaler = self.build_scaler()
        self.optimizer = context.wrap_optimizer(self.build_optimizer(model))
        self.grad_clip = dict((self.cfg.get("optimizer_config") or {}).get("grad_clip") or {})
        self._check_cumulative_gradients()

        self.train_loader = build_train_loader(
            self.train_dataset,
            self.per_slot_batch_size,
            num_workers=self.cfg.data.get("workers_per_gpu", 2),
            seed=self.seed,
            rank=context.distributed.get_rank(),
            num_replicas=context.distributed.get_size(),
            file_client_args=self.data_config.get("file_client_args"),
        )
        self.iters_per_epoch = len(self.train_loader.batch_sampler)
        self.max_iters = self.resolve_max_iters()
        self.schedule = self.build_schedule()
        self.gatherer = context.wrap_reducer(
            PredictionGatherer(self.evaluate, len(self.val_dataset)), for_training=False, for_validation=True
        )

    # ----------------------------------------------------------------------------------------- config
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
        self._auto_scale_lr(cfg)
        return cfg

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

    def mmdet_meta(self) -> dict[str, Any]:
        """What a native mmdet checkpoint's ``meta`` holds."""
        import mmcv
        import mmdet

        return {
            "config": config_text(self.cfg),
            "CLASSES": list(self.detector.CLASSES or []),
            "mmdet_version": mmdet.__version__,
            "mmcv_version": mmcv.__version__,
        }

    # -------------------------------------------------------------------------------------- datasets
    def build_train_dataset(self) -> torch.utils.data.Dataset:
        from mmdet.datasets import build_dataset

        return build_dataset(self.cfg.data.train)

    def build_val_dataset(self) -> torch.utils.data.Dataset:
        from mmdet.datasets import build_dataset

        return build_dataset(self.cfg.data.val, dict(test_mode=True))

    def build_training_data_loader(self) -> torch.utils.data.DataLoader:
        return self.train_loader

    def build_validation_data_loader(self) -> pytorch.DataLoader:
        val_cfg = self.cfg.data.get("val_dataloader") or {}
        return build_val_loader(
            self.val_dataset,
            batch_size=val_cfg.get("samples_per_gpu", 1),
            num_workers=val_cfg.get("workers_per_gpu", self.cfg.data.get("workers_per_gpu", 2)),
        )

    def restore_position(self, batches_trained: int) -> None:
        """Continue the schedule and the data order after ``batches_trained`` batches (called on resume)."""
        self.batches_trained = batches_trained
        self.train_loader.resumable.position = batches_trained

    # ----------------------------------------------------------------------------------------- model
    def build_model(self) -> torch.nn.Module:
        """``build_detector`` + ``init_weights``; ``CLASSES`` from the training dataset; SyncBN -> BN off GPU."""
        from mmdet.models import build_detector

        model = build_detector(self.cfg.model, train_cfg=self.cfg.get("train_cfg"), test_cfg=self.cfg.get("test_cfg"))
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

        weights.warm_start(model, self.cfg, self.hparams, context_dir=os.getcwd())

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
        opt_cfg = self.cfg.get("optimizer_config") or {}
        if "cumulative_iters" not in opt_cfg and "Cumulative" not in str(opt_cfg.get("type", "")):
            return
        wanted = int(opt_cfg.get("cumulative_iters", 1))
        have = int(((self.context.get_experiment_config() or {}).get("optimizations") or {}).get(
            "aggregation_frequency", 1
        ))
        if wanted != have:
            raise ConfigError(
                f"optimizer_config.cumulative_iters={wanted} needs the experiment setting"
                f" optimizations.aggregation_frequency: {wanted} (it is {have}); Determined accumulates the gradients"
            )

    def _clip(self, params: Any) -> None:
        params = [p for p in params if p.requires_grad and p.grad is not None]
        if params:
            self._grad_norm = float(torch.nn.utils.clip_grad_norm_(params, **self.grad_clip))

    # -------------------------------------------------------------------------------------- schedule
    def resolve_max_iters(self) -> int:
        """Total training batches: the searcher's ``max_length``, else the config's runner length."""
        exp_conf = self.context.get_experiment_config() or {}
        found = searcher_max_batches(exp_conf, self.iters_per_epoch, self.context.get_global_batch_size())
        if found:
            return found
        runner = self.cfg.get("runner") or {}
        if runner.get("max_iters"):
            return int(runner["max_iters"])
        return int(runner.get("max_epochs", self.cfg.get("total_epochs", 12))) * self.iters_per_epoch

    def build_schedule(self) -> Any:
        from model_hub_mmdet.schedules import build_schedule

        return build_schedule(self.cfg, self.optimizer, self.iters_per_epoch, self.max_iters)

    def build_callbacks(self) -> dict[str, pytorch.PyTorchCallback]:
        return {"model_hub_mmdet": _TrialState(self)}

    # ------------------------------------------------------------------------------------- training
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.scaler is not None:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> dict[str, Any]:
        """One optimisation step; returns ``loss``, every logged loss term, ``lr`` (and ``grad_norm``)."""
        self.schedule.before_iter(self.batches_trained)
        data = unwrap_batch(batch, self.context.device)
        with self._autocast():
            losses = self.model(**data)
        loss, log_vars = self.detector._parse_losses(losses)
        self.context.backward(self.scaler.scale(loss) if self.scaler is not None else loss)
        self._grad_norm = None
        self.context.step_optimizer(
            self.optimizer, clip_grads=self._clip if self.grad_clip else None, scaler=self.scaler
        )
        self.batches_trained += 1
        metrics = dict(log_vars)
        metrics["lr"] = self.schedule.current_lr()
        if self._grad_norm is not None:
            metrics["grad_norm"] = self._grad_norm
        return metrics

    # ----------------------------------------------------------------------------------- evaluation
    def evaluate_batch(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        """Predict one validation batch; metrics are computed over the whole dataset by the reducer."""
        data = unwrap_batch(batch, self.context.device)
        indices = data.pop("sample_idx")
        with torch.no_grad(), self._autocast():
            results = self.model(return_loss=False, rescale=True, **data)
        self.gatherer.update(indices, encode_results(results))
        return {}

    def evaluate(self, results: list[Any]) -> dict[str, float]:
        """``dataset.evaluate`` on predictions in dataset order, with the config's metric arguments."""
        kwargs = evaluate_kwargs(self.cfg.get("evaluation"), self.val_dataset.evaluate)
        kwargs.setdefault("logger", "silent")
        return evaluate_predictions(self.val_dataset.evaluate, results, kwargs)
