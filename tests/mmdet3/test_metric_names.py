"""MMDetection 3.x: the metric names ``check`` and ``init`` expect are each ``val_evaluator`` metric's ``prefix``
and the keys its own ``compute_metrics`` returns, whatever the class (a user's own metric included).

Each rule is held against the metric's real ``process`` + ``compute_metrics``: on a synthetic image (COCO, VOC,
OpenImages metrics, which need no files) and on a tiny hand-made COCO panoptic set; then ``check`` is run on VOC
and panoptic experiments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from kinds_data import STUFF, THINGS, make_coco_panoptic, make_voc, rgb2id

from model_hub_mmdet.mmdet3.evaluation import _ask, expected_metric_names, metric_names

CONFIGS = Path(__file__).resolve().parent / "configs"


@pytest.mark.parametrize("cfg", [
    {"type": "CocoMetric"},
    {"type": "CocoMetric", "metric": ["bbox", "segm"], "prefix": "val"},
    {"type": "CocoMetric", "metric": ["proposal", "bbox"], "metric_items": ["mAP", "AR@100"]},
    {"type": "CocoMetric", "metric": "bbox", "classwise": True},
    {"type": "CocoMetric", "metric": "proposal_fast", "proposal_nums": (1, 10)},
    {"type": "CocoMetric", "format_only": True, "outfile_prefix": "/tmp/x"},
    {"type": "VOCMetric"},
    {"type": "VOCMetric", "iou_thrs": [0.5, 0.75], "prefix": ""},
    {"type": "VOCMetric", "metric": "recall", "iou_thrs": [0.5, 0.7], "proposal_nums": (1, 5)},
    {"type": "OpenImagesMetric", "iou_thrs": [0.5, 0.6], "ioa_thrs": [0.5, 0.5]},
])
def test_rules_give_what_compute_metrics_returns(cfg: dict) -> None:
    from mmdet.registry import METRICS

    cls = METRICS.get(cfg["type"])
    prefix = cfg.get("prefix") or cls.default_prefix  # BaseMetric: an empty prefix is the default one
    built_prefix, asked = _ask(cfg, THINGS)
    assert built_prefix == prefix and asked is not None  # the metric took the synthetic image
    assert sorted(expected_metric_names(cfg, THINGS)) == sorted(f"{prefix}/{k}" if prefix else k for k in asked)


def test_a_users_own_metric_is_asked(tmp_path: Path) -> None:
    from mmdet.registry import METRICS
    from mmengine.evaluator import BaseMetric

    @METRICS.register_module(force=True)
    class MeanScore(BaseMetric):
        default_prefix = "mine"

        def process(self, data_batch: Any, data_samples: Any) -> None:
            self.results += [float(s["pred_instances"]["scores"].mean()) for s in data_samples]

        def compute_metrics(self, results: list) -> dict:
            return {"mean_score": sum(results) / len(results), "table": "not a number"}

    @METRICS.register_module(force=True)
    class NeedsFiles(BaseMetric):
        def __init__(self, path: str = "", **kwargs: Any) -> None:
            super().__init__(prefix="files", **kwargs)
            self.path = path

        def process(self, data_batch: Any, data_samples: Any) -> None:
            Path(self.path).read_text()

        def compute_metrics(self, results: list) -> dict:
            return {"x": 1.0}

    names = metric_names([{"type": "MeanScore"}, {"type": "NeedsFiles", "path": str(tmp_path / "none")}])
    assert names.names == ["mine/mean_score"]
    assert names.unknown == ["NeedsFiles (prefix 'files')"]
    assert names.may_report("files/x") and not names.may_report("mine/mean") and not names.may_report("x")
    assert names.line() == ("mine/mean_score, what NeedsFiles (prefix 'files') reports (known after the first"
                            " validation)")


@pytest.fixture(scope="module")
def panoptic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_coco_panoptic(tmp_path_factory.mktemp("panoptic"))


def test_panoptic_names_are_what_compute_metrics_returns(panoptic: dict[str, Path]) -> None:
    pytest.importorskip("panopticapi", reason="pip install --no-deps panopticapi-lite==0.2.0")
    import cv2
    from mmdet.registry import METRICS

    cfg = {"type": "CocoPanopticMetric", "ann_file": str(panoptic["ann_file"]),
           "seg_prefix": str(panoptic["panoptic"])}
    metric = METRICS.build(cfg)
    metric.dataset_meta = {"classes": THINGS + STUFF, "thing_classes": THINGS, "stuff_classes": STUFF}
    doc = json.loads(panoptic["ann_file"].read_text())
    samples = []
    for img, ann in zip(doc["images"], doc["annotations"]):
        ids = rgb2id(cv2.imread(str(panoptic["panoptic"] / ann["file_name"]))[..., ::-1])
        pan = np.full(ids.shape, len(THINGS + STUFF), np.int64)
        for k, seg in enumerate(ann["segments_info"]):
            pan[ids == seg["id"]] = seg["category_id"] - 1 + k * 1000  # categories 1..3 are labels 0..2
        samples.append({"img_id": img["id"], "img_path": str(panoptic["images"] / img["file_name"]),
                        "ori_shape": ids.shape, "seg_map_path": str(panoptic["panoptic"] / ann["file_name"]),
                        "segments_info": [], "pred_panoptic_seg": {"sem_seg": torch.from_numpy(pan)[None]}})
    metric.process({}, samples)
    computed = metric.compute_metrics(metric.results)
    assert sorted(expected_metric_names(cfg)) == sorted(f"coco_panoptic/{k}" for k in computed)
    assert computed["PQ"] == pytest.approx(100.0)  # the ground truth scores a perfect PQ


# --------------------------------------------------------------------------------------------------- check


def _experiment(tmp_path: Path, config: str, metric: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "name": "kinds", "entrypoint": "model_hub_mmdet:MMDetTrial",
        "hyperparameters": {"global_batch_size": 2, "config_file": config},
        "searcher": {"name": "single", "metric": metric, "smaller_is_better": False, "max_length": {"batches": 2}},
        "resources": {"slots_per_trial": 1},
    }))
    return path


def _config(tmp_path: Path, datasets: str, evaluator: str) -> str:
    path = tmp_path / "model.py"
    path.write_text(f"_base_ = {str(CONFIGS / 'rtmdet_tiny_shapes.py')!r}\n"
                    "model = dict(bbox_head=dict(num_classes=2))\n"
                    f"{datasets}\n"
                    f"val_evaluator = dict(_delete_=True, {evaluator})\n"
                    "test_evaluator = val_evaluator\n")
    return str(path)


def voc_config(tmp_path: Path) -> str:
    """RTMDet-tiny on a tiny VOC2007 tree, scored by ``VOCMetric``."""
    make_voc(tmp_path / "voc")
    node = (f"type='VOCDataset', data_root={str(tmp_path / 'voc') + '/'!r},"
            " ann_file='VOC2007/ImageSets/Main/trainval.txt',"
            " data_prefix=dict(_delete_=True, sub_data_root='VOC2007/'),"
            f" metainfo=dict(classes={THINGS!r})")
    datasets = "\n".join(f"{s}_dataloader = dict(dataset=dict({node}))" for s in ("train", "val", "test"))
    return _config(tmp_path, datasets, "type='VOCMetric', metric='mAP', eval_mode='11points'")


def test_check_voc_names_the_metrics_and_refuses_a_typo(tmp_path: Path) -> None:
    from model_hub_mmdet.tools.check import check_experiment

    config = voc_config(tmp_path)
    report = check_experiment(_experiment(tmp_path, config, "pascal_voc/mAP"), tmp_path)
    assert report.ok, report.problems
    assert report.summary["metrics"] == "pascal_voc/mAP, pascal_voc/AP50"
    for typo in ("pascal_voc/mAPP", "mAP"):
        report = check_experiment(_experiment(tmp_path, config, typo), tmp_path)
        assert report.problems == [f"searcher.metric {typo!r} is not produced by this config's val_evaluator"
                                   " (it produces pascal_voc/mAP, pascal_voc/AP50)"]


def test_check_panoptic_names_the_metrics_and_refuses_a_typo(panoptic: dict[str, Path], tmp_path: Path) -> None:
    from model_hub_mmdet.tools.check import check_experiment

    node = (f"type='CocoPanopticDataset', data_root={str(panoptic['root']) + '/'!r}, ann_file='panoptic.json',"
            " data_prefix=dict(_delete_=True, img='images/', seg='panoptic/'),"
            f" metainfo=dict(classes={THINGS + STUFF!r}, thing_classes={THINGS!r}, stuff_classes={STUFF!r})")
    datasets = "\n".join(f"{s}_dataloader = dict(dataset=dict({node}))" for s in ("train", "val", "test"))
    evaluator = (f"type='CocoPanopticMetric', ann_file={str(panoptic['ann_file'])!r},"
                 f" seg_prefix={str(panoptic['panoptic'])!r}")
    config = _config(tmp_path, datasets, evaluator)
    report = check_experiment(_experiment(tmp_path, config, "coco_panoptic/PQ"), tmp_path)
    names = "coco_panoptic/PQ, coco_panoptic/SQ, coco_panoptic/RQ, coco_panoptic/PQ_th"
    assert report.summary["metrics"].startswith(names)
    if __import__("importlib").util.find_spec("panopticapi") is None:
        assert report.problems == ["CocoPanopticDataset needs panopticapi, which is not installed:"
                                   " pip install --no-deps panopticapi-lite==0.2.0"]
    else:
        assert report.ok, report.problems
    report = check_experiment(_experiment(tmp_path, config, "PQ"), tmp_path)
    assert report.problems[-1].startswith(f"searcher.metric 'PQ' is not produced by this config's val_evaluator"
                                          f" (it produces {names}")


def test_check_warns_what_mmdet_tolerates_in_a_coco_file(panoptic: dict[str, Path], tmp_path: Path) -> None:
    """3.x ``check`` has the shared checker's tolerated tier: a zero-area box is trained as mmdet trains it."""
    from model_hub_mmdet.tools.check import check_experiment

    doc = json.loads(panoptic["ins_ann_file"].read_text())
    doc["annotations"].append({**doc["annotations"][0], "id": 99, "bbox": [5, 5, 0, 4], "area": 0})
    (tmp_path / "instances.json").write_text(json.dumps(doc))
    node = (f"data_root={str(panoptic['root']) + '/'!r}, ann_file={str(tmp_path / 'instances.json')!r},"
            f" data_prefix=dict(img='images/'), metainfo=dict(classes={THINGS!r})")
    datasets = "\n".join(f"{s}_dataloader = dict(dataset=dict({node}))" for s in ("train", "val", "test"))
    config = _config(tmp_path, datasets, f"type='CocoMetric', ann_file={str(tmp_path / 'instances.json')!r}")
    report = check_experiment(_experiment(tmp_path, config, "coco/bbox_mAP"), tmp_path)
    assert report.ok, report.problems
    assert report.warnings == [f"{tmp_path / 'instances.json'}: trained as MMDetection trains it: boxes of zero"
                               " area, under 1 px wide or high, or outside their image (dropped): 1 (first:"
                               " annotations[6] id 99 on image 1, bbox [5, 5, 0, 4])"]


def test_check_names_a_library_left_out_with_its_install_command() -> None:
    import importlib.util

    from model_hub_mmdet.mmdet3.check import _library_problems

    cfg = {"val_dataloader": {"dataset": {"type": "CocoDataset"}},
           "val_evaluator": [{"type": "CocoMetric"}, {"type": "CityScapesMetric", "outfile_prefix": "x"}]}
    expected = [] if importlib.util.find_spec("cityscapesscripts") else [
        "val_evaluator CityScapesMetric needs cityscapesscripts, which is not installed: pip install cityscapesscripts"]
    assert _library_problems(cfg) == expected
    assert expected_metric_names(cfg["val_evaluator"]) == [
        "coco/bbox_mAP", "coco/bbox_mAP_50", "coco/bbox_mAP_75", "coco/bbox_mAP_s", "coco/bbox_mAP_m",
        "coco/bbox_mAP_l", "cityscapes/mAP", "cityscapes/AP@50"]


@pytest.mark.parametrize("extra", [{"metric": ["bbox", "segm"]}, {"metric": "bbox", "metric_items": ["AP", "APr"]},
                                   {"metric": "proposal"}])
def test_lvis_names_are_what_compute_metrics_returns(panoptic: dict[str, Path], tmp_path: Path, extra: dict) -> None:
    pytest.importorskip("lvis")
    from mmdet.registry import METRICS

    from model_hub_mmdet.mmdet3 import patches

    patches.apply()  # lvis 0.5.3 uses np.float
    doc = json.loads(panoptic["ins_ann_file"].read_text())
    for img in doc["images"]:
        img.update(neg_category_ids=[], not_exhaustive_category_ids=[])
    for cat in doc["categories"]:
        cat.update(frequency="f", image_count=3, synset=cat["name"])
    (tmp_path / "lvis.json").write_text(json.dumps(doc))
    cfg = {"type": "LVISMetric", "ann_file": str(tmp_path / "lvis.json"), **extra}
    metric = METRICS.build(cfg)
    metric.dataset_meta = {"classes": THINGS}
    for img in doc["images"]:
        anns = [a for a in doc["annotations"] if a["image_id"] == img["id"]]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns])
        masks = torch.zeros((len(anns), 64, 64), dtype=torch.bool)
        for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
            masks[k, y1:y2, x1:x2] = True
        metric.process({}, [{"img_id": img["id"], "ori_shape": (64, 64), "pred_instances": {
            "bboxes": boxes, "scores": torch.full((len(anns),), 0.9), "masks": masks,
            "labels": torch.tensor([a["category_id"] - 1 for a in anns])}}])
    computed = metric.compute_metrics(metric.results)
    assert sorted(expected_metric_names(cfg, THINGS)) == sorted(f"lvis/{k}" for k in computed)
