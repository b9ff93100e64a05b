"""MMDetection 2.x: the run summary's picture for every kind of output (boxes, masks, panoptic), drawn by the
model's own ``show_result``; VOC validation sets give images to draw; export and picture fail apart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import tiny_experiment
from kinds_data import STUFF, THINGS, make_coco_panoptic, make_voc

from model_hub_mmdet.tools.report import export_and_draw

PANOPTIC_CONFIG = """
_base_ = {base!r}
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32), mask_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes=2),
        mask_head=dict(num_convs=1, in_channels=32, conv_out_channels=32, num_classes=2)),
    semantic_head=dict(num_things_classes=2, num_stuff_classes=1, in_channels=32, inner_channels=32,
                       norm_cfg=dict(type="GN", num_groups=8, requires_grad=True)),
    panoptic_fusion_head=dict(num_things_classes=2, num_stuff_classes=1),
    test_cfg=dict(panoptic=dict(score_thr=0.05, stuff_area_limit=16)))
data = dict(test=dict(pipeline=[
    dict(type="LoadImageFromFile"),
    dict(type="MultiScaleFlipAug", img_scale=(64, 64), flip=False, transforms=[
        dict(type="Resize", keep_ratio=True), dict(type="RandomFlip"),
        dict(type="Normalize", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
        dict(type="Pad", size_divisor=32), dict(type="ImageToTensor", keys=["img"]),
        dict(type="Collect", keys=["img"])])]))
"""


def _native(tmp_path: Path, config_text: str, classes: tuple) -> tuple[Path, Path]:
    """A config file and a checkpoint of its model as initialised (what an export writes: weights + CLASSES)."""
    import torch
    from mmcv.runner import save_checkpoint
    from mmdet.apis import init_detector

    config = tmp_path / "model.py"
    config.write_text(config_text)
    torch.manual_seed(0)
    model = init_detector(str(config), None, device="cpu")
    checkpoint = tmp_path / "model.pth"
    save_checkpoint(model, str(checkpoint), meta={"CLASSES": classes})
    return config, checkpoint


def test_a_panoptic_model_is_drawn_by_its_show_result(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import mmcv
    import mmdet
    from mmdet.apis import inference_detector, init_detector

    from model_hub_mmdet.mmdet2.predictions import render
    from model_hub_mmdet.tools.report import draw_predictions

    base = Path(mmdet.__file__).parent / ".mim/configs/panoptic_fpn/panoptic_fpn_r50_fpn_1x_coco.py"
    config, checkpoint = _native(tmp_path, PANOPTIC_CONFIG.format(base=str(base)), THINGS + STUFF)
    data = make_coco_panoptic(tmp_path / "data", count=2)
    images = sorted(data["images"].glob("*.jpg"))
    model = init_detector(str(config), str(checkpoint), device="cpu")
    for image in images:
        np.random.seed(0)  # mmdet picks random colours for masks
        drawn, notes = render(config, checkpoint, [image], score_thr=0.5)
        (picture, caption), = drawn
        assert notes == []
        result = inference_detector(model, str(image))
        np.random.seed(0)
        expected = model.show_result(str(image), result, score_thr=0.5, show=False)
        assert np.array_equal(picture, expected[..., ::-1])  # mmdet's own drawing, as RGB
        assert not np.array_equal(picture, mmcv.imread(str(image))[..., ::-1])  # segments were drawn
        assert caption.startswith(image.name) and caption.endswith("segments")
    out = draw_predictions(config, checkpoint, images, tmp_path / "predictions.png")
    assert out.is_file() and not [r for r in caplog.records if "not drawn" in r.getMessage()]


def test_a_voc_validation_set_gives_images_to_draw(tmp_path: Path) -> None:
    from model_hub_mmdet.mmdet2.predictions import validation_images

    voc = make_voc(tmp_path, count=3)
    config = tmp_path / "voc.py"
    config.write_text(f"data = dict(val=dict(type='VOCDataset', ann_file={str(voc / 'ImageSets/Main/trainval.txt')!r},"
                      f" img_prefix={str(voc) + '/'!r}, classes={THINGS!r}, pipeline=[]))\n")
    assert validation_images(config, 2) == [voc / "JPEGImages/000000.jpg", voc / "JPEGImages/000001.jpg"]


def test_a_failed_export_is_not_a_failed_picture(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    (line,) = export_and_draw(tmp_path / "ckpt", tmp_path / "out")
    assert line.startswith("(could not export the checkpoint: ")


@pytest.mark.slow
def test_a_voc_run_reports_the_expected_names_and_draws_its_picture(
    shapes_dir: Path, det_local: Path, capsys: pytest.CaptureFixture
) -> None:
    from model_hub_mmdet.mmdet2.evaluation import expected_metric_names
    from model_hub_mmdet.tools.cli import main

    voc = make_voc(det_local / "voc", count=4)
    node = {"type": "VOCDataset", "ann_file": str(voc / "ImageSets/Main/trainval.txt"), "img_prefix": f"{voc}/",
            "classes": list(THINGS)}
    over = {f"data.{split}.{k}": v for split in ("train", "val", "test") for k, v in node.items()}
    over.update({"evaluation.metric": "mAP", "evaluation.save_best": "mAP", "model.roi_head.bbox_head.num_classes": 2})
    exp = tiny_experiment(shapes_dir, model="faster_rcnn", max_batches=1, overrides=over)
    exp["searcher"]["metric"] = "mAP"
    Path("exp.yaml").write_text(yaml.safe_dump(exp))
    assert main(["train", "exp.yaml", "--local", "--out", "out", "--max-batches", "1"]) == 0
    printed = capsys.readouterr().out
    validation = json.loads((Path("out") / "metrics.json").read_text())["validations"][-1]
    assert sorted(k for k in validation if k != "batches") == sorted(expected_metric_names({"metric": "mAP"}, node))
    assert (Path("out") / "predictions.png").is_file(), printed
    assert "could not" not in printed
