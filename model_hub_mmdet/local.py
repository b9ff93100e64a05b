"""Run an experiment YAML on this machine with Determined's ``Trainer`` (no cluster needed).

One process by default; under ``torchrun`` each process joins a gloo (CPU) or NCCL (GPU) process group and
Determined's ``DistributedContext.from_torch_distributed()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_hub_mmdet import checkpoints
from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.expconf import local_hparams, section
from model_hub_mmdet.launch import configure_context, fit_kwargs, init_kwargs

logger = logging.getLogger("model_hub_mmdet")


@dataclass
class RunResult:
    """What a local run produced."""

    validations: list[dict[str, Any]] = field(default_factory=list)  # each with "batches" and metrics
    training: list[dict[str, Any]] = field(default_factory=list)  # averaged metrics per reporting period
    checkpoints: list[str] = field(default_factory=list)  # checkpoint directories, oldest first
    batches_trained: int = 0


class Progress:
    """A tqdm bar with the running loss and ETA, and validation metrics printed by name (chief only)."""

    def __init__(self, total: int | None = None, initial: int = 0, enabled: bool = True) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, unit="batch", dynamic_ncols=True, disable=not enabled)
        self.enabled = enabled

    def set_total(self, total: int | None) -> None:
        """The run's length in batches, known once the trial has its training loader."""
        self.bar.total = total
        self.bar.refresh()

    def batch(self, metrics: Mapping[str, Any]) -> None:
        self.bar.update(1)
        loss, lr = metrics.get("loss"), metrics.get("lr")
        if loss is not None:
            self.bar.set_postfix(loss=f"{float(loss):.4f}", lr=f"{float(lr):.2g}" if lr is not None else "-")

    def validation(self, batches: int, metrics: Mapping[str, Any]) -> None:
        if self.enabled:
            shown = "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if isinstance(v, (int, float)))
            self.bar.write(f"[validation @ {batches} batches] {shown}")
            self.bar.unpause()  # the rate and ETA leave out the time spent validating

    def close(self) -> None:
        self.bar.close()


def _recorder_trial(
    trial_cls: type, result: RunResult, progress: Progress | None = None, run_dir: Path | None = None
) -> type:
    """A subclass of ``trial_cls`` that also records metrics and checkpoints into ``result``."""
    from determined import pytorch

    class Recorder(pytorch.PyTorchCallback):
        def __init__(self, trial: Any) -> None:
            self.trial = trial

        def on_validation_end(self, metrics: dict[str, Any]) -> None:
            result.validations.append(dict(metrics, batches=self.trial.batches_trained))
            if progress is not None:
                progress.validation(self.trial.batches_trained, metrics)

        def on_training_workload_end(self, avg_metrics: dict[str, Any], batch_metrics: Any) -> None:
            result.training.append(dict(avg_metrics, batches=self.trial.batches_trained))

        def on_checkpoint_upload_end(self, uuid: str) -> None:
            # Called once the checkpoint is complete (and, locally, renamed into place): see determined_patches.
            if int(os.environ.get("RANK", "0")) != 0:
                return
            checkpoint_dir = str(checkpoints.local_checkpoint(uuid))
            result.checkpoints.append(checkpoint_dir)
            result.batches_trained = self.trial.batches_trained
            if run_dir is not None:
                checkpoints.log_checkpoint(run_dir, checkpoint_dir, self.trial.batches_trained)

    class Recorded(trial_cls):  # type: ignore[misc, valid-type]
        def build_callbacks(self) -> dict[str, Any]:
            callbacks = dict(super().build_callbacks())
            callbacks["model_hub_mmdet_recorder"] = Recorder(self)
            return callbacks

        def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> Any:
            metrics = super().train_batch(batch, epoch_idx, batch_idx)
            if progress is not None:
                progress.batch(metrics)
            return metrics

    Recorded.__name__ = Recorded.__qualname__ = trial_cls.__name__
    return Recorded


def _distributed_context() -> Any:
    """Join torchrun's process group (gloo on CPU, nccl on GPU) when launched with several processes."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    import torch.distributed as dist
    from determined import core

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return core.DistributedContext.from_torch_distributed()


def train_local(
    exp_conf: Mapping[str, Any],
    trial_cls: type | None = None,
    *,
    max_batches: int | None = None,
    validation_period: int | None = None,
    checkpoint_period: int | None = None,
    resume: str | os.PathLike | None = None,
    tensorboard_dir: str | os.PathLike | None = None,
    test_mode: bool = False,
    show_progress: bool = False,
    run_dir: str | os.PathLike | None = None,
) -> RunResult:
    """Train ``exp_conf`` (a parsed experiment YAML) on this machine, as a cluster would, and return what happened.

    ``pytorch.init`` and ``Trainer.fit`` get the arguments Determined's harness would give them
    (:mod:`model_hub_mmdet.launch`). ``max_batches``, ``validation_period`` and ``checkpoint_period`` replace the
    experiment's ``searcher.max_length`` / ``min_validation_period`` / ``min_checkpoint_period`` (in batches; the
    LR schedule follows ``max_batches`` too). ``resume`` continues from a checkpoint directory to the same total
    length. ``test_mode`` is Determined's: one training batch, one validation batch per slot. Checkpoints appear
    only when complete; with ``run_dir`` each one is also logged there (what ``--auto-resume`` reads).
    """
    from determined import pytorch

    from model_hub_mmdet import determined_patches, generation
    from model_hub_mmdet.trial import MMDetTrial

    generation.setup()  # the installed generation's patches, before its engine loads

    conf = _with_local_overrides(exp_conf, max_batches, validation_period, checkpoint_period)
    hparams = local_hparams(section(conf, "hyperparameters"))
    fit_args = fit_kwargs(conf, hparams, latest_checkpoint=str(resume) if resume else None, local=True,
                          test_mode=test_mode)
    start = _resume_start(resume, fit_args["max_length"]) if resume else 0
    _set_torch_distributed_env()
    result = RunResult()
    chief = int(os.environ.get("RANK", "0")) == 0
    progress = Progress(initial=start, enabled=chief) if show_progress else None
    trial_cls = _recorder_trial(trial_cls or MMDetTrial, result, progress, Path(run_dir) if run_dir else None)
    try:
        with pytorch.init(
            hparams=hparams, exp_conf=conf, distributed=_distributed_context(), **init_kwargs(conf)
        ) as ctx:
            configure_context(ctx, conf)
            determined_patches.set_local_tensorboard_dir(ctx, Path(tensorboard_dir) if tensorboard_dir else None)
            trial = trial_cls(ctx)
            if progress is not None:
                progress.set_total(1 if test_mode else getattr(trial, "max_iters", None))
            with determined_patches.resumed_at(start), determined_patches.atomic_checkpoints(), _log_above(progress):
                pytorch.Trainer(trial, ctx).fit(**fit_args)
            result.batches_trained = getattr(trial, "batches_trained", 0)
    finally:
        if progress is not None:  # before any error line is printed
            progress.close()
    return result


def _log_above(progress: Progress | None) -> contextlib.AbstractContextManager:
    """Log lines above the progress bar instead of through it."""
    if progress is None or not progress.enabled:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def _with_local_overrides(
    exp_conf: Mapping[str, Any], max_batches: int | None, validation_period: int | None, checkpoint_period: int | None
) -> dict[str, Any]:
    conf = dict(exp_conf)
    if max_batches:
        conf["searcher"] = {**section(conf, "searcher"), "max_length": {"batches": int(max_batches)}}
    if validation_period:
        conf["min_validation_period"] = {"batches": int(validation_period)}
    if checkpoint_period:
        conf["min_checkpoint_period"] = {"batches": int(checkpoint_period)}
    return conf


def _resume_start(resume: str | os.PathLike, max_length: Any) -> int:
    """Batches the checkpoint ``resume`` had trained; one line if it is not a complete checkpoint or is done."""
    from determined import pytorch

    if not checkpoints.is_checkpoint_dir(resume) or not (Path(resume) / "metadata.json").is_file():
        raise ConfigError(
            f"--resume {resume}: not a complete checkpoint (no {checkpoints.STATE_FILE} or metadata.json); pass a"
            " checkpoint directory printed by an earlier run, or use --out RUN_DIR --auto-resume"
        )
    try:
        start = checkpoints.batches_trained(resume)
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file: say so in one line
        raise ConfigError(f"--resume {resume}: cannot read {checkpoints.STATE_FILE} ({err!r:.200})") from err
    if isinstance(max_length, pytorch.Batch) and start >= max_length.value:
        raise ConfigError(f"--resume {resume}: the checkpoint already trained {start} of {max_length.value} batches")
    return start


def _set_torch_distributed_env() -> None:
    """Determined picks torch.distributed for several local processes from USE_TORCH_DISTRIBUTED."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        os.environ.setdefault("USE_TORCH_DISTRIBUTED", "1")
    elif not os.environ.get("USE_TORCH_DISTRIBUTED"):
        os.environ.pop("USE_TORCH_DISTRIBUTED", None)

