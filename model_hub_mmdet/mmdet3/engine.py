"""The MMDetection 3.x engine (mmdet 3.3, mmengine 0.10.7, mmcv 2.1) under the core trial
(:mod:`model_hub_mmdet.trial`).

Each method does one job of :class:`model_hub_mmdet.engine.Engine` with mmengine and mmdet 3.x: ``mmengine.Config``,
the ``DATASETS``/``MODELS`` registries, ``build_optim_wrapper``, mmengine's param schedulers (:mod:`.schedules`),
the config's ``collate_fn`` and the model's ``data_preprocessor`` (:mod:`.data`), ``parse_losses``, the
``val_evaluator`` metrics (:mod:`.evaluation`) and the ``custom_hooks`` runner facade (:mod:`.hooks`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_hub_mmdet import engine
from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.mmdet3.config import build_mmdet_config, config_text, dump_config, unknown_type
from model_hub_mmdet.mmdet3.config.keys import account_for_keys
from model_hub_mmdet.mmdet3.data import (
    build_collate,
    build_train_loader,
    build_val_loader,
    groups_by_aspect_ratio,
    strip_bookkeeping,
)
from model_hub_mmdet.mmdet3.evaluation import ValidationMetrics

logger = logging.getLogger("model_hub_mmdet")
NONFINITE_ADVICE = "lower optim_wrapper.optimizer.lr, add optim_wrapper.clip_grad"


@contextlib.contextmanager
def registered_types(key: str) -> Any:
    """mmengine's registries raise ``KeyError('X is not in the mmdet::model registry. Please check ...')`` for an
    unknown ``type``: one line naming the config key and the closest registered names."""
    try:
        yield
    except KeyError as err:
        if "registry" not in str(err):
            raise
        raise ConfigError(f"{key}: {unknown_type(err)}") from err


@contextlib.contextmanager
def quiet_mmengine(level: int = logging.WARNING) -> Any:
    """mmengine logs every initialiser, checkpoint source and COCO index at INFO on its own stdout handler."""
    from mmengine.logging import MMLogger

    mm_logger = MMLogger.get_current_instance()
    saved = mm_logger.level
    mm_logger.setLevel(max(saved, level))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            yield
    finally:
        mm_logger.setLevel(saved)


class _SharedParameterNotes(logging.Filter):
    """mmengine's optimizer constructor logs a WARNING for every parameter shared between modules when the config
    asks for ``paramwise_cfg.bypass_duplicate`` (RTMDet's heads share their convs: a dozen lines that only say the
    config's own choice was applied). One INFO line counts them instead."""

    MARK = "is duplicate. It is skipped since bypass_duplicate=True"

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.MARK in record.getMessage():
            self.dropped += 1
            return False
        return True


@contextlib.contextmanager
def _without_shared_parameter_notes() -> Any:
    from mmengine.logging import MMLogger

    mm_logger = MMLogger.get_current_instance()
    notes = _SharedParameterNotes()
    mm_logger.addFilter(notes)
    try:
        yield
    finally:
        mm_logger.removeFilter(notes)
        if notes.dropped:
            logger.info("optim_wrapper: %d parameter(s) shared between modules are optimised once"
                        " (paramwise_cfg.bypass_duplicate)", notes.dropped)


class Engine(engine.Engine):
    """MMDetection 3.x under the core trial (the methods are documented on :class:`model_hub_mmdet.engine.Engine`).

    ``optim_wrapper`` is mmengine's wrapper around the trial's optimizer (hooks read it) and
    ``base_hyperparameters`` the optimizer's values the param schedulers start from (after ``auto_scale_lr``)."""

    nonfinite_advice = NONFINITE_ADVICE
    loss_scale_key = "optim_wrapper.loss_scale"

    def __init__(self, trial: Any) -> None:
        super().__init__(trial)
        self.optim_wrapper: Any = None
        self.base_hyperparameters: list[dict[str, Any]] = []
        self.metrics: ValidationMetrics | None = None

    # ------------------------------------------------------------------------------------------------ config
    def build_config(self) -> Any:
        cfg = build_mmdet_config(self.trial.hparams, self.trial.data_config, context_dir=os.getcwd())
        account_for_keys(cfg)  # every top-level key honoured, replaced (one INFO line) or refused
        cfg.train_dataloader.batch_size = self.trial.per_slot_batch_size
        return cfg

    def runtime_settings(self) -> None:
        """``env_cfg`` as mmengine's ``Runner.setup_env`` applies it: ``cudnn_benchmark``, ``mp_cfg`` (the start
        method, opencv's threads: 0 by default, so a loader worker's cv2 calls do not start a thread per core) and
        ``resource_limit`` (open files). ``dist_cfg`` is Determined's launch here (nccl on GPUs, gloo on CPUs)."""
        from mmengine.utils.dl_utils import set_multi_processing

        env_cfg = self.trial.cfg.get("env_cfg") or {}
        if env_cfg.get("cudnn_benchmark"):
            torch.backends.cudnn.benchmark = True
        set_multi_processing(**dict(env_cfg.get("mp_cfg") or {}),
                             distributed=self.trial.context.distributed.get_size() > 1)
        raise_open_files_limit(int(env_cfg.get("resource_limit", 4096)))

    def config_seed(self) -> int | None:
        return (self.trial.cfg.get("randomness") or {}).get("seed")

    def seed_rngs(self, seed: int, on_cluster: bool) -> None:
        """mmengine's ``set_random_seed`` with the config's ``randomness`` (``deterministic``; ``diff_rank_seed``
        gives each rank its own global RNG streams, the data order keeps one seed), on a cluster too."""
        from mmengine.runner import set_random_seed

        randomness = dict(self.trial.cfg.get("randomness") or {})
        offset = self.trial.context.distributed.get_rank() if randomness.get("diff_rank_seed") else 0
        set_random_seed(seed + offset, deterministic=bool(randomness.get("deterministic", False)))

    def config_text(self, cfg: Any) -> str:
        return config_text(cfg)

    def dump_config(self, cfg: Any, path: Path) -> Path:
        return dump_config(cfg, path)

    def quiet(self) -> contextlib.AbstractContextManager:
        return quiet_mmengine()

    def registered_types(self, key: str) -> contextlib.AbstractContextManager:
        return registered_types(key)

    # -------------------------------------------------------------------------------------------------- data
    def build_dataset(self, split: str) -> torch.utils.data.Dataset:
        """``DATASETS.build(cfg.train_dataloader.dataset)`` (``val_dataloader`` for ``"val"``), its serialized records
        shared by the node's ranks (:func:`~model_hub_mmdet.mmdet3.shared_data.share_serialized`)."""
        from mmdet.registry import DATASETS

        from model_hub_mmdet.mmdet3.shared_data import share_serialized

        key = f"{split}_dataloader"
        with registered_types(f"{key}.dataset"):
            dataset = DATASETS.build(self.trial.cfg[key].dataset)
        # mmengine's serialized records mapped from one node-local file: one copy per node, not per rank
        return share_serialized(dataset)

    def build_train_loader(self, dataset: Any, batch_size: int, seed: int) -> Any:
        trial = self.trial
        loader_cfg = trial.cfg.train_dataloader
        return build_train_loader(
            dataset,
            batch_size,
            num_workers=int(loader_cfg.get("num_workers", 2)),
            seed=seed,
            rank=trial.context.distributed.get_rank(),
            num_replicas=trial.context.distributed.get_size(),
            shuffle=bool((loader_cfg.get("sampler") or {}).get("shuffle", True)),
            group_by_aspect_ratio=groups_by_aspect_ratio(loader_cfg),
            collate=build_collate(loader_cfg),
            file_client_args=trial.data_config.get("file_client_args"),
            bad_images=trial.data_config.get("bad_images"),
            worker_niceness=trial.worker_niceness,
        )

    def build_val_loader(self, dataset: Any) -> Any:
        loader_cfg = self.trial.cfg.val_dataloader
        return build_val_loader(
            dataset,
            batch_size=int(loader_cfg.get("batch_size", 1)),
            num_workers=int(loader_cfg.get("num_workers", 2)),
            collate=build_collate(loader_cfg),
            bad_images=self.trial.data_config.get("bad_images"),
            worker_niceness=self.trial.worker_niceness,
        )

    def unpack(self, batch: Any) -> Any:
        """The collated batch as is (the model's ``data_preprocessor`` stacks and moves it in the step)."""
        return strip_bookkeeping(batch)

    def image_metas(self, data: Any) -> list[Mapping[str, Any]]:
        return [{"filename": s.metainfo.get("img_path")} for s in data.get("data_samples") or []]

    # ----------------------------------------------------------------------------------- model and optimiser
    def build_model(self) -> torch.nn.Module:
        """``MODELS.build(cfg.model)`` (the top-level ``data_preprocessor`` when the model sets none) +
        ``init_weights``, then as mmengine's runner: ``sync_bn`` on several GPUs, SyncBN -> BN without CUDA (logged),
        ``activation_checkpointing`` and ``efficient_conv_bn_eval``."""
        from mmdet.registry import MODELS
        from mmengine.model import convert_sync_batchnorm, revert_sync_batchnorm
        from mmengine.model.efficient_conv_bn_eval import turn_on_efficient_conv_bn_eval
        from mmengine.runner.activation_checkpointing import turn_on_activation_checkpointing

        cfg = self.trial.cfg
        model_cfg = cfg.model
        if isinstance(model_cfg, Mapping) and cfg.get("data_preprocessor") is not None:
            model_cfg.setdefault("data_preprocessor", cfg.data_preprocessor)
        with registered_types("model"):
            model = MODELS.build(model_cfg)
        if hasattr(model, "init_weights"):
            model.init_weights()
        if cfg.get("sync_bn") and torch.cuda.is_available() and self.trial.context.distributed.get_size() > 1:
            try:
                model = convert_sync_batchnorm(model, cfg.sync_bn)
            except ValueError as err:
                raise ConfigError(f"sync_bn must be 'torch' or 'mmcv', got {cfg.sync_bn!r}") from err
        if not torch.cuda.is_available() and any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules()):
            logger.info("SyncBN needs CUDA; converted to BatchNorm for this CPU run")
            model = revert_sync_batchnorm(model)
        for key, turn_on in (("activation_checkpointing", turn_on_activation_checkpointing),
                             ("efficient_conv_bn_eval", turn_on_efficient_conv_bn_eval)):
            if cfg.get(key) is not None:
                logger.info("%s on %s", key, cfg[key])
                turn_on(model, cfg[key])
        model.dataset_meta = _plain(self.trial.train_dataset.metainfo)
        return model

    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """mmengine's ``build_optim_wrapper`` on ``optim_wrapper`` (``paramwise_cfg``, custom constructors); the
        wrapper is kept as :attr:`optim_wrapper`. An ``AmpOptimWrapper`` without CUDA trains in fp32 (a warning)."""
        from mmengine.optim import build_optim_wrapper

        ow_cfg = copy.deepcopy(self.trial.cfg.get("optim_wrapper"))
        if not isinstance(ow_cfg, Mapping) or "optimizer" not in ow_cfg and "constructor" not in ow_cfg:
            raise ConfigError(f"optim_wrapper must be a dict with an optimizer, got {ow_cfg!r}")
        if "Amp" in str(ow_cfg.get("type", "")) and not torch.cuda.is_available():
            logger.warning("optim_wrapper.type=%s needs a GPU: training in fp32", ow_cfg["type"])
            ow_cfg = {k: v for k, v in ow_cfg.items() if k not in ("loss_scale", "dtype", "use_fsdp")}
            ow_cfg["type"] = "OptimWrapper"
        ow_cfg.pop("accumulative_counts", None)  # Determined's aggregation_frequency accumulates
        with registered_types("optim_wrapper"), _without_shared_parameter_notes(), quiet_mmengine():
            try:
                wrapper = build_optim_wrapper(model, ow_cfg)
            except (TypeError, ValueError, AssertionError) as err:
                raise ConfigError(f"optim_wrapper is invalid: {' '.join(str(err).split())}") from err
        return self.adopt_optimizer(wrapper)

    def adopt_optimizer(self, built: Any) -> torch.optim.Optimizer:
        """An mmengine ``OptimWrapper`` (what ``build_optimizer`` returned before 0.3): kept, its optimizer used."""
        if not isinstance(getattr(built, "optimizer", None), torch.optim.Optimizer):
            raise ConfigError(f"optim_wrapper builds {type(built).__name__}, not one optimizer; MMDetTrial steps a"
                              " single optimizer (OptimWrapperDict setups need a subclass that overrides train_batch)")
        self.optim_wrapper = built
        return built.optimizer

    def scale_optimizer_lr(self, optimizer: torch.optim.Optimizer, factor: float) -> None:
        """``auto_scale_lr`` on every group's LR, as mmengine's runner scales the optimizer's."""
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * factor

    def optimizer_wrapped(self, optimizer: torch.optim.Optimizer) -> None:
        """The wrapper steps Determined's optimizer; the schedules start from its values now."""
        from mmengine.optim import OptimWrapper

        from model_hub_mmdet.mmdet3.schedules import hyperparameters

        if self.optim_wrapper is None:  # a subclass's build_optimizer returned a torch optimizer
            self.optim_wrapper = OptimWrapper(optimizer)
        self.optim_wrapper.optimizer = optimizer
        self.base_hyperparameters = hyperparameters(optimizer)

    def loss_scale(self) -> Any:
        """``AmpOptimWrapper(loss_scale=...)`` on a GPU (without one :meth:`build_optimizer` warned)."""
        ow_cfg = self.trial.cfg.get("optim_wrapper") or {}
        if "Amp" not in str(ow_cfg.get("type", "")) or not torch.cuda.is_available():
            return None
        return ow_cfg.get("loss_scale", "dynamic")

    def amp_dtype(self) -> torch.dtype:
        dtype = str((self.trial.cfg.get("optim_wrapper") or {}).get("dtype") or "float16")
        return torch.bfloat16 if "bf" in dtype else torch.float16

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        from model_hub_mmdet.mmdet3.check import find_unused_line, find_unused_parameters

        if find_unused_parameters(self.trial.cfg) and self.trial.context.distributed.get_size() > 1:
            raise ConfigError(find_unused_line())
        return self.trial.context.wrap_model(model)

    def _clip_grad(self) -> dict[str, Any]:
        return dict((self.trial.cfg.get("optim_wrapper") or {}).get("clip_grad") or {})

    def clip_norm_kwargs(self) -> dict[str, Any] | None:
        clip = self._clip_grad()
        if not clip or clip.pop("type", "norm") != "norm":
            return None
        return clip

    def clip_by_value(self, params: list[torch.nn.Parameter]) -> None:
        """``clip_grad=dict(type='value', clip_value=...)``."""
        clip = self._clip_grad()
        if clip and clip.pop("type", "norm") == "value":
            torch.nn.utils.clip_grad_value_([p for p in params if p.grad is not None], **clip)

    def accumulation(self) -> tuple[str, int] | None:
        """``optim_wrapper.accumulative_counts`` (1 when unset)."""
        wanted = int((self.trial.cfg.get("optim_wrapper") or {}).get("accumulative_counts", 1) or 1)
        return "optim_wrapper.accumulative_counts", wanted

    # ------------------------------------------------------------------------------------ schedule and hooks
    def config_length(self, iters_per_epoch: int) -> int:
        """The ``train_cfg`` loop's length."""
        from model_hub_mmdet.mmdet3.schedules import loop_is_iter_based

        train_cfg = self.trial.cfg.get("train_cfg") or {}
        if loop_is_iter_based(train_cfg):
            return int(train_cfg.get("max_iters", 1))
        return int(train_cfg.get("max_epochs", 12)) * iters_per_epoch

    def build_schedule(self, optimizer: torch.optim.Optimizer, iters_per_epoch: int, max_iters: int) -> Any:
        """mmengine's ``param_scheduler`` as a pure function of the batch index (:mod:`.schedules`)."""
        from model_hub_mmdet.mmdet3.schedules import build_schedule

        return build_schedule(self.trial.cfg, optimizer, self.base_hyperparameters, iters_per_epoch, max_iters)

    def build_hooks(self) -> Any:
        """The runner facade that runs ``custom_hooks`` and mmengine's ``RuntimeInfoHook`` (:mod:`.hooks`)."""
        from model_hub_mmdet.mmdet3.hooks import RunnerFacade

        trial = self.trial
        return RunnerFacade(
            trial.cfg, trial.detector, self.optim_wrapper, trial.train_dataset,
            iters_per_epoch=lambda: trial.iters_per_epoch, max_iters=lambda: trial.max_iters,
            restart_workers=trial.release_training_workers, seed=trial.seed,
            rank=trial.context.distributed.get_rank(), world_size=trial.context.distributed.get_size(),
            batch_size=trial.per_slot_batch_size, experiment_name=f"model_hub_mmdet-{id(trial)}",
            config_text=lambda: trial.final_config_text,
        )

    # ------------------------------------------------------------------------------------------------ a step
    def forward_loss(self, data: Any) -> tuple[torch.Tensor, Mapping[str, Any]]:
        """The model's ``data_preprocessor``, ``mode='loss'`` through the wrapped model, then ``parse_losses``
        (``log_vars``: tensors, as mmengine's hooks see them)."""
        detector = self.trial.detector
        with self.autocast():
            data = detector.data_preprocessor(data, True)
            losses = self.trial.model(**data, mode="loss")
        return detector.parse_losses(losses)

    def loss_values(self, log_vars: Mapping[str, Any]) -> dict[str, float]:
        return engine.mean_over_slots(log_vars, self.trial.context.distributed.get_size())

    def num_samples(self, data: Any) -> int:
        inputs = data.get("inputs")
        return len(inputs) if isinstance(inputs, (list, tuple)) else 1

    # -------------------------------------------------------------------------------------------- validation
    def build_metrics(self) -> None:
        """The ``val_evaluator`` metrics (CocoMetric reads its annotation file now)."""
        with quiet_mmengine():
            self.metrics = ValidationMetrics(self.trial.cfg.get("val_evaluator"), self.trial.val_dataset.metainfo)

    def val_autocast(self) -> contextlib.AbstractContextManager:
        """fp16 validation where mmengine's ValLoop has it: ``val_cfg.fp16`` on a GPU (AMP training alone does
        not make the runner validate in fp16)."""
        if (self.trial.cfg.get("val_cfg") or {}).get("fp16") and torch.cuda.is_available():
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def predict(self, data: Any) -> list[Any]:
        """``val_step``, then each metric's ``process`` (what it keeps per image travels to the chief)."""
        outputs = self.trial.detector.val_step(data)
        return self.metrics.process(outputs, data)

    def evaluate(self, results: list[Any], indices: list[int] | None = None) -> dict[str, float]:
        """Each metric's ``compute_metrics`` once; with ``indices``, COCO metrics score only those images."""
        with quiet_mmengine(logging.CRITICAL):  # CocoMetric's "results ... empty" ERROR: compute() says it once
            return self.metrics.compute(results, partial=indices is not None)

    def scores(self, result: Any) -> np.ndarray:
        """The scores of the first metric's predictions (CocoMetric keeps ``(ground truth, prediction)``)."""
        scores = [np.asarray(entry[1]["scores"]) for entry in result[0] if isinstance(entry, tuple)]
        return np.concatenate(scores) if scores else np.zeros(0)

    # ------------------------------------------------------------------------------------------------ export
    def export_meta(self) -> dict[str, Any]:
        """What a native mmdet 3 checkpoint's ``meta`` holds (``dataset_meta``, versions); the EMA weights travel
        in the hooks' state (``state_dict_changes``)."""
        import mmcv
        import mmdet
        import mmengine

        metainfo = self.trial.train_dataset.metainfo
        return {
            "dataset_meta": _plain(metainfo),
            "CLASSES": list(metainfo.get("classes") or []),
            "mmdet_version": mmdet.__version__,
            "mmcv_version": mmcv.__version__,
            "mmengine_version": mmengine.__version__,
        }


def raise_open_files_limit(wanted: int) -> None:
    """Raise the soft limit of open files to ``wanted`` (never above the hard limit, never lowered), as mmengine's
    runner does for ``env_cfg.resource_limit``: every loader worker holds shared-memory file descriptors."""
    try:
        import resource
    except ImportError:  # Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new_soft = max(wanted, soft) if hard == resource.RLIM_INFINITY else min(max(wanted, soft), hard)
    if new_soft != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))


def _plain(value: Any) -> Any:
    """Config/metainfo values as plain containers (a checkpoint loads them with ``weights_only=True``)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value) if isinstance(value, tuple) else [_plain(v) for v in value]
    return value
