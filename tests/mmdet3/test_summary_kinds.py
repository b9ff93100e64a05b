"""MMDetection 3.x: the run summary's picture for every kind of output (boxes, masks, panoptic), drawn by the
config's ``DetLocalVisualizer``; VOC validation sets give images to draw; a VOC run reports the names ``check``
expects and draws its picture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from kinds_data import STUFF, THINGS, make_coco_panoptic

PANOPTIC_CONFIG = """
_base_ = 'mmdet::panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32), mask_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes=2),
        mask_head=dict(num_convs=1, in_channels=32, conv_out_channels=32, num_classes=2)),
    semantic_head=dict(num_things_classes=2, num_stuff_classes=1, in_channels=32, inner_channels=32,
                       norm_cfg=dict(type='GN', num_groups=8, requires_grad=True)),
    panoptic_fusion_head=dict(num_things_classes=2, num_stuff_classes=1),
    test_cfg=dict(panoptic=dict(score_thr=0.05, stuff_area_limit=16)))
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]))
"""
META = {"classes": THINGS + STUFF, "thing_classes": THINGS, "stuff_classes": STUFF}


def test_a_panoptic_model_is_drawn_by_det_local_visualizer(tmp_path: Path) -> None:
    import mmcv
    import torch
    from mmdet.apis import inference_detector, init_detector
    from mmdet.visualization import DetLocalVisualizer

    from model_hub_mmdet.mmdet3.predictions import render
    from model_hub_mmdet.tools.report import draw_predictions

    config = tmp_path / "model.py"
    config.write_text(PANOPTIC_CONFIG)
    torch.manual_seed(0)
    model = init_detector(str(config), None, device="cpu")
    checkpoint = tmp_path / "model.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"dataset_meta": META}}, checkpoint)
    images = sorted(make_coco_panoptic(tmp_path / "data", count=2)["images"].glob("*.jpg"))
    drawn, notes = render(config, checkpoint, images, score_thr=0.5)
    assert notes == []
    model = init_detector(str(config), str(checkpoint), device="cpu")
    visualizer = DetLocalVisualizer(name="test_summary_kinds")
    visualizer.dataset_meta = model.dataset_meta
    for (picture, caption), image in zip(drawn, images):
        rgb = mmcv.imread(str(image), channel_order="rgb")
        visualizer.add_datasample("x", rgb, inference_detector(model, str(image)), draw_gt=False, pred_score_thr=0.5)
        assert np.array_equal(picture, visualizer.get_image())  # mmdet's own drawing
        assert not np.array_equal(picture, rgb)  # segments were drawn
        assert caption.startswith(image.name) and caption.endswith("segments")
    assert draw_predictions(config, checkpoint, images, tmp_path / "predictions.png").is_file()


@pytest.mark.slow
def test_a_voc_run_reports_the_expected_names_and_draws_its_picture(
    tmp_path: Path, det_local: Path, capsys: pytest.CaptureFixture
) -> None:
    from test_metric_names import voc_config

    from model_hub_mmdet.mmdet3.evaluation import expected_metric_names
    from model_hub_mmdet.mmdet3.predictions import validation_images
    from model_hub_mmdet.tools.cli import main

    config = voc_config(det_local)
    exp = {"name": "voc", "entrypoint": "model_hub_mmdet:MMDetTrial",
           "hyperparameters": {"global_batch_size": 2, "config_file": config},
           "searcher": {"name": "single", "metric": "pascal_voc/mAP", "smaller_is_better": False,
                        "max_length": {"batches": 1}}}
    Path("exp.yaml").write_text(yaml.safe_dump(exp))
    assert main(["train", "exp.yaml", "--local", "--out", "out", "--max-batches", "1"]) == 0
    printed = capsys.readouterr().out
    validation = json.loads((Path("out") / "metrics.json").read_text())["validations"][-1]
    expected = expected_metric_names({"type": "VOCMetric", "metric": "mAP", "eval_mode": "11points"}, THINGS)
    assert sorted(k for k in validation if k != "batches") == sorted(expected) == ["pascal_voc/AP50",
                                                                                   "pascal_voc/mAP"]
    assert len(validation_images(Path("out") / "model.py", 2)) == 2  # the exported config's VOC set
    assert (Path("out") / "predictions.png").is_file(), printed
    assert "could not" not in printed
