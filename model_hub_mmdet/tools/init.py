"""``model-hub-mmdet init CONFIG``: an MMDetection config -> a commented Determined experiment YAML.

What an OpenMMLab user translates by hand is read from the config by the installed generation's adapter
(``<adapter>.experiment.config_facts``, a :class:`ConfigFacts`) and from the config's file name:

* ``global_batch_size`` = the config's per-GPU batch x its GPU count. The count is read from the name as mmdet's
  zoo spells it (``8x2``, ``8xb2``, ``16xb1``: GPUs x images per GPU); a name without one follows mmdet's
  convention of 8 GPUs; ``--slots`` overrides it. ``resources.slots_per_trial`` is that count, so every slot
  trains the config's per-GPU batch and an epoch has as many batches as under ``tools/dist_train.sh``.
* ``searcher.max_length`` is the config's schedule: epochs, or batches for an iteration-based config (one
  iteration is one batch of every GPU, as Determined counts batches of the global batch).
* ``min_validation_period`` / ``min_checkpoint_period``: the config's evaluation and checkpoint intervals.
* ``searcher.metric``: the first metric its evaluation produces, by the generation's name.
* ``data.file_client_args`` from ``--data s3://bucket/prefix`` or ``gs://bucket/prefix``.
* The entrypoint is Determined 0.38's script form (:data:`model_hub_mmdet.expconf.SCRIPT_ENTRYPOINT`).
* ``environment.environment_variables: [MODEL_HUB_MMDET_GENERATION=3]`` for a 3.x config, so that the cluster's
  ``startup-hook.sh`` installs MMDetection 3.x (:mod:`model_hub_mmdet.tools.generation_env`).

Every line of the YAML carries a comment saying where its value came from. ``train CONFIG.py --local`` trains the
experiment this module builds, without writing it (:func:`experiment_for_config`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.expconf import SCRIPT_ENTRYPOINT
from model_hub_mmdet.tools import generation_env

DEFAULT_GPUS = 8  # mmdet's zoo trains on 8 GPUs unless the config's name says otherwise
# "_8x2_", "_8xb2-", "-16xb1_": GPUs x images per GPU, between separators (not ResNeXt's "32x4d", not "1x")
_GPUS_IN_NAME = re.compile(r"(?:^|[_-])(\d+)xb?(\d+)(?=[_.-]|$)")
_BACKENDS = {"s3": "s3", "gs": "gcs"}


@dataclass(frozen=True)
class ConfigFacts:
    """What an experiment needs from an MMDetection config, the same for every generation. ``sources`` names the
    config key each fact was read from (``per_gpu_batch`` -> ``data.samples_per_gpu``), for the YAML's comments."""

    per_gpu_batch: int
    by_iteration: bool  # an iteration-based schedule (length and intervals in iterations, not epochs)
    length: int  # epochs, or iterations when by_iteration
    val_interval: int | None  # in the length's unit; None: the config does not validate periodically
    checkpoint_interval: int | None  # in checkpoint_by_iteration's unit; None: no periodic checkpoints
    metric: str | None  # the first metric the evaluation reports, by the generation's name
    checkpoint_by_iteration: bool | None = None  # None: the same unit as the schedule
    sources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InitResult:
    """The experiment ``init`` writes: its YAML text and the same experiment parsed."""

    text: str
    conf: dict[str, Any]


def gpus_from_name(config_file: str | os.PathLike) -> int | None:
    """The GPU count in an mmdet zoo config's file name (``yolox_s_8x8_300e_coco.py`` -> 8,
    ``rtmdet_l_8xb32-300e_coco.py`` -> 8, ``yolact_r50_1x8_coco.py`` -> 1), or None when it has none."""
    match = _GPUS_IN_NAME.search(Path(config_file).stem)
    return int(match.group(1)) if match else None


def _count_in_name(config_file: str | os.PathLike) -> str:
    """The ``8xb2`` part of the name as written (for the comment)."""
    match = _GPUS_IN_NAME.search(Path(config_file).stem)
    return match.group(0).strip("_-") if match else ""


def storage_args(uri: str) -> dict[str, str]:
    """``data.file_client_args`` for ``--data``: ``s3://bucket/prefix`` or ``gs://bucket/prefix``."""
    parsed = urlparse(str(uri))
    backend = _BACKENDS.get(parsed.scheme)
    if backend is None or not parsed.netloc:
        raise ConfigError(f"--data {uri}: expected s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX]")
    args = {"backend": backend, "bucket_name": parsed.netloc}
    prefix = parsed.path.strip("/")
    if prefix:
        args["prefix"] = prefix
    return args


def config_facts(
    config_file: str, context_dir: str | os.PathLike = ".", overrides: Mapping[str, Any] | None = None
) -> ConfigFacts:
    """The installed generation's :class:`ConfigFacts` of ``config_file``, with dotted ``overrides`` (the
    ``--cfg-options``) applied first, so ``runner.max_epochs=24`` is a 24-epoch schedule."""
    from model_hub_mmdet import generation

    adapter = generation.adapter("experiment")
    try:
        return adapter.config_facts(config_file, context_dir, overrides)
    except ConfigError as err:  # the loaders name the experiment key; here the config is init's argument
        raise ConfigError(str(err).replace("hyperparameters.config_file: ", "", 1)) from err


def experiment_for_config(
    config_file: str,
    *,
    slots: int | None = None,
    data: str | None = None,
    context_dir: str | os.PathLike = ".",
    out_name: str = "EXP.yaml",
    cfg_options: Mapping[str, Any] | None = None,
) -> InitResult:
    """The experiment ``init`` writes for ``config_file`` (``slots``: ``--slots``, ``data``: ``--data``;
    ``cfg_options``: parsed ``--cfg-options``, read into the facts and written to ``override_mmdet_config``)."""
    from model_hub_mmdet import generation

    if slots is not None and (isinstance(slots, bool) or not isinstance(slots, int) or slots < 1):
        raise ConfigError(f"--slots must be a whole number >= 1, got {slots!r}")
    cfg_options = dict(cfg_options or {})
    facts = config_facts(config_file, context_dir, cfg_options)
    file_client_args = storage_args(data) if data else None
    named = gpus_from_name(config_file)
    gpus = slots or named or DEFAULT_GPUS
    if slots:
        gpus_why = "--slots"
    elif named:
        gpus_why = f"the {_count_in_name(config_file)} (GPUs x images per GPU) in the config's name"
    else:
        gpus_why = f"no GPU count in the config's name: mmdet's convention of {DEFAULT_GPUS}"
    # a fact read from a key the options set says so
    src = {k: v + (" (--cfg-options)" if v.split(" (")[0] in cfg_options else "") for k, v in facts.sources.items()}
    unit = "batches" if facts.by_iteration else "epochs"
    rows = _Rows()
    rows.add(0, "name", Path(config_file).stem, "the config's file name")
    rows.add(0, "hyperparameters", None, "read by the trial (model_hub_mmdet.MMDetTrial)")
    rows.add(1, "config_file", str(config_file), "the config given to init (also found inside the installed mmdet)")
    rows.add(1, "global_batch_size", facts.per_gpu_batch * gpus,
             f"{_said(src.get('per_gpu_batch', 'per-GPU batch'), facts.per_gpu_batch)} x {gpus} GPUs (slots)")
    if cfg_options:
        rows.add(1, "override_mmdet_config", None, "dotted config keys applied last")
        for key, value in cfg_options.items():
            rows.add(2, key, _plain(value), "--cfg-options")
    else:
        rows.add(1, "override_mmdet_config", {}, "dotted config keys applied last, e.g. optimizer.lr: 0.01")
    rows.add(0, "searcher", None, "one trial with the config's own schedule")
    rows.add(1, "name", "single", "one trial, as mmdet's tools/train.py")
    if facts.metric:
        rows.add(1, "metric", facts.metric, f"the first metric of {src.get('metric', 'the evaluation')}")
    rows.add(1, "smaller_is_better", False, "mAP and recall: larger is better")
    rows.add(1, "max_length", None, "the config's schedule" + (", in iterations (batches)" if facts.by_iteration
                                                               else ""))
    rows.add(2, unit, facts.length, _said(src.get("length", "the schedule"), facts.length))
    if facts.val_interval:
        rows.add(0, "min_validation_period", None, "the config's evaluation interval")
        rows.add(1, unit, facts.val_interval, _said(src.get("val_interval", "evaluation interval"), facts.val_interval))
    if facts.checkpoint_interval:
        by_iter = facts.by_iteration if facts.checkpoint_by_iteration is None else facts.checkpoint_by_iteration
        rows.add(0, "min_checkpoint_period", None, "the config's checkpoint interval")
        rows.add(1, "batches" if by_iter else "epochs", facts.checkpoint_interval,
                 _said(src.get("checkpoint_interval", "checkpoint interval"), facts.checkpoint_interval))
    rows.add(0, "resources", None, "one slot per GPU")
    rows.add(1, "slots_per_trial", gpus, gpus_why)
    gen = generation.require()[-1]
    if gen != generation_env.DEFAULT:  # the cluster's startup-hook.sh installs what the experiment says
        rows.add(0, "environment", None, f"startup-hook.sh installs MMDetection {gen}.x on the cluster")
        rows.add(1, "environment_variables", [generation_env.setting(gen)],
                 f"(without it: {generation_env.DEFAULT}.x, and check refuses)")
    if file_client_args:
        rows.add(0, "data", None, f"--data {data}")
        rows.add(1, "file_client_args", None, "how every image and annotation file is read")
        rows.add(2, "backend", file_client_args["backend"], f"the {urlparse(data).scheme}:// of --data")
        rows.add(2, "bucket_name", file_client_args["bucket_name"], "the bucket of --data")
        if "prefix" in file_client_args:
            rows.add(2, "prefix", file_client_args["prefix"],
                     "config paths (data/coco/...) are read as keys under this prefix")
    rows.add(0, "entrypoint", SCRIPT_ENTRYPOINT, "Determined 0.38's script form of the trial")
    header = [
        f"# {config_file} (MMDetection {generation.mmdet_version()}) as a Determined experiment,",
        "# written by model-hub-mmdet init. Check it offline, then submit it:",
        f"#   model-hub-mmdet check {out_name}",
        f"#   det experiment create -f {out_name} .",
    ]
    if not facts.metric:  # check then says searcher.metric is missing
        header.append("# searcher.metric: the config's evaluation reports no metric init knows; add the one to search.")
    if not file_client_args:
        header.append("# Data: read from the config's paths; init --data s3://BUCKET/PREFIX (or gs://) reads a bucket.")
    text = "\n".join(header + rows.render()) + "\n"
    return InitResult(text=text, conf=yaml.safe_load(text))


def _said(source: str, value: Any) -> str:
    """``key=value`` for a comment, a note in parentheses kept after it: ``train_cfg.val_interval=10 (...)``."""
    key, paren, note = source.partition(" (")
    return f"{key}={value}" + (f" ({note}" if paren else "")


class _Rows:
    """YAML lines (indent, key, value, comment) rendered with the comments in one column."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def add(self, depth: int, key: str, value: Any, comment: str) -> None:
        line = "  " * depth + f"{key}:" + ("" if value is None else f" {_scalar(value)}")
        self.rows.append((line, comment))

    def render(self) -> list[str]:
        width = max(len(line) for line, _ in self.rows if len(line) <= 56) + 2
        return [f"{line.ljust(width)}# {comment}" if len(line) < width else f"{line}  # {comment}"
                for line, comment in self.rows]


def _plain(value: Any) -> Any:
    """Tuples as lists (YAML has none; the overrides make a list a tuple where the config has one)."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _scalar(value: Any) -> str:
    """One YAML flow scalar (quoted only where YAML would read the text as something else)."""
    if isinstance(value, Mapping) and not value:
        return "{}"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000)
    return text.removesuffix("\n...\n").strip()
