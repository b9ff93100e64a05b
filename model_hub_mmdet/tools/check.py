"""``model-hub-mmdet check``: everything about an experiment that can be validated without a cluster.

Each check is a small function that returns its problems (one line each, naming the key or file); the summary is
built apart from them. :func:`check_experiment` runs them in order and stops early only where later checks need
what an earlier one could not produce (the experiment file, the final mmdet config).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_hub_mmdet.errors import UserError
from model_hub_mmdet.expconf import (
    global_batch_size,
    load_experiment,
    local_hparams,
    parse_entrypoint,
    section,
    trainer_plan,
)
from model_hub_mmdet.tools.generation_env import generation_problems

CONTEXT_LIMIT = 95 * 1024 * 1024  # Determined's limit on the uploaded context directory


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _problems_of(func: Any, *args: Any) -> list[str]:
    """Run a check; a UserError it raises is its one problem."""
    try:
        return list(func(*args) or [])
    except UserError as err:
        return [str(err)]


# ---------------------------------------------------------------------------------------------- the checks


def schema_problems(conf: Mapping[str, Any]) -> list[str]:
    """Unknown or misspelt keys and wrong types against Determined's experiment schema."""
    from model_hub_mmdet.experiment_schema import schema_problems as problems

    return problems(conf)


def legacy_warnings(conf: Mapping[str, Any]) -> list[str]:
    """What a file written for Determined's retired model hub should change (warnings, not problems)."""
    from model_hub_mmdet.tools.migrate import legacy_warnings as warnings

    return warnings(conf)


def hparam_problems(hparams: Mapping[str, Any], conf: Mapping[str, Any]) -> list[str]:
    """Batch size against slots, and the types of this package's own hyperparameters."""
    problems = []
    gbs = hparams.get("global_batch_size")
    if isinstance(gbs, bool) or not isinstance(gbs, int) or gbs < 1:
        problems.append(f"hyperparameters.global_batch_size must be a positive integer, got {gbs!r}")
    slots = section(conf, "resources").get("slots_per_trial", 1) or 1
    if isinstance(slots, int) and isinstance(gbs, int) and slots > 0 and gbs % slots:
        problems.append(
            f"hyperparameters.global_batch_size={gbs} is not divisible by resources.slots_per_trial={slots}"
        )
    for key, kind in (("use_pretrained", bool), ("auto_scale_lr", bool), ("save_cfg", bool),
                      ("override_mmdet_config", Mapping)):
        if hparams.get(key) is not None and not isinstance(hparams[key], kind):
            problems.append(f"hyperparameters.{key} must be a {getattr(kind, '__name__', kind)}, got {hparams[key]!r}")
    if "config_file" not in hparams:
        problems.append("hyperparameters.config_file is required")
    return problems


def entrypoint_problems(conf: Mapping[str, Any], context_dir: Path) -> list[str]:
    """The entrypoint's trial class imports (the retired model hub's gets its migration line)."""
    from model_hub_mmdet.launch import load_trial_class

    load_trial_class(parse_entrypoint(conf.get("entrypoint")).trial, context_dir)
    return []


def trainer_problems(conf: Mapping[str, Any]) -> list[str]:
    """Lengths, periods and gradient accumulation as the Trainer will read them."""
    plan = trainer_plan(conf)
    problems = []
    if plan.max_length is None or plan.max_length.value < 1:
        problems.append("searcher.max_length is required (e.g. max_length: {batches: 1000})")
    if plan.max_length is not None and plan.max_length.unit == "records" and global_batch_size(conf) is None:
        problems.append("searcher.max_length in records needs hyperparameters.global_batch_size")
    return problems


def data_setting_problems(conf: Mapping[str, Any]) -> list[str]:
    """``data.bad_images`` and ``data.worker_niceness`` are valid settings."""
    from model_hub_mmdet.bad_images import BadImagePolicy
    from model_hub_mmdet.workers import worker_niceness

    BadImagePolicy.from_config(section(conf, "data").get("bad_images"))
    worker_niceness(section(conf, "data").get("worker_niceness"), "cpu")
    return []


def context_problems(context_dir: Path) -> tuple[list[str], int | None]:
    """The context directory Determined would upload fits its 95 MiB limit (``.detignore`` honoured)."""
    from determined.common import context

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            files = context.read_v1_context(context_dir, limit=10 * CONTEXT_LIMIT)
    except (OSError, ValueError) as err:
        return [f"context directory {context_dir}: {err}"], None
    size = sum(len(f.content or "") * 3 // 4 for f in files)
    if size > CONTEXT_LIMIT:
        return [
            f"context directory {context_dir} is {size / 2**20:.0f} MiB, over Determined's 95 MiB limit;"
            " add large folders to .detignore"
        ], size
    return [], size


# ------------------------------------------------------------------------------------------------- runner


def check_experiment(
    path: str | os.PathLike, context_dir: str | os.PathLike | None = None, conf: Mapping[str, Any] | None = None
) -> CheckReport:
    """Validate offline everything about an experiment that can be validated without a cluster: the experiment
    file here, then the MMDetection config with the installed generation's checks (``<adapter>.check``).
    ``conf``: the experiment already loaded (``init``'s for a config, or with ``--cfg-options`` appended)."""
    from model_hub_mmdet import generation

    report = CheckReport()
    try:
        conf = load_experiment(path) if conf is None else dict(conf)
    except UserError as err:
        report.problems.append(str(err))
        return report
    context_dir = Path(context_dir or ".")
    generation.context_on_sys_path(context_dir)  # custom trial classes and custom_imports, as on a cluster
    try:
        adapter = generation.adapter("check")
    except UserError:  # the experiment part is still checked; the config part says why it was not
        adapter = None
    report.problems += _problems_of(schema_problems, conf)
    report.warnings += _problems_of(legacy_warnings, conf)
    if adapter is not None:
        report.problems += _problems_of(entrypoint_problems, conf, context_dir)
        report.problems += _problems_of(adapter.storage_problems, conf)
    report.problems += _problems_of(data_setting_problems, conf)
    try:
        hparams = local_hparams(section(conf, "hyperparameters"))
    except UserError as err:
        report.problems.append(str(err))
        hparams = None
    cfg = None
    if hparams is not None:
        hparam_issues = hparam_problems(hparams, conf)
        report.problems += hparam_issues
        if adapter is None:
            report.problems.append(_not_installed_line())
        elif "config_file" in hparams and isinstance(hparams.get("override_mmdet_config") or {}, Mapping):
            overrides = _problems_of(adapter.override_problems, hparams, context_dir)
            report.problems += overrides
            if not overrides and not hparam_issues:
                try:
                    cfg = adapter.build_config(hparams, conf, context_dir)
                except UserError as err:
                    report.problems.append(str(err))
    report.problems += _problems_of(trainer_problems, conf)
    if cfg is not None:
        # The config built with the installed generation, so it is of that generation: the cluster must install
        # the same one (startup-hook.sh follows the experiment's MODEL_HUB_MMDET_GENERATION).
        report.problems += _problems_of(generation_problems, conf, generation.require()[-1], context_dir)
        report.problems += _problems_of(adapter.trainer_problems, conf, cfg)
        report.problems += _problems_of(adapter.metric_problems, conf, cfg)
        report.problems += _problems_of(adapter.annotation_problems, cfg, conf, context_dir)
        if hasattr(adapter, "annotation_warnings"):  # what the generation trains as MMDetection does, with a note
            report.warnings += _problems_of(adapter.annotation_warnings, cfg, conf, context_dir)
        report.summary = summarize(conf, hparams or {}, adapter.summarize(cfg))
    context_issues, size = context_problems(context_dir)
    report.problems += context_issues
    if size is not None:
        report.summary["context"] = f"{size / 2**20:.1f} MiB"
    # Keep the order, drop repeats (a bad key can be reported by the schema and by a later check).
    report.problems = list(dict.fromkeys(report.problems))
    return report


def _not_installed_line() -> str:
    from model_hub_mmdet import generation

    try:
        generation.adapter("check")
    except UserError as err:
        return f"the MMDetection config was not checked: {err}"
    return "the MMDetection config was not checked"


# ------------------------------------------------------------------------------------------------ summary


def summarize(conf: Mapping[str, Any], hparams: Mapping[str, Any], config_summary: Mapping[str, Any]) -> dict[str, Any]:
    """The lines ``check`` prints for a valid experiment: the generation's ``config_summary`` (model, backbone,
    dataset, classes, optimizer, lr schedule, metrics) in among the experiment's own."""
    gbs = hparams.get("global_batch_size")
    slots = section(conf, "resources").get("slots_per_trial", 1) or 1
    searcher = section(conf, "searcher")
    plan = trainer_plan(conf)
    entry = parse_entrypoint(conf.get("entrypoint"))
    per_slot = gbs // slots if isinstance(gbs, int) and isinstance(slots, int) and slots > 0 else "?"
    summary = {k: config_summary[k] for k in ("model", "backbone", "dataset", "classes") if k in config_summary}
    summary["batch size"] = f"global {gbs}, {slots} slot(s), {per_slot} per slot"
    summary.update((k, v) for k, v in config_summary.items() if k in ("optimizer", "lr schedule"))
    summary["searcher"] = f"{searcher.get('name')} on {searcher.get('metric')}, max_length {plan.max_length}"
    summary["periods"] = (f"validation every {_period(plan.validation_period)}, checkpoint every"
                          f" {_period(plan.checkpoint_period)}")
    summary.update((k, v) for k, v in config_summary.items() if k not in summary)
    summary["entrypoint"] = f"{entry.trial} ({entry.form} form)"
    return summary


def _period(length: Any) -> str:
    return str(length) if length.value > 0 else "end of training"
