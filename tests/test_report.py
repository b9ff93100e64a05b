"""What curves.png plots: the headline metric of every evaluator, whatever its prefix."""

from __future__ import annotations

from pathlib import Path

from model_hub_mmdet.tools.report import _headline, plot_curves


def test_headline_metrics_of_every_evaluator() -> None:
    names = ["bbox_mAP", "segm_mAP", "bbox_mAP_50", "mAP", "AP50", "PQ", "SQ", "pascal_voc/mAP", "coco/bbox_mAP",
             "coco_panoptic/PQ", "coco_panoptic/PQ_th", "lvis/bbox_AP", "bbox_AP", "loss"]
    assert [n for n in names if _headline(n)] == ["bbox_mAP", "segm_mAP", "mAP", "PQ", "pascal_voc/mAP",
                                                  "coco/bbox_mAP", "coco_panoptic/PQ", "lvis/bbox_AP", "bbox_AP"]
    assert _headline("coco_panoptic/PQ") == "PQ" and _headline("pascal_voc/mAP") == "mAP"


def test_curves_plot_panoptic_and_voc_validations(tmp_path: Path) -> None:
    training = [{"batches": 1, "loss": 2.0}, {"batches": 2, "loss": 1.5}]
    validations = [{"batches": 2, "coco_panoptic/PQ": 41.4, "pascal_voc/mAP": 0.23}]
    assert plot_curves(training, validations, tmp_path / "curves.png").stat().st_size > 0
