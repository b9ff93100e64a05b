"""Evaluation with the config's own metrics: names as mmdet 3.x logs them, computed once from gathered results,
and a partial validation (Determined's test mode) scores only the images it covered."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from model_hub_mmdet.mmdet3.evaluation import ValidationMetrics, expected_metric_names


def _perfect_samples(ann_file: Path, image_ids: list[int]) -> list[dict]:
    """Data samples whose predictions are the ground truth boxes of ``image_ids``."""
    doc = json.loads(ann_file.read_text())
    cats = {c["id"]: i for i, c in enumerate(doc["categories"])}
    images = {img["id"]: img for img in doc["images"]}
    samples = []
    for img_id in image_ids:
        anns = [a for a in doc["annotations"] if a["image_id"] == img_id]
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=torch.float32)
        samples.append({"img_id": img_id, "ori_shape": (images[img_id]["height"], images[img_id]["width"]),
                        "pred_instances": {"bboxes": boxes, "scores": torch.ones(len(anns)),
                                           "labels": torch.tensor([cats[a["category_id"]] for a in anns])}})
    return samples


def test_partial_validation_scores_only_the_covered_images(shapes_dir: Path) -> None:
    ann_file = shapes_dir / "annotations" / "val.json"
    evaluator = {"type": "CocoMetric", "ann_file": str(ann_file), "metric": "bbox"}
    classes = tuple(c["name"] for c in json.loads(ann_file.read_text())["categories"])
    metrics = ValidationMetrics(evaluator, {"classes": classes})
    assert metrics.expected == expected_metric_names(evaluator) == [
        "coco/bbox_mAP", "coco/bbox_mAP_50", "coco/bbox_mAP_75", "coco/bbox_mAP_s", "coco/bbox_mAP_m",
        "coco/bbox_mAP_l"]
    items = metrics.process(_perfect_samples(ann_file, [1, 2]))
    assert len(items) == 2 and not metrics.metrics[0].results  # the entries travel with the items
    assert metrics.compute(items, partial=True)["coco/bbox_mAP"] == 1.0  # two perfect images of two
    assert metrics.compute(items, partial=False)["coco/bbox_mAP"] < 1.0  # two images of four never predicted


def test_no_detections_report_zero_for_every_expected_metric(shapes_dir: Path) -> None:
    ann_file = shapes_dir / "annotations" / "val.json"
    metrics = ValidationMetrics({"type": "CocoMetric", "ann_file": str(ann_file), "metric": ["bbox", "segm"]},
                                {"classes": ("rectangle", "ellipse", "triangle")})
    empty = [{"img_id": i, "ori_shape": (64, 64), "pred_instances": {
        "bboxes": torch.zeros((0, 4)), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long),
        "masks": torch.zeros((0, 64, 64), dtype=torch.bool)}} for i in range(1, 5)]
    result = metrics.compute(metrics.process(empty))
    assert result == {name: 0.0 for name in metrics.expected} and len(result) == 12
