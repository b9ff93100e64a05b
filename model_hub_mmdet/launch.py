"""From an experiment config to a Determined run: the trial class, and the ONE mapping to ``pytorch.init`` /
``Trainer.fit`` arguments, used by local runs (``local.py``) and by the cluster entrypoint (``run.py``).

The mapping mirrors ``determined/exec/harness.py`` of Determined 0.38.1, which is what runs a ``--trial`` or
``module:Class`` entrypoint on a cluster:

=====================================================  ==========================================================
experiment field                                       where it goes
=====================================================  ==========================================================
``optimizations.aggregation_frequency``                ``pytorch.init(aggregation_frequency=...)``
``optimizations.gradient_compression``                 ``context._set_default_gradient_compression``
``optimizations.average_aggregated_gradients``         ``context._set_default_average_aggregated_gradients``
``searcher.max_length`` (batches, records, epochs)      ``fit(max_length=...)``
``min_validation_period`` / ``min_checkpoint_period``  ``fit(validation_period=/checkpoint_period=...)``
``scheduling_unit``                                    ``fit(reporting_period=Batch(...))``
``checkpoint_policy``                                  ``fit(checkpoint_policy=...)`` (locally ``best`` -> ``all``)
``perform_initial_validation``                         ``fit(step_zero_validation=...)``
``profiling.enabled``                                  ``fit(profiling_enabled=...)`` (cluster only)
=====================================================  ==========================================================

Records become batches as Determined converts them (``max(records // global_batch_size, 1)``); epochs stay
epochs, which Determined counts with the training loader's length, locally as on a cluster.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.expconf import Length, TrainerPlan, trainer_plan


def load_trial_class(spec: str, context_dir: str | os.PathLike = ".") -> type:
    """Import ``module:Class`` with ``context_dir`` on ``sys.path`` (as Determined does); errors are one line, and
    the retired model hub's ``model_hub.mmdetection`` says what replaces it."""
    from determined import pytorch

    module_name, _, cls_name = str(spec).partition(":")
    if not module_name or not cls_name:
        raise ConfigError(f"entrypoint {spec}: expected module:Class")
    sys.path.insert(0, str(Path(context_dir).resolve()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(_legacy_message(spec) or f"entrypoint {spec}: cannot import {module_name} ({err})") from err
    finally:
        sys.path.pop(0)
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, pytorch.PyTorchTrial)):
        raise ConfigError(f"entrypoint {spec}: {cls_name} is not a PyTorchTrial subclass in {module_name}")
    return cls


def _legacy_message(spec: str) -> str | None:
    try:
        from model_hub_mmdet.tools.migrate import legacy_entrypoint_message
    except ImportError:  # pragma: no cover - migrate is part of the package
        return None
    return legacy_entrypoint_message(spec)


def train_unit(length: Length, global_batch_size: int | None) -> Any:
    """A :class:`Length` as Determined's ``TrainUnit``, converted exactly as its harness does (0 -> never)."""
    if length.unit == "records" and not global_batch_size:
        raise ConfigError("a length in records needs hyperparameters.global_batch_size")
    from model_hub_mmdet import determined_patches

    return determined_patches.train_unit_from_values(**length.as_dict(), global_batch_size=global_batch_size)


def _global_batch_size(hparams: Mapping[str, Any]) -> int | None:
    return int(hparams["global_batch_size"]) if "global_batch_size" in hparams else None


def init_kwargs(exp_conf: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``pytorch.init`` that come from the experiment config."""
    return {"aggregation_frequency": trainer_plan(exp_conf).aggregation_frequency}


def configure_context(context: Any, exp_conf: Mapping[str, Any]) -> None:
    """The context defaults the harness sets right after ``pytorch.init``."""
    plan = trainer_plan(exp_conf)
    from model_hub_mmdet import determined_patches

    determined_patches.set_context_defaults(context, plan.gradient_compression, plan.average_aggregated_gradients)


def fit_kwargs(
    exp_conf: Mapping[str, Any],
    hparams: Mapping[str, Any],
    *,
    latest_checkpoint: str | None = None,
    local: bool = False,
    test_mode: bool = False,
) -> dict[str, Any]:
    """Keyword arguments of ``Trainer.fit`` for this experiment. ``max_length`` is given explicitly (Determined
    0.38 deprecates reading it from ``searcher.max_length`` inside ``fit``) with the value ``fit`` would read."""
    from determined import pytorch

    plan: TrainerPlan = trainer_plan(exp_conf)
    gbs = _global_batch_size(hparams)
    kwargs: dict[str, Any] = {
        "checkpoint_period": train_unit(plan.checkpoint_period, gbs),
        "validation_period": train_unit(plan.validation_period, gbs),
        "reporting_period": pytorch.Batch(plan.reporting_period),
        "checkpoint_policy": plan.checkpoint_policy,
        "latest_checkpoint": latest_checkpoint,
        "step_zero_validation": plan.step_zero_validation,
        "test_mode": test_mode,
        "profiling_enabled": plan.profiling_enabled,
    }
    if plan.max_length is not None and plan.max_length.value > 0:
        kwargs["max_length"] = train_unit(plan.max_length, gbs)
    elif local:
        raise ConfigError("searcher.max_length is required to train (e.g. max_length: {batches: 1000})")
    if local:
        # What Determined's local mode would do anyway, without its warnings: no "best" checkpoint selection
        # and no profiler off-cluster.
        if kwargs["checkpoint_policy"] == "best":
            kwargs["checkpoint_policy"] = "all"
        kwargs["profiling_enabled"] = False
    return kwargs
