"""Determined 0.38's experiment schema, offline: every repo YAML conforms; each kind of mistake is one line naming
the dotted key (and the closest valid key where there is one); free-form sections stay free-form."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from model_hub_mmdet.experiment_schema import schema_problems

REPO = Path(__file__).resolve().parents[1]
HYDRA_CONF = REPO / "examples" / "hydra" / "conf"
REPO_YAMLS = sorted(
    p.relative_to(REPO)
    for p in [REPO / "maskrcnn.yaml", *REPO.glob("examples/**/*.yaml")]
    if HYDRA_CONF not in p.parents  # hydra groups are fragments: the composed experiments are checked below
)
ASHA_0_38 = "searcher: the adaptive_asha searcher of Determined 0.38 needs max_time and time_metric"
# Problems expected in repo files (none: every example passes Determined 0.38's schema).
KNOWN_PROBLEMS: dict[Path, list[str]] = {}
KNOWN_HYDRA_PROBLEMS: dict[str, list[str]] = {}


def _matches(problems: list[str], expected: list[str]) -> bool:
    return len(problems) == len(expected) and all(p.startswith(e) for p, e in zip(problems, expected))


def test_repo_yamls_were_found() -> None:
    assert Path("maskrcnn.yaml") in REPO_YAMLS and len(REPO_YAMLS) >= 7


@pytest.mark.parametrize("path", REPO_YAMLS, ids=str)
def test_every_repo_experiment_conforms(path: Path) -> None:
    problems = schema_problems(yaml.safe_load((REPO / path).read_text()))
    assert _matches(problems, KNOWN_PROBLEMS.get(path, [])), problems


def _hydra_choices() -> dict[str, list[str]]:
    groups = [group for group in HYDRA_CONF.iterdir() if group.is_dir()]
    return {group.name: sorted(p.stem for p in group.glob("*.yaml")) for group in groups}


def _composed_experiments() -> Iterator[tuple[list[str], dict]]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    choices = _hydra_choices()
    groups = sorted(choices)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(HYDRA_CONF), version_base=None):
        for combo in itertools.product(*(choices[g] for g in groups)):
            overrides = [f"{g}={c}" for g, c in zip(groups, combo)]
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)  # for the ${hydra:runtime.choices...} interpolations
            yield overrides, OmegaConf.to_container(cfg.experiment, resolve=True)


def test_every_composed_hydra_experiment_conforms() -> None:
    pytest.importorskip("hydra")
    seen = 0
    for overrides, experiment in _composed_experiments():
        expected = [p for o in overrides for p in KNOWN_HYDRA_PROBLEMS.get(o, [])]
        problems = schema_problems(experiment)
        assert _matches(problems, expected), (overrides, problems)
        seen += 1
    # Every group file was part of some composition (config.yaml is the root of them all).
    assert seen == len(list(itertools.product(*_hydra_choices().values()))) >= 12


# A full, valid experiment using most fields users write; mutated by the tests below.
FULL = yaml.safe_load("""
name: full
description: every section
labels: [mmdet, coco]
workspace: vision
project: detection
entrypoint: python3 -m determined.launch.torch_distributed python3 -m model_hub_mmdet.run
hyperparameters:
  global_batch_size: 16
  config_file: mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py
  anything: {free: [form, 1], nested: {deeper: true}}
  override_mmdet_config:
    optimizer.lr: {type: log, base: 10, minval: -3, maxval: -1}
    optimizer.weight_decay: {type: categorical, vals: [0.0001, 0.0005]}
    model.backbone.depth: {type: const, val: 50}
    data.samples_per_gpu: {type: int, minval: 1, maxval: 4}
    optimizer.momentum: {type: double, minval: 0.8, maxval: 0.95}
    lr_config: {policy: step, step: [8, 11]}
searcher:
  name: single
  metric: bbox_mAP
  smaller_is_better: false
  max_length: {batches: 1000}
resources:
  slots_per_trial: 8
  shm_size: 4GB
  resource_pool: gpu
  priority: 42
  devices: ["/dev/fuse:/dev/fuse:rwm", {host_path: /dev/x, container_path: /dev/x}]
min_validation_period: {batches: 100}
min_checkpoint_period: {epochs: 1}
checkpoint_storage: {type: s3, bucket: ckpts, prefix: runs, save_trial_best: 1, save_trial_latest: 2}
checkpoint_policy: best
max_restarts: 3
records_per_epoch: 117266
scheduling_unit: 50
perform_initial_validation: true
optimizations: {aggregation_frequency: 2, average_aggregated_gradients: true, mixed_precision: O0}
profiling: {enabled: true, begin_on_batch: 10, end_after_batch: 20, sync_timings: false}
reproducibility: {experiment_seed: 7}
environment:
  image: {cpu: img:cpu, cuda: img:cuda}
  environment_variables: [OMP_NUM_THREADS=1, "WEIRD NAME=x"]
  force_pull_image: false
  registry_auth: {username: me, password: secret}
  pod_spec: {spec: {containers: [{name: sidecar, whatever: {k8s: owns this}}]}}
  ports: {tensorboard: 6006}
  proxy_ports: [{proxy_port: 8888, proxy_tcp: true}]
bind_mounts:
  - {host_path: /datasets, container_path: /mnt/data, read_only: true}
data:
  file_client_args: {backend: s3, bucket_name: b, any_option: [1, 2]}
  anything_else: {free: form}
data_layer: {type: shared_fs}
debug: false
log_policies:
  - {name: oom, pattern: ".*CUDA out of memory.*", action: cancel_retries}
  - {pattern: "ECC error", action: {type: exclude_node}}
integrations: {webhooks: {webhook_name: [slack]}}
retention_policy: {log_retention_days: 30}
preemption_timeout: 60
""")


def test_a_full_experiment_conforms() -> None:
    assert schema_problems(FULL) == []


def _with(**changes: Any) -> dict:
    conf = copy.deepcopy(FULL)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = conf
        for key in parents:
            node = node.setdefault(key, {})
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return conf


_DELETE = object()


@pytest.mark.parametrize(
    "conf, expected",
    [
        # The examples: misspelt keys at any level, with the closest valid key.
        ({"searchr": {"name": "single"}}, "searchr: unknown key; did you mean searcher?"),
        (
            {"min_validation_perod": {"batches": 10}},
            "min_validation_perod: unknown key; did you mean min_validation_period?",
        ),
        (
            {"searcher__max_lenght": {"batches": 10}},
            "searcher.max_lenght: unknown key for the single searcher; did you mean max_length?",
        ),
        ({"resources__slot_per_trial": 8}, "resources.slot_per_trial: unknown key; did you mean slots_per_trial?"),
        ({"environment__imag": "x"}, "environment.imag: unknown key; did you mean image?"),
        # A key written at the wrong level: where it belongs.
        ({"slots_per_trial": 8}, "slots_per_trial: unknown key; did you mean resources.slots_per_trial?"),
        ({"metric": "bbox_mAP"}, "metric: unknown key; did you mean searcher.metric?"),
        # Wrong types.
        ({"searcher__max_length": {"batches": "ten"}}, "searcher.max_length.batches: must be an integer, got 'ten'"),
        (
            {"resources__slots_per_trial": "8"},
            "resources.slots_per_trial: must be an integer, got '8' (a quoted number",
        ),
        ({"profiling__enabled": "yes"}, "profiling.enabled: must be true or false, got 'yes' (a quoted boolean"),
        ({"labels": "mmdet"}, "labels: must be a list, got 'mmdet'"),
        ({"max_restarts": -1}, "max_restarts: must be >= 0, got -1"),
        ({"resources__priority": 100}, "resources.priority: must be <= 99, got 100"),
        ({"resources__shm_size": "4 gigs"}, "resources.shm_size: must be a memory size such as 4GB"),
        (
            {"checkpoint_policy": "bset"},
            "checkpoint_policy: must be one of best, all, none, got 'bset'; did you mean best?",
        ),
        ({"optimizations__mixed_precision": "O4"}, "optimizations.mixed_precision: must be one of O0, O1, O2, O3"),
        ({"entrypoint": 3}, "entrypoint: must be a command string or a list of strings, got 3"),
        ({"hyperparameters": [1, 2]}, "hyperparameters: must be a mapping of names to values or specs"),
        ({"data": "s3://bucket"}, "data: must be a mapping, got 's3://bucket'"),
        # The searcher: required, named, with its own fields.
        ({"searcher": _DELETE}, "searcher: required; e.g. searcher: {name: single"),
        (
            {"searcher__name": _DELETE},
            "searcher.name: required (one of single, random, grid, adaptive_asha, async_halving)",
        ),
        ({"searcher__metric": _DELETE}, "searcher.metric: required by the single searcher"),
        (
            {"searcher__name": "singel"},
            "searcher.name: 'singel' is not a searcher (one of single, random, grid, adaptive_asha, "
            "async_halving); did you mean single?",
        ),
        ({"searcher__name": "custom"}, "searcher.name: the 'custom' searcher was removed in Determined 0.38"),
        ({"searcher__name": "adaptive_simple"}, "searcher.name: the 'adaptive_simple' searcher was removed"),
        (
            {"searcher__max_trials": 4},
            "searcher.max_trials: unknown key for the single searcher (it is used with name: random, "
            "adaptive_asha, async_halving)",
        ),
        ({"searcher__name": "random"}, "searcher.max_trials: required by the random searcher"),
        ({"searcher__name": "adaptive_asha", "searcher__max_trials": 8}, ASHA_0_38),
        # Lengths: one unit of batches, records or epochs.
        ({"min_validation_period": {"batch": 10}}, "min_validation_period.batch: unknown unit; did you mean batches?"),
        (
            {"min_validation_period": {"batches": 10, "epochs": 1}},
            "min_validation_period: give one unit, not batches and epochs",
        ),
        (
            {"min_validation_period": {}},
            "min_validation_period: must be a length: {batches: N}, {records: N} or {epochs: N}",
        ),
        ({"min_validation_period": 10}, "min_validation_period: must be a length"),
        ({"searcher__max_length": {"epochs": 0}}, "searcher.max_length.epochs: must be >= 1, got 0"),
        # Checkpoint storage: fields per type; without a type (the cluster's) only storage keys.
        (
            {"checkpoint_storage__type": "shared-fs"},
            "checkpoint_storage.type: 'shared-fs' is not a checkpoint storage type (one of shared_fs, directory, "
            "s3, gcs, azure); did you mean shared_fs?",
        ),
        (
            {"checkpoint_storage__host_path": "/x"},
            "checkpoint_storage.host_path: unknown key for s3 checkpoint storage (it is used with type: shared_fs)",
        ),
        ({"checkpoint_storage__prefix": "a/../b"}, "checkpoint_storage.prefix: must not contain a '..' segment"),
        (
            {"checkpoint_storage": {"save_trial_latest": 5, "bucket_name": "x"}},
            "checkpoint_storage.bucket_name: unknown key; did you mean bucket?",
        ),
        # Cross-field rules.
        ({"profiling__begin_on_batch": 30}, "profiling.begin_on_batch: must be <= end_after_batch (30 vs 20)"),
        (
            {"bind_mounts": [{"host_path": "datasets", "container_path": "/d"}]},
            "bind_mounts[0].host_path: must be an absolute path",
        ),
        ({"bind_mounts": [{"host_path": "/d"}]}, "bind_mounts[0].container_path: required"),
        (
            {"log_policies": [{"pattern": "x"}]},
            "log_policies[0]: needs a name (or, in the legacy form, both pattern and action)",
        ),
        (
            {"log_policies": [{"name": "x", "action": "cancel"}]},
            "log_policies[0].action: must be one of cancel_retries, exclude_node",
        ),
        (
            {"environment__environment_variables": [{"OMP_NUM_THREADS": 1}]},
            "environment.environment_variables[0]: must be a string",
        ),
        (
            {"environment__image": {"gpu": "a", "gpus": "b"}},
            "environment.image.gpus: unknown key for environment.image; did you mean gpu?",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_mistake_is_one_line_naming_the_key(conf: Mapping, expected: str) -> None:
    problems = schema_problems(_with(**conf))
    assert len(problems) == 1 and problems[0].startswith(expected), problems
    assert "\n" not in problems[0]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"type": "const"}, "hyperparameters.x.val: required by a const hyperparameter"),
        ({"type": "categorical", "vals": 3}, "hyperparameters.x.vals: must be a list, got 3"),
        ({"type": "int", "minval": 1.5, "maxval": 4}, "hyperparameters.x.minval: must be an integer, got 1.5"),
        ({"type": "int", "minval": 4, "maxval": 4}, "hyperparameters.x.minval: must be < maxval (4 vs 4)"),
        ({"type": "double", "minval": 0}, "hyperparameters.x.maxval: required by a double hyperparameter"),
        ({"type": "log", "minval": -3, "maxval": -1}, "hyperparameters.x.base: required by a log hyperparameter"),
        (
            {"type": "log", "base": 10, "min": -3, "maxval": -1},
            "hyperparameters.x.min: unknown key for a log hyperparameter; did you mean minval?",
        ),
        (
            {"type": "categorial", "vals": [1]},
            "hyperparameters.x.type: 'categorial' is not a hyperparameter type; did you mean categorical?",
        ),
        (
            {"type": "AdamW", "lr": 0.1},
            "hyperparameters.x: a mapping with type: 'AdamW' is read by Determined as a hyperparameter spec",
        ),
        (
            {"nested": {"deeper": {"type": "int", "minval": 1}}},
            "hyperparameters.x.nested.deeper.maxval: required by an int hyperparameter",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_hyperparameter_specs_are_checked(spec: dict, expected: str) -> None:
    problems = schema_problems(_with(hyperparameters__x=spec))
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_grid_search_needs_counts_for_ranges() -> None:
    conf = _with(searcher__name="grid", searcher__max_concurrent_trials=2)
    problems = schema_problems(conf)
    ranges = ["optimizer.lr", "data.samples_per_gpu", "optimizer.momentum"]
    assert problems == [f"hyperparameters.override_mmdet_config.{k}.count: required by grid search for a"
                        f" {t} hyperparameter" for k, t in zip(ranges, ["log", "int", "double"])]
    for key in ranges:
        conf["hyperparameters"]["override_mmdet_config"][key]["count"] = 3
    assert schema_problems(conf) == []


@pytest.mark.parametrize(
    "section, value",
    [
        ("entrypoint", "anything at all --trial my.module:MyTrial"),
        ("entrypoint", ["python3", "-m", "model_hub_mmdet.run"]),
        ("entrypoint", "model_hub.mmdetection:MMDetTrial"),  # the old one: a string like any other (migrate's job)
        ("hyperparameters", {"x": {"any": {"keys": [{"type": "not a spec inside a list"}]}}}),
        ("data", {"file_client_args": {"backend": "fake"}, "whatever": [1, {"a": None}]}),
        ("data_layer", {"type": "s3", "bucket": "legacy"}),
        ("environment", {"environment_variables": {"cuda": ["A=1"], "cpu": []}, "image": "one:image"}),
        ("environment", {"pod_spec": {"metadata": {"labels": {"a": "b"}}, "spec": {"anything": 1}}}),
        ("checkpoint_storage", {"save_trial_latest": 5}),  # the cluster's storage type
        ("checkpoint_storage", {"type": "shared_fs", "host_path": "/ckpt", "storage_path": "runs"}),
        ("checkpoint_storage", {"type": "gcs", "bucket": "b"}),
        ("checkpoint_storage", {"type": "azure", "container": "c", "connection_string": "x"}),
        ("checkpoint_storage", {"type": "directory", "container_path": "/ckpt"}),
        ("searcher", {"name": "random", "metric": "m", "max_trials": 4, "max_length": 1000}),
        ("searcher", {"name": "adaptive_asha", "metric": "m", "max_trials": 8, "time_metric": "batches",
                      "max_time": 1000, "mode": "aggressive", "max_rungs": 4, "divisor": 4}),
        ("searcher", {"name": "async_halving", "metric": "m", "max_trials": 8, "num_rungs": 3,
                      "time_metric": "epochs", "max_time": 12}),
        ("min_checkpoint_period", {"records": 0}),
        ("resources", {"shm_size": 200000000000, "slots_per_trial": 0}),
        ("description", None),  # null is "unset" for every optional field
    ],
)
def test_valid_values_pass(section: str, value: Any) -> None:
    assert schema_problems(_with(**{section: value})) == []


def _schema_keys(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path of FULL inside schema-checked (not free-form) mappings."""
    free = {("data",), ("data_layer",), ("hyperparameters",), ("environment", "pod_spec"), ("environment", "ports")}
    if path in free or not isinstance(node, Mapping):
        if isinstance(node, list) and path not in free:
            for item in node:
                yield from (("[]",) + p for p in _schema_keys(item, ()) if p)
        return
    for key, value in node.items():
        yield path + (key,)
        yield from _schema_keys(value, path + (key,))


def test_every_key_of_a_valid_config_is_known_and_a_changed_key_is_reported() -> None:
    # Rename each key of the full config in turn (outside free-form sections): exactly that key is reported.
    checked = 0
    for keys in _schema_keys(FULL):
        if "[]" in keys:
            continue
        conf = copy.deepcopy(FULL)
        node = conf
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1] + "_x"] = node.pop(keys[-1])
        problems = schema_problems(conf)
        dotted = ".".join(keys) + "_x"
        unknown = [p for p in problems if p.startswith(f"{dotted}: unknown")]
        assert len(unknown) == 1, (dotted, problems)
        checked += 1
    assert checked > 60


def test_not_a_mapping() -> None:
    assert schema_problems(["a"]) == ["the experiment config must be a mapping, got ['a']"]


def test_a_key_with_control_characters_is_quoted_on_one_line() -> None:
    problems = schema_problems(yaml.safe_load('"\\r": 1\nsearchr: {}\n'))
    assert any(p.startswith("'\\r': unknown key") for p in problems), problems
    assert all(len(p.splitlines()) == 1 for p in problems), problems
