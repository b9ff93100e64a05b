"""Configs bundled with mmdet, across families, go through the whole pipeline and build as detectors, offline,
with pretrained initialisation off (nothing is downloaded, nothing is initialised from a checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfgtest_utils import walk
from mmcv import Config

from model_hub_mmdet.mmdet2.config import build_mmdet_config, bundled_config_dir, config_text, load_config, redact

ZOO = {
    "two-stage": [
        "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py",
        "faster_rcnn/faster_rcnn_r50_caffe_c4_1x_coco.py",
        "rpn/rpn_r50_fpn_1x_coco.py",
        "fast_rcnn/fast_rcnn_r50_fpn_1x_coco.py",
        "libra_rcnn/libra_faster_rcnn_r50_fpn_1x_coco.py",
        "double_heads/dh_faster_rcnn_r50_fpn_1x_coco.py",
        "dynamic_rcnn/dynamic_rcnn_r50_fpn_1x_coco.py",
        "sabl/sabl_faster_rcnn_r50_fpn_1x_coco.py",
        "guided_anchoring/ga_faster_r50_caffe_fpn_1x_coco.py",
        "pascal_voc/faster_rcnn_r50_fpn_1x_voc0712.py",
        "tridentnet/tridentnet_r50_caffe_1x_coco.py",
        "hrnet/faster_rcnn_hrnetv2p_w18_1x_coco.py",
        "dcn/faster_rcnn_r50_fpn_dconv_c3-c5_1x_coco.py",
    ],
    "one-stage": [
        "retinanet/retinanet_r18_fpn_1x_coco.py",
        "ssd/ssd300_coco.py",
        "ssd/ssdlite_mobilenetv2_scratch_600e_coco.py",
        "yolo/yolov3_mobilenetv2_320_300e_coco.py",
        "yolof/yolof_r50_c5_8x8_1x_coco.py",
        "gfl/gfl_r50_fpn_1x_coco.py",
        "atss/atss_r50_fpn_1x_coco.py",
        "tood/tood_r50_fpn_1x_coco.py",
        "paa/paa_r50_fpn_1x_coco.py",
        "ghm/retinanet_ghm_r50_fpn_1x_coco.py",
        "regnet/retinanet_regnetx-800MF_fpn_1x_coco.py",
        "efficientnet/retinanet_effb3_fpn_crop896_8x4_1x_coco.py",
    ],
    "anchor-free": [
        "fcos/fcos_r50_caffe_fpn_gn-head_1x_coco.py",
        "centernet/centernet_resnet18_dcnv2_140e_coco.py",
        "foveabox/fovea_r50_fpn_4x4_1x_coco.py",
        "reppoints/reppoints_moment_r50_fpn_1x_coco.py",
        "autoassign/autoassign_r50_fpn_8x2_1x_coco.py",
        "yolox/yolox_tiny_8x8_300e_coco.py",
        "vfnet/vfnet_r50_fpn_1x_coco.py",
    ],
    "mask": [
        "mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py",
        "ms_rcnn/ms_rcnn_r50_fpn_1x_coco.py",
        "point_rend/point_rend_r50_caffe_fpn_mstrain_1x_coco.py",
        "yolact/yolact_r50_1x8_coco.py",
        "solo/solo_r50_fpn_1x_coco.py",
        "solov2/solov2_light_r18_fpn_3x_coco.py",
    ],
    "cascade": [
        "cascade_rcnn/cascade_rcnn_r50_fpn_1x_coco.py",
        "cascade_rcnn/cascade_mask_rcnn_r50_fpn_1x_coco.py",
        "htc/htc_r50_fpn_1x_coco.py",
        "cascade_rpn/crpn_faster_rcnn_r50_caffe_fpn_1x_coco.py",
    ],
    "transformer": [
        "detr/detr_r50_8x2_150e_coco.py",
        "deformable_detr/deformable_detr_r50_16x2_50e_coco.py",
        "swin/mask_rcnn_swin-t-p4-w7_fpn_1x_coco.py",
        "pvt/retinanet_pvt-t_fpn_1x_coco.py",
    ],
    "panoptic": [
        "panoptic_fpn/panoptic_fpn_r50_fpn_1x_coco.py",
        "maskformer/maskformer_r50_mstrain_16x1_75e_coco.py",
        "mask2former/mask2former_r50_lsj_8x2_50e_coco-panoptic.py",
    ],
}
CASES = [pytest.param(fam, name, id=f"{fam}:{Path(name).stem}") for fam, names in ZOO.items() for name in names]


def _is_pretrained(init_cfg: Any) -> bool:
    items = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return any(isinstance(i, dict) and i.get("type") == "Pretrained" for i in items)


def pretrained_off(config_file: str) -> dict[str, Any]:
    """Overrides that turn off every pretrained initialisation the config asks for (found, not assumed)."""
    model = load_config(bundled_config_dir() / config_file).model
    overrides: dict[str, Any] = {"load_from": None}
    if "pretrained" in model:
        overrides["model.pretrained"] = None
    for path, node in walk(model, ("model",)):
        if path[-1:] == ("init_cfg",) and _is_pretrained(node):
            overrides[".".join(path)] = None
    return overrides


def test_the_zoo_sample_is_broad() -> None:
    assert sum(len(v) for v in ZOO.values()) >= 30 and len(ZOO) == 7
    for names in ZOO.values():
        for name in names:
            assert (bundled_config_dir() / name).is_file(), name


def test_offline_guard_refuses_remote_connections(offline: None) -> None:
    import socket

    with socket.socket() as sock, pytest.raises(OSError, match="test is offline"):
        sock.connect(("192.0.2.1", 80))  # TEST-NET-1: never reached, refused before any packet


@pytest.mark.parametrize("family, config_file", CASES)
def test_zoo_config_builds_a_detector_offline(offline: None, family: str, config_file: str, tmp_path: Path) -> None:
    from mmdet.models import build_detector

    overrides = pretrained_off(config_file)
    cfg = build_mmdet_config({"config_file": config_file, "override_mmdet_config": overrides}, context_dir=tmp_path)
    assert cfg.load_from is None and cfg.model.get("pretrained") is None
    assert not any(_is_pretrained(v) for p, v in walk(cfg.model) if p[-1:] == ("init_cfg",))
    for split in ("val", "test"):
        leaves = [d for _, d in walk(cfg.data[split]) if isinstance(d, dict) and "ann_file" in d]
        assert leaves and all(d["test_mode"] is True for d in leaves)

    detector = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    assert type(detector).__name__ == cfg.model.type
    assert sum(p.numel() for p in detector.parameters()) > 1_000_000


@pytest.mark.parametrize("family", list(ZOO))
def test_one_config_per_family_dumps_and_loads_back(family: str, tmp_path: Path) -> None:
    config_file = ZOO[family][-1]
    hparams = {"config_file": config_file, "override_mmdet_config": pretrained_off(config_file)}
    cfg = build_mmdet_config(hparams, {"file_client_args": {"backend": "s3", "bucket_name": "b"}}, context_dir=tmp_path)
    reloaded = Config.fromstring(config_text(cfg), ".py")
    assert reloaded._cfg_dict.to_dict() == redact(cfg._cfg_dict.to_dict())
