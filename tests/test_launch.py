"""Determined's front doors: the experiment -> init/fit mapping against Determined's own harness, the script
entrypoint's cluster branch, test mode (Determined's CLI, Trainer.fit, our CLI), gradient accumulation, epochs."""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from determined import pytorch
from helpers import tiny_experiment

from model_hub_mmdet import determined_patches
from model_hub_mmdet.errors import ConfigError, SetupError
from model_hub_mmdet.expconf import parse_entrypoint, with_defaults
from model_hub_mmdet.local import train_local

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the mapping vs Determined's harness


class NullTrial(pytorch.PyTorchTrial):
    """A trial that builds nothing: only the arguments of init/fit are under test here."""

    def __init__(self, context: Any) -> None:
        self.context = context

    def build_training_data_loader(self) -> Any:
        raise NotImplementedError

    def build_validation_data_loader(self) -> Any:
        raise NotImplementedError

    def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> Any:
        raise NotImplementedError


class _Recording:
    """Stands in for pytorch.init / Trainer (no master can run here) and records what they were given."""

    def __init__(self) -> None:
        self.init: dict[str, Any] = {}
        self.context: dict[str, Any] = {}
        self.fit: dict[str, Any] = {}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        rec = self

        class Context:
            class distributed:  # noqa: N801 - mimics the attribute
                size, rank = 1, 0

            def _set_default_gradient_compression(self, value: bool) -> None:
                rec.context["gradient_compression"] = value

            def _set_default_average_aggregated_gradients(self, value: bool) -> None:
                rec.context["average_aggregated_gradients"] = value

            def _set_is_pre_trainer(self) -> None:
                pass

        @contextlib.contextmanager
        def init(**kwargs: Any):
            rec.init = kwargs
            yield Context()

        class Trainer:
            def __init__(self, trial: Any, context: Any) -> None:
                pass

            def fit(self, **kwargs: Any) -> None:
                rec.fit = kwargs

        monkeypatch.setattr(pytorch, "init", init)
        monkeypatch.setattr(pytorch, "Trainer", Trainer)


def _cluster_info(conf: dict[str, Any], latest_checkpoint: str | None = None) -> Any:
    import determined as det

    from model_hub_mmdet.expconf import local_hparams

    trial = det.TrialInfo(
        trial_id=3, experiment_id=2, trial_seed=11, hparams=local_hparams(conf["hyperparameters"]),
        config=with_defaults(conf), steps_completed=0, trial_run_id=1, debug=False, inter_node_network_interface=None,
    )
    return det.ClusterInfo(
        master_url="http://127.0.0.1:8080", cluster_id="c", agent_id="a", slot_ids=[0], task_id="t",
        allocation_id="al", session_token="s", task_type="TRIAL", latest_checkpoint=latest_checkpoint,
        trial_info=trial,
    )


def _unit(value: Any) -> Any:
    return (type(value).__name__, value.value) if isinstance(value, pytorch.TrainUnit) else value


EXPERIMENTS = {
    "maskrcnn.yaml": yaml.safe_load((REPO / "maskrcnn.yaml").read_text()),
    "defaults": {"hyperparameters": {"global_batch_size": 4}, "searcher": {"name": "single", "metric": "m",
                                                                          "max_length": {"batches": 10}}},
    "records-and-options": {
        "hyperparameters": {"global_batch_size": 8, "lr": {"type": "log", "minval": -3, "maxval": -1}},
        "searcher": {"name": "single", "metric": "bbox_mAP", "smaller_is_better": False,
                     "max_length": {"records": 1000}},
        "min_validation_period": {"records": 200},
        "min_checkpoint_period": {"epochs": 2},
        "optimizations": {"aggregation_frequency": 4, "gradient_compression": True,
                          "average_aggregated_gradients": False},
        "scheduling_unit": 7,
        "checkpoint_policy": "all",
        "perform_initial_validation": True,
        "profiling": {"enabled": True, "begin_on_batch": 2},
    },
    "epochs": {"hyperparameters": {"global_batch_size": 2}, "searcher": {"name": "single", "metric": "m",
                                                                         "max_length": {"epochs": 3}},
               "min_validation_period": {"epochs": 1}, "checkpoint_policy": "none"},
}


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_cluster_entrypoint_calls_init_and_fit_as_determineds_harness(name: str, monkeypatch) -> None:
    from determined import core
    from determined.exec import harness

    from model_hub_mmdet import run

    info = _cluster_info(EXPERIMENTS[name], latest_checkpoint="4f3c-uuid")
    theirs, ours = _Recording(), _Recording()
    theirs.install(monkeypatch)
    with warnings.catch_warnings():  # the harness warns about the legacy entrypoint form it runs
        warnings.simplefilter("ignore", FutureWarning)
        harness._run_pytorch_trial(NullTrial, info, "test_launch:NullTrial")
    ours.install(monkeypatch)
    import determined as det

    monkeypatch.setattr(det, "get_cluster_info", lambda: info)
    assert run.main(["--trial", "test_launch:NullTrial"]) == 0

    assert ours.init == theirs.init
    assert ours.context == theirs.context
    max_length = ours.fit.pop("max_length")
    assert {k: _unit(v) for k, v in ours.fit.items()} == {k: _unit(v) for k, v in theirs.fit.items()}
    # fit() would read searcher.max_length itself (deprecated in 0.38); ours passes the same value explicitly.
    config = info.trial._config
    implicit = pytorch.TrainUnit._from_searcher_unit(
        core._parse_searcher_max_length(config), core._parse_searcher_units(config),
        int(info.trial.hparams["global_batch_size"]),
    )
    assert _unit(max_length) == _unit(implicit)
    assert ours.fit["latest_checkpoint"] == "4f3c-uuid"


def test_local_runs_use_the_same_mapping_with_local_adjustments() -> None:
    from model_hub_mmdet.launch import fit_kwargs, init_kwargs

    conf = EXPERIMENTS["records-and-options"]
    hparams = {"global_batch_size": 8}
    cluster, local = fit_kwargs(conf, hparams), fit_kwargs(conf, hparams, local=True, test_mode=True)
    assert init_kwargs(conf) == {"aggregation_frequency": 4}
    assert _unit(local["max_length"]) == ("Batch", 125) == _unit(cluster["max_length"])
    assert _unit(local["validation_period"]) == ("Batch", 25)
    assert _unit(local["checkpoint_period"]) == ("Epoch", 2)
    assert _unit(local["reporting_period"]) == ("Batch", 7)
    assert local["step_zero_validation"] is True and local["test_mode"] is True
    assert (cluster["profiling_enabled"], local["profiling_enabled"]) == (True, False)  # no profiler off-cluster
    with pytest.raises(ConfigError, match="searcher.max_length is required"):
        fit_kwargs({"hyperparameters": {}}, {}, local=True)


def test_entrypoint_forms() -> None:
    script = "python3 -m determined.launch.torch_distributed python3 -m model_hub_mmdet.run"
    assert parse_entrypoint(script) == parse_entrypoint(None)
    assert (parse_entrypoint(script).trial, parse_entrypoint(script).form) == ("model_hub_mmdet:MMDetTrial", "script")
    assert parse_entrypoint(f"{script} --trial my.mod:Mine").trial == "my.mod:Mine"
    assert parse_entrypoint(["python3", "-m", "model_hub_mmdet.run", "--trial=a:B"]).trial == "a:B"
    launcher = parse_entrypoint("python3 -m determined.launch.torch_distributed --trial model_hub_mmdet:MMDetTrial")
    assert (launcher.trial, launcher.form) == ("model_hub_mmdet:MMDetTrial", "launcher")
    assert parse_entrypoint("model_hub_mmdet:MMDetTrial").form == "legacy"
    with pytest.raises(ConfigError, match="expected"):
        parse_entrypoint("python3 train.py")


def test_run_module_off_cluster_without_an_experiment_is_one_line(capsys) -> None:
    from model_hub_mmdet import run

    assert run.main([]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "EXPERIMENT.yaml" in err


def test_patches_fail_in_one_line_when_determined_changes(monkeypatch) -> None:
    class Changed:
        def __init__(self, trial_inst: Any, context: Any) -> None:  # no steps_completed / test_mode
            pass

    monkeypatch.setattr(determined_patches, "_original_controller", Changed)
    with pytest.raises(SetupError, match="no longer takes steps_completed, test_mode; .*determined==0.38.1"):
        determined_patches.check()


# --------------------------------------------------------------------------------------------- test mode


def _small_validation(shapes_dir: Path, **kwargs: Any) -> dict[str, Any]:
    exp = tiny_experiment(shapes_dir, model="retinanet", max_batches=3, **kwargs)
    exp["hyperparameters"]["override_mmdet_config"]["evaluation.metric"] = ["bbox"]
    return exp


@pytest.mark.slow
def test_trainer_test_mode_evaluates_the_images_it_covered(shapes_dir: Path, det_local: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="model_hub_mmdet")
    result = train_local(_small_validation(shapes_dir), test_mode=True)
    assert result.batches_trained == 1
    (val,) = result.validations
    assert "bbox_mAP" in val
    assert "evaluating the 1 of 4 validation images that were predicted" in caplog.text


@pytest.mark.slow
def test_det_experiment_create_local_test(shapes_dir: Path, det_local: Path) -> None:
    """Determined's own CLI, as a user runs it; the entrypoint is the legacy module:Class form it requires."""
    context = det_local / "context"
    context.mkdir()
    exp = _small_validation(shapes_dir)
    exp["hyperparameters"]["override_mmdet_config"]["optimizer.lr"] = {"type": "log", "minval": -3, "maxval": -2}
    (context / "exp.yaml").write_text(yaml.safe_dump(exp))
    det = Path(sys.executable).with_name("det")
    proc = subprocess.run(
        [str(det), "experiment", "create", "--local", "--test", str(context / "exp.yaml"), str(context)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "DET_MASTER": "http://127.0.0.1:9"},
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "The test experiment passed." in output
    assert "Traceback" not in output


@pytest.mark.slow
def test_cli_train_local_test_flag(shapes_dir: Path, det_local: Path, capsys) -> None:
    from model_hub_mmdet import cli

    path = det_local / "exp.yaml"
    path.write_text(yaml.safe_dump(_small_validation(shapes_dir)))
    assert cli.main(["train", str(path), "--local", "--test", "--out", str(det_local / "out")]) == 0
    out = capsys.readouterr().out
    assert "trained 1 batches" in out and "bbox_mAP=" in out


def test_partial_validation_outside_test_mode_is_refused() -> None:
    from model_hub_mmdet.mmdet2.evaluation import PredictionGatherer

    gatherer = PredictionGatherer(lambda results, indices=None: {"n": len(results)}, dataset_size=3)
    with pytest.raises(RuntimeError, match="covered 2 of 3 images"):
        gatherer.cross_slot_reduce([[(0, "a")], [(2, "b")]])
    gatherer.partial_ok = lambda: True
    assert gatherer.cross_slot_reduce([[(0, "a")], [(2, "b")]]) == {"n": 2}


@pytest.mark.parametrize("metric", ["bbox", "segm", "proposal", "proposal_fast"])
def test_evaluation_subset_scores_only_the_covered_images(shapes_dir: Path, metric: str) -> None:
    """Perfect predictions for images 1 and 3 score 1.0 on that subset (the full set would have misses)."""
    import pycocotools.mask as mask_util
    from mmdet.datasets import build_dataset

    from model_hub_mmdet.mmdet2.evaluation import evaluate_predictions, evaluation_subset

    ds = build_dataset(dict(type="CocoDataset", classes=("rectangle", "ellipse", "triangle"), pipeline=[],
                            test_mode=True, ann_file=str(shapes_dir / "annotations/val.json"),
                            img_prefix=str(shapes_dir / "val")))
    covered = [1, 3]
    results = []
    for i in covered:
        ann = ds.get_ann_info(i)
        boxes = [np.zeros((0, 5), np.float32) for _ in range(3)]
        masks: list[list[Any]] = [[] for _ in range(3)]
        for box, label, seg in zip(ann["bboxes"], ann["labels"], ann["masks"]):
            boxes[label] = np.vstack([boxes[label], np.append(box, 1.0)[None].astype(np.float32)])
            height, width = ds.data_infos[i]["height"], ds.data_infos[i]["width"]
            rle = mask_util.merge(mask_util.frPyObjects(seg, height, width))
            masks[label].append(rle)
        if metric.startswith("proposal"):
            results.append(np.vstack([b for b in boxes]))
        else:
            results.append((boxes, masks) if metric == "segm" else boxes)
    kwargs = {"metric": [metric], "logger": "silent"}
    metrics = evaluate_predictions(evaluation_subset(ds, covered).evaluate, results, kwargs)
    key = {"bbox": "bbox_mAP", "segm": "segm_mAP", "proposal": "AR@100", "proposal_fast": "AR@100"}[metric]
    assert metrics[key] == pytest.approx(1.0, abs=1e-6)


# ------------------------------------------------------------------------------------ gradient accumulation


@pytest.mark.slow
def test_gradient_accumulation_equals_one_large_batch(tmp_path_factory, det_local: Path) -> None:
    from probe_models import PROBE_OVERRIDES

    from model_hub_mmdet.tools.shapes import make_shapes

    data = tmp_path_factory.mktemp("four")
    make_shapes(data, train=4, val=2, size=64, seed=3)
    overrides = dict(PROBE_OVERRIDES)

    def run(gbs: int, batches: int, accumulate: int) -> list[str]:
        over = dict(overrides)
        if accumulate > 1:
            over["optimizer_config.cumulative_iters"] = accumulate
        exp = tiny_experiment(data, max_batches=batches, global_batch_size=gbs, overrides=over)
        exp["optimizations"] = {"aggregation_frequency": accumulate}
        exp["min_checkpoint_period"] = {"batches": 1}
        return train_local(exp).checkpoints

    def state(ckpt: str) -> dict[str, Any]:
        return torch.load(Path(ckpt) / "state_dict.pth", map_location="cpu", weights_only=True)

    (large,) = run(gbs=4, batches=1, accumulate=1)
    first, second = run(gbs=2, batches=2, accumulate=2)
    assert not state(first)["optimizers_state_dict"][0]["state"]  # no step after the first of 2 batches
    assert state(second)["optimizers_state_dict"][0]["state"]  # one step after the second
    ours, theirs = state(second)["models_state_dict"][0], state(large)["models_state_dict"][0]
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-7)
    moved = state(first)["models_state_dict"][0]["fc.weight"] - ours["fc.weight"]
    assert float(moved.abs().max()) > 1e-4  # the step really changed the weights


# --------------------------------------------------------------------------------------- lengths in epochs


@pytest.mark.slow
def test_local_run_accepts_epochs(shapes_dir: Path, det_local: Path) -> None:
    exp = tiny_experiment(shapes_dir, model="retinanet", global_batch_size=4)
    exp["searcher"]["max_length"] = {"epochs": 1}  # 8 images of one aspect group / 4 per batch: 2 batches
    exp["min_validation_period"] = {"epochs": 1}
    result = train_local(copy.deepcopy(exp))
    assert result.batches_trained == 2
    assert [v["batches"] for v in result.validations] == [2]
