"""The MMDetection 2.x engine (mmdet 2.28, mmcv-full 1.7) under the core trial (:mod:`model_hub_mmdet.trial`).

Each method does one job of :class:`model_hub_mmdet.engine.Engine` with mmcv and mmdet 2.x: ``mmcv.Config``,
``build_dataset``/``build_detector``, mmcv's ``build_optimizer``, mmcv's LR hooks (:mod:`.schedules`), mmcv's
``DataContainer`` batches (:mod:`.data`), ``_parse_losses``, ``dataset.evaluate`` (:mod:`.evaluation`) and the
``custom_hooks`` facade on mmcv's ``BaseRunner`` (:mod:`.hooks`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_hub_mmdet import determined_patches, engine, finite, generation

# The generation's patches (checked first) go in before mmcv and mmdet run: some of their modules call mmcv's
# get_logger at import, which would otherwise silence every root log handler.
generation.setup()

from model_hub_mmdet.errors import ConfigError  # noqa: E402
from model_hub_mmdet.mmdet2.config import build_mmdet_config, config_text, dump_config, evaluate_kwargs  # noqa: E402
from model_hub_mmdet.mmdet2.config.keys import account_for_keys  # noqa: E402
from model_hub_mmdet.mmdet2.data import build_train_loader, build_val_loader, unwrap_batch  # noqa: E402
from model_hub_mmdet.mmdet2.evaluation import encode_results, evaluate_predictions, evaluation_subset  # noqa: E402
from model_hub_mmdet.mmdet2.hooks import HookRunner, build_hook_runner  # noqa: E402

logger = logging.getLogger("model_hub_mmdet")


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


class Engine(engine.Engine):
    """MMDetection 2.x under the core trial (the methods are documented on :class:`model_hub_mmdet.engine.Engine`)."""

    nonfinite_advice = finite.ADVICE
    loss_scale_key = "fp16.loss_scale"

    # ------------------------------------------------------------------------------------------------ config
    def build_config(self) -> Any:
        trial = self.trial
        cfg = build_mmdet_config(trial.hparams, trial.data_config, context_dir=os.getcwd())
        account_for_keys(cfg)  # every top-level key honoured, replaced (one INFO line) or refused
        cfg.data.samples_per_gpu = trial.per_slot_batch_size
        return cfg

    def scale_config_lr(self, cfg: Any, factor: float) -> None:
        """mmdet 2.28's ``--auto-scale-lr`` scales the config's ``optimizer.lr`` (the saved config shows it)."""
        cfg.optimizer.lr = cfg.optimizer.lr * factor

    def runtime_settings(self) -> None:
        """What mmdet's tools/train.py applies to the process: opencv threads and the multiprocessing start method
        (``setup_multi_processes``), ``cudnn_benchmark``, and DDP's ``find_unused_parameters``."""
        from mmdet.utils import setup_multi_processes

        cfg = self.trial.cfg
        setup_multi_processes(cfg)
        if cfg.get("cudnn_benchmark", False):
            torch.backends.cudnn.benchmark = True
        if cfg.get("find_unused_parameters", False):
            determined_patches.ddp_options(self.trial.context, find_unused_parameters=True)

    def config_seed(self) -> int | None:
        return self.trial.cfg.get("seed")

    def seed_rngs(self, seed: int, on_cluster: bool) -> None:
        if on_cluster:
            return  # Determined seeded python, numpy and torch with the trial seed
        import random

        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def config_text(self, cfg: Any) -> str:
        return config_text(cfg)

    def dump_config(self, cfg: Any, path: Path) -> Path:
        return dump_config(cfg, path)

    def registered_types(self, key: str) -> contextlib.AbstractContextManager:
        return registered_types(key)

    # -------------------------------------------------------------------------------------------------- data
    def build_dataset(self, split: str) -> torch.utils.data.Dataset:
        """``build_dataset(cfg.data.train)``, or ``cfg.data.val`` in test mode, with its annotations in flat shared
        buffers (:func:`~model_hub_mmdet.mmdet2.datasets.flat.share_annotations`)."""
        from mmdet.datasets import build_dataset

        from model_hub_mmdet.mmdet2.datasets.flat import share_annotations

        data = self.trial.cfg.data
        with registered_types(f"data.{split}"), quiet_stdout():
            dataset = build_dataset(data.train) if split == "train" else build_dataset(data.val, dict(test_mode=True))
        # one copy of the annotations for every loader worker and every rank of the node, before workers fork
        return share_annotations(dataset)

    def build_train_loader(self, dataset: Any, batch_size: int, seed: int) -> Any:
        trial = self.trial
        return build_train_loader(
            dataset,
            batch_size,
            num_workers=trial.cfg.data.get("workers_per_gpu", 2),
            seed=seed,
            rank=trial.context.distributed.get_rank(),
            num_replicas=trial.context.distributed.get_size(),
            file_client_args=trial.data_config.get("file_client_args"),
            bad_images=trial.data_config.get("bad_images"),
            worker_niceness=trial.worker_niceness,
        )

    def build_val_loader(self, dataset: Any) -> Any:
        trial = self.trial
        val_cfg = trial.cfg.data.get("val_dataloader") or {}
        return build_val_loader(
            dataset,
            batch_size=val_cfg.get("samples_per_gpu", 1),
            num_workers=val_cfg.get("workers_per_gpu", trial.cfg.data.get("workers_per_gpu", 2)),
            bad_images=trial.data_config.get("bad_images"),
            worker_niceness=trial.worker_niceness,
        )

    def unpack(self, batch: Any) -> Any:
        """mmcv's DataContainers moved to the device (:func:`.data.unwrap_batch`)."""
        return unwrap_batch(batch, self.trial.context.device)

    def image_metas(self, data: Any) -> list[Mapping[str, Any]]:
        return data.get("img_metas") or []

    # ----------------------------------------------------------------------------------- model and optimiser
    def build_model(self) -> torch.nn.Module:
        """``build_detector`` + ``init_weights``; ``CLASSES`` from the training dataset; SyncBN -> BN off GPU."""
        from mmdet.models import build_detector

        cfg = self.trial.cfg
        with registered_types("model"):
            model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
        mmcv_logger = logging.getLogger("mmcv")  # init_weights logs every tensor's initialiser at INFO
        level = mmcv_logger.level
        mmcv_logger.setLevel(max(level, logging.WARNING))
        try:
            model.init_weights()
        finally:
            mmcv_logger.setLevel(level)
        model.CLASSES = self.trial.train_dataset.CLASSES
        if not torch.cuda.is_available() and any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules()):
            from mmcv.cnn.utils import revert_sync_batchnorm

            logger.info("SyncBN needs CUDA; converted to BatchNorm for this CPU run")
            model = revert_sync_batchnorm(model)
        return model

    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """``mmcv.runner.build_optimizer`` on the config's ``optimizer``."""
        from mmcv.runner import build_optimizer

        return build_optimizer(model, self.trial.cfg.optimizer)

    def loss_scale(self) -> Any:
        """``fp16 = dict(loss_scale=...)`` on a GPU; on the CPU a logged fp32 run."""
        fp16 = self.trial.cfg.get("fp16")
        if not fp16:
            return None
        if not torch.cuda.is_available():
            logger.warning("fp16 is configured but there is no GPU: training in fp32")
            return None
        return fp16.get("loss_scale", "dynamic")

    def clip_norm_kwargs(self) -> dict[str, Any] | None:
        return (self.trial.cfg.get("optimizer_config") or {}).get("grad_clip")

    def accumulation(self) -> tuple[str, int] | None:
        """mmcv's ``GradientCumulativeOptimizerHook`` (``optimizer_config.cumulative_iters``)."""
        opt_cfg = self.trial.cfg.get("optimizer_config") or {}
        if "cumulative_iters" not in opt_cfg and "Cumulative" not in str(opt_cfg.get("type", "")):
            return None
        return "optimizer_config.cumulative_iters", int(opt_cfg.get("cumulative_iters", 1))

    # ------------------------------------------------------------------------------------ schedule and hooks
    def config_length(self, iters_per_epoch: int) -> int:
        """The config's ``runner`` length (``max_iters``, else ``max_epochs``/``total_epochs`` epochs)."""
        cfg = self.trial.cfg
        runner = cfg.get("runner") or {}
        if runner.get("max_iters"):
            return int(runner["max_iters"])
        return int(runner.get("max_epochs", cfg.get("total_epochs", 12))) * iters_per_epoch

    def build_schedule(self, optimizer: torch.optim.Optimizer, iters_per_epoch: int, max_iters: int) -> Any:
        """mmcv's LR/momentum hooks (``lr_config``, ``momentum_config``) applied per batch (:mod:`.schedules`)."""
        from model_hub_mmdet.mmdet2.schedules import build_schedule

        return build_schedule(self.trial.cfg, optimizer, iters_per_epoch, max_iters)

    def build_hooks(self) -> HookRunner:
        """The ``custom_hooks`` on a runner facade built on mmcv's ``BaseRunner`` (:mod:`.hooks`)."""
        trial = self.trial
        runner = build_hook_runner(
            trial.cfg.get("custom_hooks"),
            trial.detector,
            train_dataset=trial.train_dataset,
            val_dataset=trial.val_dataset,
            iters_per_epoch=lambda: trial.iters_per_epoch,
            max_iters=lambda: trial.max_iters,
            batch_size=trial.per_slot_batch_size,
            restart_workers=trial.release_training_workers,
            # what train_detector's runner.meta holds that hooks read (hook_msgs: CheckpointHook/EvalHook's notes)
            meta={"seed": trial.seed, "exp_name": Path(str(trial.hparams.get("config_file") or "")).name,
                  "hook_msgs": {}},
        )
        runner.optimizer = trial.optimizer
        return runner

    # ------------------------------------------------------------------------------------------------ a step
    def forward_loss(self, data: Any) -> tuple[torch.Tensor, Mapping[str, Any]]:
        """The wrapped model's losses, then mmdet's ``_parse_losses`` (its ``log_vars`` are floats averaged over
        slots)."""
        with self.autocast():
            losses = self.trial.model(**data)
        return self.trial.detector._parse_losses(losses)

    def loss_values(self, log_vars: Mapping[str, Any]) -> dict[str, float]:
        return dict(log_vars)  # _parse_losses averaged them over slots already

    def num_samples(self, data: Any) -> int:
        return len(data.get("img_metas") or ())

    # -------------------------------------------------------------------------------------------- validation
    def val_autocast(self) -> contextlib.AbstractContextManager:
        """mmcv 1.x's fp16 validates in fp16 too."""
        return self.autocast()

    def predict(self, data: Any) -> list[Any]:
        """``model(return_loss=False, rescale=True)``, masks RLE-encoded as mmdet's ``single_gpu_test`` does."""
        return encode_results(self.trial.model(return_loss=False, rescale=True, **data))

    def evaluate(self, results: list[Any], indices: list[int] | None = None) -> dict[str, float]:
        """``dataset.evaluate`` with the config's ``evaluation`` arguments; with ``indices``, on those images."""
        val = self.trial.val_dataset
        dataset = val if indices is None else evaluation_subset(val, indices)
        kwargs = evaluate_kwargs(self.trial.cfg.get("evaluation"), dataset.evaluate)
        kwargs.setdefault("logger", "silent")
        return evaluate_predictions(dataset.evaluate, results, kwargs)

    def scores(self, result: Any) -> np.ndarray:
        """The scores of mmdet 2.x's per-class ``[x1, y1, x2, y2, score]`` arrays (with masks: the bbox part)."""
        if isinstance(result, Mapping) and "ins_results" in result:
            result = result["ins_results"]
        boxes = result[0] if isinstance(result, tuple) else result
        return np.concatenate([np.asarray(cls)[:, 4] for cls in boxes]) if len(boxes) else np.zeros(0)

    # ------------------------------------------------------------------------------------------------ export
    def export_meta(self) -> dict[str, Any]:
        """``CLASSES``, the versions, and whether the EMA weights are in the parameters (see ``export.py``)."""
        import mmcv
        import mmdet

        runner = self.trial.runner
        return {
            "CLASSES": list(self.trial.detector.CLASSES or []),
            "mmdet_version": mmdet.__version__,
            "mmcv_version": mmcv.__version__,
            "ema_swapped_in": runner.ema_swapped_in if runner.has_ema else None,
        }
