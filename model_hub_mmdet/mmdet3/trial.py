"""``MMDetTrial``: an MMDetection 3.x detector trained by Determined's PyTorchTrial loop.

The same hyperparameters and the same overridable methods as the 2.x trial (``model_hub_mmdet.mmdet2.trial``),
with mmengine and mmdet 3.x inside:

==========================  ====================================================================
``build_config``            experiment hyperparameters -> final ``mmengine.Config`` (config pipeline)
``build_train_dataset``     ``DATASETS.build(cfg.train_dataloader.dataset)``
``build_val_dataset``       ``DATASETS.build(cfg.val_dataloader.dataset)``
``build_model``             ``MODELS.build`` + ``init_weights`` + SyncBN -> BN on the CPU
``load_pretrained``         warm start (model zoo, ``pretrained_weights``, ``load_from``)
``build_optimizer``         mmengine's ``build_optim_wrapper`` (``paramwise_cfg``, constructors, ``clip_grad``)
``build_scaler``            the GradScaler of an ``AmpOptimWrapper``
``build_schedule``          mmengine's param schedulers as a pure function of the batch index
``build_hooks``             the runner facade that runs ``custom_hooks`` (``hooks.py``)
``train_batch``             data_preprocessor, ``mode='loss'`` through the wrapped model, parse_losses, step
``evaluate_batch``          predictions -> each metric's ``process``; ``evaluate`` runs ``compute_metrics``
==========================  ====================================================================
"""

from __future__ import annotations

import contextlib
import copy
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
from model_hub_mmdet.bad_images import BadImagePolicy
from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.expconf import local_hparams, searcher_length, with_defaults
from model_hub_mmdet.finite import NonFiniteGuard, check_finite_weights
from model_hub_mmdet.loaders import INDEX_KEY
from model_hub_mmdet.mmdet3.config import build_mmdet_config, config_text, dump_config, unknown_type
from model_hub_mmdet.mmdet3.config.keys import account_for_keys
from model_hub_mmdet.mmdet3.data import (
    build_collate,
    build_train_loader,
    build_val_loader,
    groups_by_aspect_ratio,
    skipped_samples,
    strip_bookkeeping,
)
from model_hub_mmdet.mmdet3.evaluation import PredictionGatherer, ValidationMetrics
from model_hub_mmdet.workers import worker_niceness

logger = logging.getLogger("model_hub_mmdet")
NONFINITE_ADVICE = "lower optim_wrapper.optimizer.lr, add optim_wrapper.clip_grad"


class MMDetTrialCallback(pytorch.PyTorchCallback):
    """Checkpoints what Determined does not: the trial's batch counter (for the schedule and the data order), what
    hooks keep (the EMA weights), and the mmdet metadata (final config text, dataset_meta, versions) needed to export
    a native mmdet checkpoint (layout: :mod:`model_hub_mmdet.checkpoints`)."""

    def __init__(self, trial: MMDetTrial) -> None:
        self.trial = trial

    def state_dict(self) -> dict[str, Any]:
        return {"batches_trained": self.trial.batches_trained, "hooks": self.trial.runner.checkpoint_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.trial.restore_position(int(state_dict.get("batches_trained", 0)))
        self.trial.runner.load_checkpoint_state(state_dict.get("hooks") or {})

    def on_checkpoint_save_start(self, checkpoint: dict[str, Any]) -> None:
        check_finite_weights(checkpoint.get("models_state_dict") or [], advice=NONFINITE_ADVICE)
        checkpoint[checkpoints.META_KEY] = self.trial.mmdet_meta()

    def on_checkpoint_write_end(self, checkpoint_dir: str) -> None:
        checkpoints.write_config(checkpoint_dir, self.trial.mmdet_meta())
        checkpoints.redact_load_data(checkpoint_dir)

    def on_validation_start(self) -> None:
        self.trial.release_finished_training_loader()
        self.trial.runner.before_validation()

    def on_validation_end(self, metrics: dict[str, Any]) -> None:
        self.trial.runner.after_validation(metrics)

    def on_checkpoint_upload_end(self, uuid: str) -> None:
        local = checkpoints.local_checkpoint(uuid)
        self.trial.guard.last_checkpoint = str(local) if local.is_dir() else uuid


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


class MMDetTrial(pytorch.PyTorchTrial):
    """Trains and evaluates any MMDetection 3.x detector described by ``hyperparameters.config_file``.

    Hyperparameters: ``config_file`` (required), ``merge_config``, ``override_mmdet_config``,
    ``use_pretrained``, ``pretrained_weights``, ``auto_scale_lr``, ``save_cfg`` / ``save_dir``,
    ``skip_nonfinite_batches``, ``global_batch_size`` (required by Determined; per-slot batch = global / slots,
    which becomes ``train_dataloader.batch_size``). The experiment's ``data`` section may hold
    ``file_client_args`` (storage backend for images and annotations, as mmengine ``backend_args``),
    ``bad_images`` and ``worker_niceness``.

    Subclasses may override any ``build_*`` method (see the module docstring), including Determined's
    ``build_training_data_loader``: the schedule's epoch length is taken from whatever loader that returns, and
    resume positions are restored into this class's own loader when it is the one in use.
    """

    def __init__(self, context: pytorch.PyTorchTrialContext) -> None:
        generation.setup()  # this generation's patches, checked then applied; registries and storage backends
        self.context = context
        self.hparams: dict[str, Any] = local_hparams(context.get_hparams())
        self.exp_conf: dict[str, Any] = with_defaults(self._experiment_config())
        self.data_config: dict[str, Any] = dict(self.exp_conf.get("data") or {})
        self.batches_trained = 0
        self._train_loader: Any = None
        self._reported_terms: list[str] | None = None
        self._unreported_terms: set[str] = set()
        context.experimental.disable_auto_to_device()  # the data_preprocessor moves the batch
        context.experimental.disable_dataset_reproducibility_checks()

        self.per_slot_batch_size = context.get_per_slot_batch_size()
        self.cfg = self.build_config()
        self._runtime_settings()
        self.seed = self._seed()
        self.worker_niceness = worker_niceness(self.data_config.get("worker_niceness"), context.device.type)
        with quiet_mmengine():
            self.train_dataset = self.build_train_dataset()
            self.val_dataset = self.build_val_dataset()
            model = self.build_model()
        self.load_pretrained(model)
        self.detector = model  # unwrapped: data_preprocessor, parse_losses, val_step, exports
        with quiet_mmengine():  # the constructor logs every parameter's paramwise options
            self.optim_wrapper = self.build_optimizer(model)
        self.base_hyperparameters = self._scaled_hyperparameters()
        self.scaler = self.build_scaler()  # Determined needs wrap_scaler before wrap_model
        self.model = self._wrap_model(model)
        self.optimizer = context.wrap_optimizer(self.optim_wrapper.optimizer)
        self.optim_wrapper.optimizer = self.optimizer
        self.guard = NonFiniteGuard(
            self._clip_norm_kwargs(),
            max_skips=int(self.hparams.get("skip_nonfinite_batches") or 0),
            enabled=self.scaler is None,  # the GradScaler handles overflow itself
            advice=NONFINITE_ADVICE,
        )
        self._check_accumulation()
        with quiet_mmengine():  # CocoMetric reads its annotation file now
            self.metrics = ValidationMetrics(self.cfg.get("val_evaluator"), self.val_dataset.metainfo)
        self.gatherer = context.wrap_reducer(
            PredictionGatherer(self.evaluate, len(self.val_dataset), partial_ok=self._partial_validation_reason),
            for_training=False,
            for_validation=True,
        )
        self.runner = self.build_hooks()
        self.runner.call("before_run")
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

    def build_config(self) -> Any:
        """The final MMDetection config (see :func:`model_hub_mmdet.build_mmdet_config`), with this slot's batch
        size as ``train_dataloader.batch_size``."""
        cfg = build_mmdet_config(self.hparams, self.data_config, context_dir=os.getcwd())
        account_for_keys(cfg)  # every top-level key honoured, replaced (one INFO line) or refused
        cfg.train_dataloader.batch_size = self.per_slot_batch_size
        return cfg

    def _runtime_settings(self) -> None:
        """``env_cfg`` as mmengine's ``Runner.setup_env`` applies it: ``cudnn_benchmark``, ``mp_cfg`` (the start
        method, opencv's threads: 0 by default, so a loader worker's cv2 calls do not start a thread per core) and
        ``resource_limit`` (open files). ``dist_cfg`` is Determined's launch here (nccl on GPUs, gloo on CPUs)."""
        from mmengine.utils.dl_utils import set_multi_processing

        env_cfg = self.cfg.get("env_cfg") or {}
        if env_cfg.get("cudnn_benchmark"):
            torch.backends.cudnn.benchmark = True
        set_multi_processing(**dict(env_cfg.get("mp_cfg") or {}), distributed=self.context.distributed.get_size() > 1)
        raise_open_files_limit(int(env_cfg.get("resource_limit", 4096)))

    def save_config(self) -> Path | None:
        """``save_cfg: true``: write the final config, secrets redacted, to ``save_dir`` (chief only)."""
        if not self.hparams.get("save_cfg") or self.context.distributed.get_rank() != 0:
            return None
        name = Path(str(self.hparams.get("config_file") or checkpoints.CONFIG_FILE)).name
        path = dump_config(self.cfg, Path(str(self.hparams.get("save_dir") or ".")) / name)
        logger.info("save_cfg: wrote the final config to %s", path)
        return path

    def _seed(self) -> int:
        """The trial seed (Determined's on a cluster; locally ``reproducibility.experiment_seed``, else the config's
        ``randomness.seed``, else 0), with mmengine's ``randomness`` settings applied (``deterministic``)."""
        from mmengine.runner import set_random_seed

        try:
            seed = int(self.context.get_trial_seed())
        except Exception:  # determined raises InternalException("Trial seed not set.") off-cluster
            randomness = self.cfg.get("randomness") or {}
            exp_seed = (self.exp_conf.get("reproducibility") or {}).get("experiment_seed")
            seed = int(exp_seed if exp_seed is not None else randomness.get("seed") or 0)
        randomness = dict(self.cfg.get("randomness") or {})
        # mmengine's diff_rank_seed gives each rank its own global RNG streams; the data order keeps one seed.
        offset = self.context.distributed.get_rank() if randomness.get("diff_rank_seed") else 0
        set_random_seed(seed + offset, deterministic=bool(randomness.get("deterministic", False)))
        return seed

    def _scaled_hyperparameters(self) -> list[dict[str, Any]]:
        """``auto_scale_lr: true`` (or the config's ``auto_scale_lr.enable``) scales every group's LR by global batch /
        ``auto_scale_lr.base_batch_size``, as mmengine's runner does; returns the base values schedules start from."""
        from model_hub_mmdet.mmdet3.schedules import hyperparameters

        setting = self.cfg.get("auto_scale_lr") or {}
        if self.hparams.get("auto_scale_lr") or setting.get("enable", False):
            base = setting.get("base_batch_size")
            if not base:
                raise ConfigError("auto_scale_lr needs auto_scale_lr.base_batch_size in the mmdet config")
            ratio = self.context.get_global_batch_size() / base
            for group in self.optim_wrapper.optimizer.param_groups:
                group["lr"] = group["lr"] * ratio
            logger.info("auto_scale_lr: lr x %d/%d", self.context.get_global_batch_size(), base)
        return hyperparameters(self.optim_wrapper.optimizer)

    @functools.cached_property
    def final_config_text(self) -> str:
        """The final config as mmdet ``.py`` text, secrets redacted (formatted once)."""
        return config_text(self.cfg)

    def mmdet_meta(self) -> dict[str, Any]:
        """What a native mmdet 3 checkpoint's ``meta`` holds (``cfg``, ``dataset_meta``, versions)."""
        import mmcv
        import mmdet
        import mmengine

        return {
            "config": self.final_config_text,
            "dataset_meta": _plain(self.train_dataset.metainfo),
            "CLASSES": list(self.train_dataset.metainfo.get("classes") or []),
            "mmdet_version": mmdet.__version__,
            "mmcv_version": mmcv.__version__,
            "mmengine_version": mmengine.__version__,
        }

    # -------------------------------------------------------------------------------------- datasets
    def build_train_dataset(self) -> torch.utils.data.Dataset:
        """``DATASETS.build(cfg.train_dataloader.dataset)``."""
        from mmdet.registry import DATASETS

        with registered_types("train_dataloader.dataset"):
            return DATASETS.build(self.cfg.train_dataloader.dataset)

    def build_val_dataset(self) -> torch.utils.data.Dataset:
        """``DATASETS.build(cfg.val_dataloader.dataset)``."""
        from mmdet.registry import DATASETS

        with registered_types("val_dataloader.dataset"):
            return DATASETS.build(self.cfg.val_dataloader.dataset)

    def build_training_data_loader(self) -> Any:
        """The endless, resumable, group-batched loader of this slot
        (:func:`model_hub_mmdet.mmdet3.data.build_train_loader`), built once."""
        if self._train_loader is None:
            loader_cfg = self.cfg.train_dataloader
            self._train_loader = build_train_loader(
                self.train_dataset,
                self.per_slot_batch_size,
                num_workers=int(loader_cfg.get("num_workers", 2)),
                seed=self.seed,
                rank=self.context.distributed.get_rank(),
                num_replicas=self.context.distributed.get_size(),
                shuffle=bool((loader_cfg.get("sampler") or {}).get("shuffle", True)),
                group_by_aspect_ratio=groups_by_aspect_ratio(loader_cfg),
                collate=build_collate(loader_cfg),
                file_client_args=self.data_config.get("file_client_args"),
                bad_images=self.data_config.get("bad_images"),
                worker_niceness=self.worker_niceness,
            )
            self._train_loader.resumable.position = self.batches_trained
        return self._train_loader

    def build_validation_data_loader(self) -> pytorch.DataLoader:
        """Determined's loader over the validation set: each image once across slots (``data.build_val_loader``)."""
        loader_cfg = self.cfg.val_dataloader
        return build_val_loader(
            self.val_dataset,
            batch_size=int(loader_cfg.get("batch_size", 1)),
            num_workers=int(loader_cfg.get("num_workers", 2)),
            collate=build_collate(loader_cfg),
            bad_images=self.data_config.get("bad_images"),
            worker_niceness=self.worker_niceness,
        )

    def restore_position(self, batches_trained: int) -> None:
        """Continue the schedule, the hooks and the data order after ``batches_trained`` batches (on resume)."""
        self.batches_trained = batches_trained
        if self._train_loader is not None:
            self._train_loader.resumable.position = batches_trained
        self.runner.restart(batches_trained)

    def release_finished_training_loader(self) -> None:
        """Once the last batch is trained, stop the training loader's workers (they would hold their memory through
        the final validation, checkpoint and export)."""
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
        """``MODELS.build(cfg.model)`` (the top-level ``data_preprocessor`` when the model sets none) +
        ``init_weights``, then as mmengine's runner: ``sync_bn`` on several GPUs, SyncBN -> BN without CUDA (logged),
        ``activation_checkpointing`` and ``efficient_conv_bn_eval``."""
        from mmdet.registry import MODELS
        from mmengine.model import convert_sync_batchnorm, revert_sync_batchnorm
        from mmengine.model.efficient_conv_bn_eval import turn_on_efficient_conv_bn_eval
        from mmengine.runner.activation_checkpointing import turn_on_activation_checkpointing

        model_cfg = self.cfg.model
        if isinstance(model_cfg, Mapping) and self.cfg.get("data_preprocessor") is not None:
            model_cfg.setdefault("data_preprocessor", self.cfg.data_preprocessor)
        with registered_types("model"):
            model = MODELS.build(model_cfg)
        if hasattr(model, "init_weights"):
            model.init_weights()
        if self.cfg.get("sync_bn") and torch.cuda.is_available() and self.context.distributed.get_size() > 1:
            try:
                model = convert_sync_batchnorm(model, self.cfg.sync_bn)
            except ValueError as err:
                raise ConfigError(f"sync_bn must be 'torch' or 'mmcv', got {self.cfg.sync_bn!r}") from err
        if not torch.cuda.is_available() and any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules()):
            logger.info("SyncBN needs CUDA; converted to BatchNorm for this CPU run")
            model = revert_sync_batchnorm(model)
        for key, turn_on in (("activation_checkpointing", turn_on_activation_checkpointing),
                             ("efficient_conv_bn_eval", turn_on_efficient_conv_bn_eval)):
            if self.cfg.get(key) is not None:
                logger.info("%s on %s", key, self.cfg[key])
                turn_on(model, self.cfg[key])
        model.dataset_meta = _plain(self.train_dataset.metainfo)
        return model

    def load_pretrained(self, model: torch.nn.Module) -> None:
        """Warm start from the model zoo (``use_pretrained``), ``pretrained_weights`` or ``cfg.load_from``."""
        from model_hub_mmdet import weights

        weights.warm_start(
            model, self.cfg, self.hparams, context_dir=os.getcwd(),
            file_client_args=self.data_config.get("file_client_args"),
        )

    def _wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        from model_hub_mmdet.mmdet3.check import find_unused_line, find_unused_parameters

        if find_unused_parameters(self.cfg) and self.context.distributed.get_size() > 1:
            raise ConfigError(find_unused_line())
        return self.context.wrap_model(model)

    # ------------------------------------------------------------------------------------- optimizer
    def build_optimizer(self, model: torch.nn.Module) -> Any:
        """mmengine's ``build_optim_wrapper`` on ``optim_wrapper`` (``paramwise_cfg``, custom constructors). An
        ``AmpOptimWrapper`` without CUDA trains in fp32, with a warning."""
        from mmengine.optim import build_optim_wrapper

        ow_cfg = copy.deepcopy(self.cfg.get("optim_wrapper"))
        if not isinstance(ow_cfg, Mapping) or "optimizer" not in ow_cfg and "constructor" not in ow_cfg:
            raise ConfigError(f"optim_wrapper must be a dict with an optimizer, got {ow_cfg!r}")
        if "Amp" in str(ow_cfg.get("type", "")) and not torch.cuda.is_available():
            logger.warning("optim_wrapper.type=%s needs a GPU: training in fp32", ow_cfg["type"])
            ow_cfg = {k: v for k, v in ow_cfg.items() if k not in ("loss_scale", "dtype", "use_fsdp")}
            ow_cfg["type"] = "OptimWrapper"
        ow_cfg.pop("accumulative_counts", None)  # Determined's aggregation_frequency accumulates
        with registered_types("optim_wrapper"), _without_shared_parameter_notes():
            try:
                wrapper = build_optim_wrapper(model, ow_cfg)
            except (TypeError, ValueError, AssertionError) as err:
                raise ConfigError(f"optim_wrapper is invalid: {' '.join(str(err).split())}") from err
        if not isinstance(getattr(wrapper, "optimizer", None), torch.optim.Optimizer):
            raise ConfigError(f"optim_wrapper builds {type(wrapper).__name__}, not one optimizer; MMDetTrial steps a"
                              " single optimizer (OptimWrapperDict setups need a subclass that overrides train_batch)")
        return wrapper

    def build_scaler(self) -> Any:
        """``AmpOptimWrapper(loss_scale=...)`` on a GPU: torch's GradScaler (dynamic, a static number, or kwargs)."""
        ow_cfg = self.cfg.get("optim_wrapper") or {}
        if "Amp" not in str(ow_cfg.get("type", "")) or not torch.cuda.is_available():
            return None
        loss_scale = ow_cfg.get("loss_scale", "dynamic")
        if loss_scale == "dynamic":
            kwargs: dict[str, Any] = {}
        elif isinstance(loss_scale, (int, float)):
            kwargs = dict(init_scale=float(loss_scale), growth_factor=1.0, backoff_factor=1.0)
        elif isinstance(loss_scale, Mapping):
            kwargs = dict(loss_scale)
        else:
            raise ConfigError(f"optim_wrapper.loss_scale must be 'dynamic', a number or GradScaler kwargs, got"
                              f" {loss_scale!r}")
        return self.context.wrap_scaler(torch.amp.GradScaler("cuda", **kwargs))

    def _amp_dtype(self) -> torch.dtype:
        dtype = str((self.cfg.get("optim_wrapper") or {}).get("dtype") or "float16")
        return torch.bfloat16 if "bf" in dtype else torch.float16

    def _clip_norm_kwargs(self) -> dict[str, Any] | None:
        clip = dict((self.cfg.get("optim_wrapper") or {}).get("clip_grad") or {})
        if not clip or clip.pop("type", "norm") != "norm":
            return None
        return clip

    def _clip_grads(self, params: Any) -> None:
        """``clip_grad`` of type ``value`` first, then the guard (norm clipping and the non-finite check)."""
        clip = dict((self.cfg.get("optim_wrapper") or {}).get("clip_grad") or {})
        params = list(params)
        if clip and clip.pop("type", "norm") == "value":
            torch.nn.utils.clip_grad_value_([p for p in params if p.grad is not None], **clip)
        self.guard(params)

    def _check_accumulation(self) -> None:
        """``optim_wrapper.accumulative_counts`` becomes Determined's gradient aggregation."""
        wanted = int((self.cfg.get("optim_wrapper") or {}).get("accumulative_counts", 1) or 1)
        running = determined_patches.aggregation_frequency(self.context)
        configured = int(self.exp_conf["optimizations"]["aggregation_frequency"])
        if wanted == running:
            return
        if wanted == configured:
            logger.warning("optimizations.aggregation_frequency=%d is not applied by this runner (Determined's --test"
                           " mode does not pass it to pytorch.init): this run steps the optimizer every batch",
                           configured)
            return
        raise ConfigError(
            f"optim_wrapper.accumulative_counts={wanted} needs the experiment setting"
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
        """mmengine's param schedulers for this run, built at first use (the loader's length is known then)."""
        return self.build_schedule()

    def resolve_max_iters(self) -> int:
        """Total training batches: the searcher's ``max_length`` (in batches, records or epochs), else the config's
        ``train_cfg`` length."""
        from model_hub_mmdet.mmdet3.schedules import loop_is_iter_based

        length = searcher_length(self.exp_conf)
        if length is not None and length.value > 0:
            return length.to_batches(
                global_batch_size=self.context.get_global_batch_size(), epoch_len=self.iters_per_epoch
            )
        train_cfg = self.cfg.get("train_cfg") or {}
        if loop_is_iter_based(train_cfg):
            return int(train_cfg.get("max_iters", 1))
        return int(train_cfg.get("max_epochs", 12)) * self.iters_per_epoch

    def build_schedule(self) -> Any:
        """mmengine's ``param_scheduler`` as a pure function of the batch index (:mod:`.schedules`)."""
        from model_hub_mmdet.mmdet3.schedules import build_schedule

        return build_schedule(self.cfg, self.optimizer, self.base_hyperparameters, self.iters_per_epoch,
                              self.max_iters)

    def build_hooks(self) -> Any:
        """The runner facade that runs ``custom_hooks`` and mmengine's ``RuntimeInfoHook`` (``hooks.py``)."""
        from model_hub_mmdet.mmdet3.hooks import RunnerFacade

        with registered_types("custom_hooks"):
            return RunnerFacade(
                self.cfg, self.detector, self.optim_wrapper, self.train_dataset,
                iters_per_epoch=lambda: self.iters_per_epoch, max_iters=lambda: self.max_iters,
                restart_workers=self.release_training_workers, seed=self.seed,
                rank=self.context.distributed.get_rank(), world_size=self.context.distributed.get_size(),
                batch_size=self.per_slot_batch_size, experiment_name=f"model_hub_mmdet-{id(self)}",
                config_text=lambda: self.final_config_text,
            )

    def build_callbacks(self) -> dict[str, pytorch.PyTorchCallback]:
        """The trial's checkpoint, validation and hook callbacks (:class:`MMDetTrialCallback`)."""
        return {checkpoints.CALLBACK_KEY: MMDetTrialCallback(self)}

    # ------------------------------------------------------------------------------------- training
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.scaler is not None:
            return torch.autocast("cuda", dtype=self._amp_dtype())
        return contextlib.nullcontext()

    def _val_autocast(self) -> contextlib.AbstractContextManager:
        """fp16 validation where mmengine's ValLoop has it: ``val_cfg.fp16`` on a GPU (AMP training alone does
        not make the runner validate in fp16)."""
        if (self.cfg.get("val_cfg") or {}).get("fp16") and torch.cuda.is_available():
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _log_vars(self, log_vars: Mapping[str, Any]) -> dict[str, float]:
        """The loss terms as numbers, averaged over slots (so every slot takes the same skip decision)."""
        names = list(log_vars)
        values = torch.tensor([float(torch.as_tensor(log_vars[n]).detach()) for n in names], dtype=torch.float64)
        size = self.context.distributed.get_size()
        if size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(values)
            values /= size
        return dict(zip(names, values.tolist()))

    def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> dict[str, Any]:
        """One optimisation step; returns ``loss``, every logged loss term, ``lr`` (and ``grad_norm``)."""
        k = self.batches_trained
        self.schedule.before_iter(k)
        data = strip_bookkeeping(batch)
        self.runner.before_iter(k, data)
        samples = data.get("data_samples") or []
        self.guard.start_batch(batch_idx, [{"filename": s.metainfo.get("img_path")} for s in samples])
        with self._autocast():
            data = self.detector.data_preprocessor(data, True)
            losses = self.model(**data, mode="loss")
        loss, log_vars = self.detector.parse_losses(losses)
        metrics: dict[str, Any] = self._log_vars(log_vars)
        if self.guard.loss_ok(metrics):
            self.context.backward(self.scaler.scale(loss) if self.scaler is not None else loss)
            self.context.step_optimizer(self.optimizer, clip_grads=self._clip_grads, scaler=self.scaler)
        else:
            self.optimizer.zero_grad(set_to_none=True)
        self.batches_trained += 1
        self.runner.after_iter(k, data, outputs=log_vars)
        metrics = self._stable_terms(metrics)
        metrics["lr"] = self.schedule.current_lr()
        metrics["skipped_samples"] = skipped_samples(batch)
        if self.guard.clip_kwargs is not None and self.guard.last_norm is not None:
            metrics["grad_norm"] = self.guard.last_norm
        if self.guard.max_skips:
            metrics["nonfinite_batches_skipped"] = self.guard.skipped
        return metrics

    def _stable_terms(self, terms: dict[str, float]) -> dict[str, float]:
        """The loss terms of the first batch, at every batch: Determined refuses training metrics whose names change
        within a reporting period, and some models add a term later (YOLOX's ``loss_l1`` once its mode switches).
        A later term still counts in ``loss``; it is named in one log line."""
        if self._reported_terms is None:
            self._reported_terms = list(terms)
        new = sorted(set(terms) - set(self._reported_terms) - self._unreported_terms)
        if new:
            self._unreported_terms.update(new)
            logger.info("loss term(s) %s appeared after the first batch: counted in loss, not reported on their own"
                        " (Determined needs the same training metrics at every batch)", ", ".join(new))
        return {k: terms.get(k, 0.0) for k in self._reported_terms}

    # ----------------------------------------------------------------------------------- evaluation
    def evaluate_batch(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        """Predict one validation batch and run the metrics' ``process``; the metrics are computed over the whole
        dataset by the reducer."""
        data = strip_bookkeeping(batch)
        indices = data.pop(INDEX_KEY)
        with torch.no_grad(), self._val_autocast():
            outputs = self.detector.val_step(data)
        self.gatherer.update(indices, self.metrics.process(outputs, data))
        return {}

    def evaluate(self, results: list[Any], indices: list[int] | None = None) -> dict[str, float]:
        """Each metric's ``compute_metrics`` once, on every image's results in dataset order. With ``indices``
        (test mode: the images that were predicted), COCO metrics score only those images.

        ``results`` holds one item per image: a tuple with, for each ``val_evaluator`` metric, the list of what its
        ``process`` kept for that image (``CocoMetric``: one ``(ground truth, prediction)`` pair whose prediction
        has ``bboxes``, ``scores``, ``labels`` and RLE ``masks``). A subclass may add metrics from them."""
        with quiet_mmengine(logging.CRITICAL):  # CocoMetric's "results ... empty" ERROR: compute() says it once
            return self.metrics.compute(results, partial=indices is not None)


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
