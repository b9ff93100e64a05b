"""The 3.x twins of the examples: the subclass trial and the custom dataset train through the front doors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from mm3_helpers import REPO, data_overrides

from model_hub_mmdet.launch import load_trial_class
from model_hub_mmdet.local import train_local
from model_hub_mmdet.tools.check import check_experiment

pytestmark = pytest.mark.slow


@pytest.fixture
def context(shapes_dir: Path, det_local: Path) -> Path:
    """The examples in a context directory whose data/shapes is the session's shapes data."""
    work = Path.cwd()
    shutil.copytree(REPO / "examples", work / "examples")
    (work / "data").mkdir()
    (work / "data" / "shapes").symlink_to(shapes_dir)
    return work


def _short(path: Path, batches: int = 2) -> dict:
    conf = yaml.safe_load(path.read_text())
    conf["searcher"]["max_length"] = {"batches": batches}
    conf["hyperparameters"]["global_batch_size"] = 2
    conf["hyperparameters"]["override_mmdet_config"] = {"train_dataloader.num_workers": 0,
                                                        "val_dataloader.num_workers": 0}
    return conf


def test_the_subclass_example_freezes_and_reports(context: Path) -> None:
    conf = _short(context / "examples/subclass/subclass_mmdet3.yaml")
    conf["hyperparameters"]["freeze_backbone_batches"] = 1
    trial = load_trial_class("examples.subclass.trial_mmdet3:FrozenBackboneTrial", context)
    result = train_local(conf, trial, validation_period=2)
    assert "detections_per_image" in result.validations[-1] and "coco/bbox_mAP" in result.validations[-1]


def test_the_custom_dataset_example_checks_and_trains_two_classes(context: Path) -> None:
    path = context / "examples/custom_dataset/custom_dataset_mmdet3.yaml"
    report = check_experiment(path, context)
    assert report.ok, report.problems
    assert report.summary["classes"] == "2 (rectangle, triangle)"
    result = train_local(_short(path), validation_period=2)
    assert "coco/segm_mAP" in result.validations[-1]


def test_check_reports_every_bad_key_in_one_line_each(context: Path, tmp_path: Path) -> None:
    conf = _short(context / "examples/shapes/shapes_mmdet3.yaml")
    conf["hyperparameters"]["override_mmdet_config"] = {
        "optim_wrapper.optimiser.lr": 1, "val_dataloader.datset.data_root": "x",
        **data_overrides(context / "data/shapes")}
    conf["searcher"]["metric"] = "bbox_mAP"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(conf))
    problems = check_experiment(path, context).problems
    assert any("optim_wrapper.optimiser does not exist" in p for p in problems)
    typo = "val_dataloader.datset does not exist in the config; closest: val_dataloader.dataset"
    assert any(typo in p for p in problems)
    conf["hyperparameters"]["override_mmdet_config"] = {}
    path.write_text(yaml.safe_dump(conf))
    problems = check_experiment(path, context).problems
    assert problems == ["searcher.metric 'bbox_mAP' is not produced by this config's val_evaluator (it produces"
                        " coco/bbox_mAP, coco/bbox_mAP_50, coco/bbox_mAP_75, coco/bbox_mAP_s, coco/bbox_mAP_m,"
                        " coco/bbox_mAP_l, coco/segm_mAP, coco/segm_mAP_50, coco/segm_mAP_75, coco/segm_mAP_s,"
                        " coco/segm_mAP_m, coco/segm_mAP_l)"]


@pytest.mark.parametrize("name", ["faster_rcnn_mmdet3.yaml", "retinanet_mmdet3.yaml", "adaptive_search_mmdet3.yaml",
                                  "shapes/shapes_mmdet3.yaml", "subclass/subclass_mmdet3.yaml",
                                  "custom_dataset/custom_dataset_mmdet3.yaml"])
def test_every_3x_example_passes_check(name: str, context: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline: the model zoo entry of use_pretrained, the merge file, the search space and the bucket settings are
    checked without downloading or training (the COCO files of the cluster examples are not on this machine)."""
    report = check_experiment(context / "examples" / name, context)
    assert report.ok, report.problems
    assert report.summary["metrics"].startswith("coco/bbox_mAP")


def test_the_hydra_example_composes_3x_experiments(context: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "examples/hydra/launch.py", "hparams=shapes_mask_rcnn_mmdet3",
                           "searcher=adaptive_mmdet3"], cwd=context, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    composed = yaml.safe_load(proc.stdout)
    assert composed["hyperparameters"]["config_file"] == "examples/shapes/mask_rcnn_shapes_mmdet3.py"
    assert composed["searcher"]["metric"] == "coco/bbox_mAP"
    path = context / "hydra.yaml"
    path.write_text(proc.stdout)
    report = check_experiment(path, context)
    assert report.ok, report.problems
