"""Run an experiment YAML on this machine with Determined's ``Trainer`` (no cluster needed).

One process by default; under ``torchrun`` each process joins a gloo (CPU) or NCCL (GPU) process group and
Determined's ``DistributedContext.from_torch_distributed()``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_hub_mmdet.errors import ConfigError

logger = logging.getLogger("model_hub_mmdet")


def local_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values for a local run from Determined hyperparameter specs: ``const`` -> its ``val``,
    ``categorical`` -> its first value, ``int``/``double``/``log`` -> the middle of the range; nested specs
    (``type: object``) recurse. Plain values pass through."""
    return {key: _local_value(key, spec) for key, spec in hparams.items()}


HPARAM_TYPES = ("const", "categorical", "int", "double", "log", "object")


def _local_value(key: str, spec: Any) -> Any:
    if not isinstance(spec, Mapping):
        return spec
    if "type" not in spec:  # a nested hyperparameter group (e.g. override_mmdet_config)
        return {k: _local_value(f"{key}.{k}", v) for k, v in spec.items()}
    kind = spec["type"]
    if kind not in HPARAM_TYPES:
        raise ConfigError(
            f"hyperparameters.{key}: a mapping with type: {kind!r} is read by Determined as a hyperparameter spec;"
            f" write mmdet dicts with dotted keys ({key}.type: {kind}) or as {{type: const, val: {{...}}}}"
        )
    if kind == "const":
        return spec["val"]
    if kind == "categorical":
        return spec["vals"][0]
    if kind == "int":
        return (int(spec["minval"]) + int(spec["maxval"])) // 2
    if kind == "double":
        return (float(spec["minval"]) + float(spec["maxval"])) / 2
    if kind == "log":
        return float(spec.get("base", 10)) ** ((float(spec["minval"]) + float(spec["maxval"])) / 2)
    return {k: _local_value(f"{key}.{k}", v) for k, v in spec["vals"].items()}  # object


def max_batches_of(exp_conf: Mapping[str, Any], default: int | None = None) -> int:
    """``searcher.max_length`` in batches (``batches`` or ``records``; ``epochs`` need the loader: not here)."""
    length = (exp_conf.get("searcher") or {}).get("max_length")
    gbs = int(local_hparams(exp_conf.get("hyperparameters") or {}).get("global_batch_size", 1))
    if isinstance(length, int):
        return length
    if isinstance(length, Mapping) and "batches" in length:
        return int(length["batches"])
    if isinstance(length, Mapping) and "records" in length:
        return math.ceil(int(length["records"]) / gbs)
    if default is not None:
        return default
    raise ConfigError("searcher.max_length must be given in batches or records for a local run (or pass --max-batches)")


def period_batches(exp_conf: Mapping[str, Any], key: str) -> int | None:
    value = exp_conf.get(key)
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping) and "batches" in value:
        return int(value["batches"])
    return None


def checkpoint_batches_trained(checkpoint_dir: str | os.PathLike) -> int:
    """How many batches the trial had trained when ``checkpoint_dir`` was written (MMDetTrial's own counter,
    which survives local resumes; Determined's ``trial_state.pkl`` counter as a fallback)."""
    import torch

    state_dict = Path(checkpoint_dir) / "state_dict.pth"
    if not state_dict.is_file():
        raise ConfigError(f"--resume {checkpoint_dir}: not a Determined checkpoint (no state_dict.pth)")
    callbacks = torch.load(state_dict, map_location="cpu", weights_only=True).get("callbacks") or {}
    if "model_hub_mmdet" in callbacks:
        return int(callbacks["model_hub_mmdet"]["batches_trained"])
    with (Path(checkpoint_dir) / "trial_state.pkl").open("rb") as f:
        return int(pickle.load(f).get("batches_trained", 0))


@dataclass
class RunResult:
    """What a local run produced."""

    validations: list[dict[str, Any]] = field(default_factory=list)  # each with "batches" and metrics
    training: list[dict[str, Any]] = field(default_factory=list)  # averaged metrics per reporting period
    checkpoints: list[str] = field(default_factory=list)  # checkpoint directories, oldest first
    batches_trained: int = 0


class Progress:
    """A tqdm bar with the running loss and ETA, and validation metrics printed by name (chief only)."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, unit="batch", dynamic_ncols=True, disable=not enabled)
        self.enabled = enabled

    def batch(self, metrics: Mapping[str, Any]) -> None:
        self.bar.update(1)
        loss, lr = metrics.get("loss"), metrics.get("lr")
        if loss is not None:
            self.bar.set_postfix(loss=f"{float(loss):.4f}", lr=f"{float(lr):.2g}" if lr is not None else "-")

    def validation(self, batches: int, metrics: Mapping[str, Any]) -> None:
        if self.enabled:
            shown = "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if isinstance(v, (int, float)))
            self.bar.write(f"[validation @ {batches} batches] {shown}")

    def close(self) -> None:
        self.bar.close()


def _recorder_trial(trial_cls: type, result: RunResult, progress: Progress | None = None) -> type:
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

        def on_checkpoint_write_end(self, checkpoint_dir: str) -> None:
            result.checkpoints.append(checkpoint_dir)
            result.batches_trained = self.trial.batches_trained

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

    os.environ.setdefault("USE_TORCH_DISTRIBUTED", "1")
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
) -> RunResult:
    """Train ``exp_conf`` (a parsed experiment YAML) locally and return what happened.

    ``max_batches`` defaults to the searcher's ``max_length``; periods default to the experiment's
    ``min_validation_period`` / ``min_checkpoint_period`` (else once at the end). ``resume`` continues from a
    checkpoint directory to the same total length.
    """
    from determined import pytorch

    from model_hub_mmdet.trial import MMDetTrial

    os.environ["USE_TORCH_DISTRIBUTED"] = os.environ.get("USE_TORCH_DISTRIBUTED", "") or (
        "1" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    )
    if not os.environ["USE_TORCH_DISTRIBUTED"]:
        del os.environ["USE_TORCH_DISTRIBUTED"]
    exp_conf = dict(exp_conf)
    hparams = local_hparams(exp_conf.get("hyperparameters") or {})
    total = max_batches or max_batches_of(exp_conf)
    start = checkpoint_batches_trained(resume) if resume else 0
    if start >= total:
        raise ConfigError(f"--resume {resume}: the checkpoint already trained {start} of {total} batches")
    val_period = validation_period or period_batches(exp_conf, "min_validation_period") or total
    ckpt_period = checkpoint_period or period_batches(exp_conf, "min_checkpoint_period") or total

    check_checkpoint_dir_outside_context()
    result = RunResult()
    chief = int(os.environ.get("RANK", "0")) == 0
    progress = Progress(total, initial=start, enabled=chief) if show_progress else None
    trial_cls = _recorder_trial(trial_cls or MMDetTrial, result, progress)
    with pytorch.init(hparams=hparams, exp_conf=exp_conf, distributed=_distributed_context()) as ctx:
        if tensorboard_dir is not None:
            _set_local_tensorboard_dir(ctx, Path(tensorboard_dir))
        trial = trial_cls(ctx)
        trainer = pytorch.Trainer(trial, ctx)
        with _steps_completed(start):
            trainer.fit(
                max_length=pytorch.Batch(total),
                validation_period=pytorch.Batch(min(val_period, total)),
                checkpoint_period=pytorch.Batch(min(ckpt_period, total)),
                latest_checkpoint=str(resume) if resume else None,
                test_mode=test_mode,
            )
        result.batches_trained = trial.batches_trained
    if progress is not None:
        progress.close()
    return result


def check_checkpoint_dir_outside_context(context: str | os.PathLike = ".") -> None:
    """Refuse to start when local checkpoints would land inside the working directory unless ``.detignore``
    excludes them: Determined's local mode copies that directory into every checkpoint, so each checkpoint
    would contain all earlier ones (and the copy recurses until the path is too long)."""
    import appdirs
    from determined.common import detignore

    root = Path(context).resolve()
    storage = Path(appdirs.user_data_dir("determined")).resolve()
    try:
        parts = storage.relative_to(root).parts
    except ValueError:
        return  # outside the context: nothing to worry about
    ignored = detignore.make_shutil_ignore(root)  # the filter Determined's checkpoint copy applies
    here = root
    for part in parts:
        if part in ignored(str(here), [part]):
            return
        here = here / part
    raise ConfigError(
        f"local checkpoints go to {storage}, inside the working directory {root} that Determined copies into"
        f" every checkpoint; add {Path(*parts[:1])}/ to {root / '.detignore'}, or set XDG_DATA_HOME to a folder"
        " outside it"
    )


@contextlib.contextmanager
def _steps_completed(start: int) -> Iterator[None]:
    """Tell Determined's local-mode controller how many batches a resumed checkpoint had trained.

    On a cluster ``Trainer.fit`` passes the trial's ``steps_completed`` to its controller; in local mode it
    passes 0, so batch indices, periods and the end of training would count from 0 again after a resume
    (training past ``max_length``). Passing the checkpoint's count gives local resumes cluster semantics.
    """
    if not start:
        yield
        return
    from determined import pytorch

    original = pytorch._PyTorchTrialController

    class ResumedController(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["steps_completed"] = start
            super().__init__(*args, **kwargs)

    pytorch._PyTorchTrialController = ResumedController
    try:
        yield
    finally:
        pytorch._PyTorchTrialController = original


def _set_local_tensorboard_dir(ctx: Any, path: Path) -> None:
    """Local mode otherwise lets torch's SummaryWriter pick ``./runs/<date>_<host>``."""
    from determined import core

    train = ctx._core.train
    if isinstance(train, core.DummyTrainContext):
        path.mkdir(parents=True, exist_ok=True)
        train._tbd_directory = path
