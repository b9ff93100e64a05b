"""The experiment file and its rules, in one dependency-free place (PyYAML only; no torch, mmcv or determined).

Everything that reads a Determined experiment config asks this module: loading the YAML, turning hyperparameter
specs into values for a run without a searcher, ``searcher.max_length`` and the periods in every unit
(``batches``, ``records``, ``epochs``), the entrypoint forms, the defaults Determined's master fills in, and the
:class:`TrainerPlan` that says how ``pytorch.init`` and ``Trainer.fit`` are called (see ``model_hub_mmdet.fit``).
"""

from __future__ import annotations

import copy
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from model_hub_mmdet.errors import ConfigError

# ----------------------------------------------------------------------------------------------- loading


def load_experiment(path: str | os.PathLike) -> dict[str, Any]:
    """Parse an experiment YAML; errors name the file (and the line for syntax errors)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: experiment file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save the experiment file as UTF-8") from err
    try:
        conf = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        reason = str(getattr(err, "problem", None) or err).splitlines()[0]
        raise ConfigError(f"{path}:{where} invalid YAML: {reason}") from err
    if not isinstance(conf, dict):
        raise ConfigError(f"{path}: an experiment config must be a YAML mapping")
    return conf


def section(conf: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``conf[key]`` as a dict (an absent or null section is empty); a non-mapping is a one-line error."""
    value = conf.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping, got {value!r}")
    return dict(value)


# ------------------------------------------------------------------------------------ hyperparameter specs

HPARAM_TYPES = ("const", "categorical", "int", "double", "log", "object")


def local_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values for a run without a searcher from Determined hyperparameter specs: ``const`` -> its ``val``,
    ``categorical`` -> its first value, ``int``/``double``/``log`` -> the middle of the range; nested specs
    (``type: object``, or a mapping without ``type``) recurse. Plain values pass through, so the values a
    cluster's searcher already chose are unchanged."""
    if not isinstance(hparams, Mapping):
        raise ConfigError(f"hyperparameters must be a mapping, got {hparams!r}")
    return {str(key): _local_value(str(key), spec) for key, spec in hparams.items()}


def _local_value(key: str, spec: Any) -> Any:
    if not isinstance(spec, Mapping):
        return spec
    if "type" not in spec:  # a nested hyperparameter group (e.g. override_mmdet_config)
        return {str(k): _local_value(f"{key}.{k}", v) for k, v in spec.items()}
    kind = spec["type"]
    if kind not in HPARAM_TYPES:
        raise ConfigError(
            f"hyperparameters.{key}: a mapping with type: {kind!r} is read by Determined as a hyperparameter spec;"
            f" write mmdet dicts with dotted keys ({key}.type: {kind}) or as {{type: const, val: {{...}}}}"
        )
    try:
        if kind == "const":
            return spec["val"]
        if kind == "categorical":
            return list(spec["vals"])[0]
        if kind == "int":
            return (int(spec["minval"]) + int(spec["maxval"])) // 2
        if kind == "double":
            return (float(spec["minval"]) + float(spec["maxval"])) / 2
        if kind == "log":
            return float(spec.get("base", 10)) ** ((float(spec["minval"]) + float(spec["maxval"])) / 2)
        return {str(k): _local_value(f"{key}.{k}", v) for k, v in dict(spec["vals"]).items()}  # object
    except (KeyError, IndexError, TypeError, ValueError, OverflowError) as err:
        needs = {"const": "val", "categorical": "a non-empty vals list", "object": "vals (a mapping)"}.get(
            kind, "numeric minval and maxval"
        )
        raise ConfigError(f"hyperparameters.{key}: a {kind} hyperparameter needs {needs} ({err!r})") from err


def global_batch_size(conf: Mapping[str, Any]) -> int | None:
    """``hyperparameters.global_batch_size`` as a positive int, or None when absent or not one."""
    value = local_hparams(section(conf, "hyperparameters")).get("global_batch_size")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


# ------------------------------------------------------------------------------------- lengths and periods

UNITS = ("batches", "records", "epochs")


@dataclass(frozen=True)
class Length:
    """A training length or period as Determined writes it: ``{batches: N}``, ``{records: N}`` or ``{epochs: N}``."""

    value: int
    unit: str = "batches"

    def to_batches(self, *, global_batch_size: int | None = None, epoch_len: int | None = None) -> int:
        """In batches: records as Determined converts them (``max(records // global_batch_size, 1)``), epochs as
        ``value * epoch_len`` (the training loader's length)."""
        if self.unit == "batches":
            return self.value
        if self.unit == "records":
            if not global_batch_size:
                raise ConfigError("a length in records needs hyperparameters.global_batch_size")
            return max(self.value // global_batch_size, 1)
        if not epoch_len:
            raise ConfigError("a length in epochs needs the training loader's length (it has none)")
        return self.value * epoch_len

    def as_dict(self) -> dict[str, int]:
        return {self.unit: self.value}

    def __str__(self) -> str:
        return f"{self.value} {self.unit}"


def parse_length(value: Any, key: str) -> Length | None:
    """``value`` of experiment key ``key`` as a :class:`Length` (a bare int is batches, as older configs wrote);
    None when absent."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = value, "batches"
    elif isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in UNITS:
        unit, number = next(iter(value.items()))
    else:
        raise ConfigError(f"{key} must be one of {{batches: N}}, {{records: N}} or {{epochs: N}}, got {value!r}")
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise ConfigError(f"{key}.{unit} must be a whole number >= 0, got {number!r}")
    return Length(number, unit)


def searcher_length(conf: Mapping[str, Any]) -> Length | None:
    """``searcher.max_length`` (None when absent)."""
    return parse_length(section(conf, "searcher").get("max_length"), "searcher.max_length")


def period(conf: Mapping[str, Any], key: str) -> Length | None:
    """``min_validation_period`` / ``min_checkpoint_period``; None when absent or 0 (Determined's "never")."""
    length = parse_length(conf.get(key), key)
    return length if length is not None and length.value > 0 else None


# ----------------------------------------------------------------------------------------------- defaults

# The fields the harness reads, with the defaults Determined's master fills in (schemas/expconf/v0).
DEFAULTS: dict[str, Any] = {
    "optimizations": {"aggregation_frequency": 1, "gradient_compression": False, "average_aggregated_gradients": True},
    "scheduling_unit": 100,
    "checkpoint_policy": "best",
    "perform_initial_validation": False,
    "profiling": {"enabled": False},
    "min_validation_period": {"batches": 0},
    "min_checkpoint_period": {"batches": 0},
    "max_restarts": 5,
    "records_per_epoch": 0,
    "entrypoint": None,
}


def with_defaults(conf: Mapping[str, Any]) -> dict[str, Any]:
    """``conf`` with the defaults the master fills in for the fields a trial run reads (a copy)."""
    out = dict(conf)
    for key, default in DEFAULTS.items():
        if key in ("optimizations", "profiling"):  # sections whose fields default one by one
            out[key] = {**default, **section(conf, key)}
        elif out.get(key) is None:
            out[key] = copy.deepcopy(default)
    searcher = section(conf, "searcher")
    searcher.setdefault("smaller_is_better", True)
    out["searcher"] = searcher
    return out


# -------------------------------------------------------------------------------------------- entrypoints

DEFAULT_TRIAL = "model_hub_mmdet:MMDetTrial"
SCRIPT_MODULE = "model_hub_mmdet.run"
LAUNCHER = "python3 -m determined.launch.torch_distributed"
SCRIPT_ENTRYPOINT = f"{LAUNCHER} python3 -m {SCRIPT_MODULE}"
_TRIAL_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Entrypoint:
    """What an experiment's ``entrypoint`` runs: the trial class (``module:Class``) and the form it is written in:
    ``script`` (``... -m model_hub_mmdet.run [--trial X]``, Determined 0.38's recommended form), ``launcher``
    (``... --trial X``, the harness) or ``legacy`` (a bare ``module:Class``, deprecated by Determined 0.38)."""

    trial: str
    form: str


def parse_entrypoint(entrypoint: Any) -> Entrypoint:
    """The :class:`Entrypoint` of an experiment's ``entrypoint`` (a string or a list of arguments)."""
    if entrypoint is None or entrypoint == "" or entrypoint == []:
        return Entrypoint(DEFAULT_TRIAL, "script")
    if isinstance(entrypoint, (list, tuple)):
        args = [str(a) for a in entrypoint]
    elif isinstance(entrypoint, str):
        try:
            args = shlex.split(entrypoint)
        except ValueError as err:
            raise ConfigError(f"entrypoint {entrypoint!r}: {err}") from err
    else:
        raise ConfigError(f"entrypoint must be a string or a list, got {entrypoint!r}")
    trial = None
    for i, arg in enumerate(args):
        if arg == "--trial" and i + 1 < len(args):
            trial = args[i + 1]
        elif arg.startswith("--trial="):
            trial = arg.split("=", 1)[1]
    is_script = any(a == SCRIPT_MODULE or a.endswith("model_hub_mmdet/run.py") for a in args)
    if is_script:
        return Entrypoint(trial or DEFAULT_TRIAL, "script")
    if trial:
        return Entrypoint(trial, "launcher")
    if len(args) == 1 and _TRIAL_SPEC.match(args[0]):
        return Entrypoint(args[0], "legacy")
    raise ConfigError(
        f"entrypoint {' '.join(args)!r}: expected '{SCRIPT_ENTRYPOINT} [--trial module:Class]',"
        f" '{LAUNCHER} --trial module:Class' or 'module:Class'"
    )


def entrypoint_class(entrypoint: Any) -> str:
    """``module:Class`` of the trial an experiment's ``entrypoint`` trains."""
    return parse_entrypoint(entrypoint).trial


# ------------------------------------------------------------------------------------ the Trainer's plan


@dataclass(frozen=True)
class TrainerPlan:
    """How Determined's harness calls ``pytorch.init`` and ``Trainer.fit`` for this experiment (0.38.1's
    ``determined/exec/harness.py``), computed from the config with the master's defaults."""

    aggregation_frequency: int
    gradient_compression: bool
    average_aggregated_gradients: bool
    max_length: Length | None
    validation_period: Length
    checkpoint_period: Length
    reporting_period: int  # batches (scheduling_unit)
    checkpoint_policy: str
    step_zero_validation: bool
    profiling_enabled: bool


def trainer_plan(conf: Mapping[str, Any]) -> TrainerPlan:
    """The :class:`TrainerPlan` of an experiment config (raw or with defaults filled)."""
    full = with_defaults(conf)
    opt = full["optimizations"]
    aggregation = opt["aggregation_frequency"]
    if isinstance(aggregation, bool) or not isinstance(aggregation, int) or aggregation < 1:
        raise ConfigError(f"optimizations.aggregation_frequency must be a whole number >= 1, got {aggregation!r}")
    unit = full["scheduling_unit"]
    if isinstance(unit, bool) or not isinstance(unit, int) or unit < 1:
        raise ConfigError(f"scheduling_unit must be a whole number >= 1, got {unit!r}")
    policy = full["checkpoint_policy"]
    if policy not in ("best", "all", "none"):
        raise ConfigError(f"checkpoint_policy must be best, all or none, got {policy!r}")
    return TrainerPlan(
        aggregation_frequency=aggregation,
        gradient_compression=bool(opt["gradient_compression"]),
        average_aggregated_gradients=bool(opt["average_aggregated_gradients"]),
        max_length=searcher_length(full),
        validation_period=parse_length(full["min_validation_period"], "min_validation_period") or Length(0),
        checkpoint_period=parse_length(full["min_checkpoint_period"], "min_checkpoint_period") or Length(0),
        reporting_period=unit,
        checkpoint_policy=policy,
        step_zero_validation=bool(full["perform_initial_validation"]),
        profiling_enabled=bool(section(full, "profiling").get("enabled", False)),
    )
