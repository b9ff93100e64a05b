"""Every dataset type MMDetection 3.3 ships, trained, validated and scored as mmengine's own Runner scores it.

Per type, on a tiny generated dataset (``tests/tiny_datasets.py``) and a tiny model: ``model-hub-mmdet check``
passes with the metric validation reports and refuses one it does not; ``model-hub-mmdet train --local`` trains a
batch and validates; and the metrics it reports equal ``Runner.test()`` (mmdet's ``tools/test.py``) on the exported
weights. Training and validation use the same images. A dataset class of the user's own (``jsonl_dataset.py``, a
``BaseDetDataset`` subclass) is imported with ``custom_imports`` as a user's would be.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from tiny_datasets import CLASSES, STUFF, make

from model_hub_mmdet.tools.cli import main

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent


def _datasets(kind: str, p: dict[str, Path]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dataset (without pipeline) and the evaluator of each type, as its ``_base_/datasets`` config has them."""
    ann, img, root = str(p["ann_file"]), f"{p['img_dir']}/", str(p["root"])
    meta = dict(classes=CLASSES)
    coco_metric = dict(type="CocoMetric", ann_file=ann, metric="bbox")
    voc_metric = dict(type="VOCMetric", metric="mAP", eval_mode="11points")
    if kind == "voc":
        return (dict(type="VOCDataset", data_root=root, ann_file=ann, data_prefix=dict(sub_data_root="VOC2007/"),
                     metainfo=meta), voc_metric)
    if kind == "wider_face":
        return dict(type="WIDERFaceDataset", data_root=root, ann_file=ann, data_prefix=dict(img=img)), voc_metric
    if kind == "panoptic":
        return (dict(type="CocoPanopticDataset", ann_file=ann, metainfo=dict(thing_classes=CLASSES,
                     stuff_classes=(STUFF,), classes=(*CLASSES, STUFF)),
                     data_prefix=dict(img=img, seg=f"{p['seg_dir']}/")),
                dict(type="CocoPanopticMetric", ann_file=ann, seg_prefix=f"{p['seg_dir']}/", nproc=1))
    if kind in ("lvis_v0.5", "lvis_v1"):
        cls = "LVISV05Dataset" if kind == "lvis_v0.5" else "LVISV1Dataset"
        return (dict(type=cls, ann_file=ann, data_prefix=dict(img=img), metainfo=meta),
                dict(type="LVISMetric", ann_file=ann, metric="bbox"))
    if kind == "openimages":
        return (dict(type="OpenImagesDataset", ann_file=ann, label_file=str(p["label_file"]),
                     meta_file=str(p["meta_file"]), hierarchy_file=str(p["hierarchy_file"]),
                     image_level_ann_file=str(p["image_level_ann_file"]), data_prefix=dict(img=img)),
                dict(type="OpenImagesMetric", iou_thrs=[0.5]))
    if kind == "crowdhuman":
        return (dict(type="CrowdHumanDataset", data_root=root, ann_file=ann, data_prefix=dict(img=img)),
                # JI forks num_ji_process processes at each of 10 thresholds: one each on a 2-core machine
                dict(type="CrowdHumanMetric", ann_file=ann, metric=["AP", "MR", "JI"], num_ji_process=1))
    if kind == "jsonl":
        return dict(type="JsonLinesDataset", ann_file=ann, data_prefix=dict(img=str(p["img_dir"]))), voc_metric
    cls = {"cityscapes": "CityscapesDataset", "objects365": "Objects365V2Dataset"}.get(kind, "CocoDataset")
    return dict(type=cls, ann_file=ann, data_prefix=dict(img=img), metainfo=meta), coco_metric


# type -> (the searcher metric validation reports, a name it does not report)
TYPES: dict[str, tuple[str, str]] = {
    "voc": ("pascal_voc/mAP", "mAP"),
    "panoptic": ("coco_panoptic/PQ", "PQ"),
    "lvis_v0.5": ("lvis/bbox_AP", "coco/bbox_mAP"),
    "lvis_v1": ("lvis/bbox_AP", "bbox_AP"),
    "jsonl": ("pascal_voc/mAP", "pascal_voc/mAPP"),
    "cityscapes": ("coco/bbox_mAP", "cityscapes/mAP"),
    "openimages": ("openimages/mAP", "pascal_voc/mAP"),
    "objects365": ("coco/bbox_mAP", "bbox_mAP"),
    "crowdhuman": ("crowd_human/mAP", "coco/bbox_mAP"),
    "wider_face": ("pascal_voc/mAP", "coco/bbox_mAP"),
    "coco": ("coco/bbox_mAP", "pascal_voc/mAP"),
}
BATCHES = {"panoptic": 2}
# OpenImagesMetric reads the ground truth from the data samples' metainfo (its _base_ config packs them)
_OI_KEYS = ["img_id", "img_path", "ori_shape", "img_shape", "scale_factor", "instances", "image_level_labels"]
OVERRIDES = {"openimages": {"override_mmdet_config": {f"{split}_dataloader.dataset.pipeline.3.meta_keys": _OI_KEYS
                                                      for split in ("val", "test")}}}


def _config_file(kind: str, paths: dict[str, Path], out: Path) -> Path:
    """The experiment's config: the tiny model, then the type's datasets and evaluators (a user's config file)."""
    model = "tiny_panoptic_fpn.py" if kind == "panoptic" else "tiny_faster_rcnn.py"
    dataset, metric = _datasets(kind, paths)
    train = dict(dataset, filter_cfg=dict(filter_empty_gt=True, min_size=32))
    lines = [f"_base_ = [{str(HERE / 'configs' / model)!r}]",
             f"train_dataloader = dict(dataset=dict(_delete_=True, **{train!r},"
             " pipeline={{_base_.train_pipeline}}))",
             f"val_dataloader = dict(dataset=dict(_delete_=True, **{dataset!r}, test_mode=True,"
             " pipeline={{_base_.test_pipeline}}))",
             "test_dataloader = val_dataloader",
             f"val_evaluator = dict(_delete_=True, **{metric!r})",
             "test_evaluator = val_evaluator"]
    if kind == "wider_face":
        lines.append("model = dict(roi_head=dict(bbox_head=dict(num_classes=1)))")
    if kind == "crowdhuman":
        lines.append("model = dict(roi_head=dict(bbox_head=dict(num_classes=1)))")
    if kind == "jsonl":
        lines.append("custom_imports = dict(imports=['jsonl_dataset'], allow_failed_imports=False)")
    if kind == "panoptic":  # two batches at this rate give thing segments a PQ above 0
        lines.append("optim_wrapper = dict(optimizer=dict(lr=0.02))")
    path = out / f"{kind}.py"
    path.write_text("\n".join(lines) + "\n")
    return path


def _experiment(kind: str, config: Path, metric: str) -> dict[str, Any]:
    return {
        "name": f"types3-{kind}",
        "hyperparameters": {"global_batch_size": 2, "config_file": str(config), **OVERRIDES.get(kind, {})},
        "searcher": {"name": "single", "metric": metric, "max_length": {"batches": BATCHES.get(kind, 1)},
                     "smaller_is_better": False},
        "reproducibility": {"experiment_seed": 2},
        "entrypoint": "model_hub_mmdet:MMDetTrial",
    }


def runner_metrics(config: Path, weights: Path, work_dir: Path) -> dict[str, float]:
    """What mmdet 3.3's ``tools/test.py`` (mmengine's ``Runner.test``) reports for ``weights``."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(str(config))
    cfg.work_dir = str(work_dir)
    cfg.load_from = str(weights)
    cfg.pop("visualizer", None)
    metrics = Runner.from_cfg(cfg).test()
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


@pytest.mark.parametrize("kind", list(TYPES))
def test_dataset_type_checks_trains_and_scores_as_mmengine(
    kind: str, tmp_path: Path, det_local: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(HERE))  # jsonl_dataset.py, a user's own dataset module
    paths = make(kind, tmp_path / "data")
    metric, wrong = TYPES[kind]
    config = _config_file(kind, paths, tmp_path)
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(_experiment(kind, config, metric)))

    assert main(["check", str(exp)]) == 0, capsys.readouterr().err
    assert f"{exp}: OK" in capsys.readouterr().out

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_experiment(kind, config, wrong)))
    assert main(["check", str(bad)]) == 1
    assert f"searcher.metric {wrong!r}" in capsys.readouterr().err

    assert main(["train", str(exp), "--local", "--out", "out"]) == 0
    capsys.readouterr()
    validations = json.loads(Path("out/metrics.json").read_text())["validations"]
    ours = {k: v for k, v in validations[-1].items() if k != "batches"}
    assert metric in ours, sorted(ours)

    theirs = runner_metrics(Path("out/model.py"), Path("out/model.pth"), tmp_path / "runner")
    shared = sorted(set(ours) & set(theirs))
    assert metric in shared and ours[metric] > 0  # a score of 0 would match anything
    for key in shared:
        assert math.isclose(ours[key], theirs[key], rel_tol=1e-6, abs_tol=1e-9), (key, ours[key], theirs[key])
