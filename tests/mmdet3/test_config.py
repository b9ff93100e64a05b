"""The 3.x config pipeline: bundled configs of every family build as detectors; overrides, storage, errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mm3_helpers import MODELS, data_overrides

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.mmdet3.config import build_mmdet_config, bundled_config_dir, counterpart

# 44 bundled configs across the families the issue lists, and a few more.
BUNDLED = [
    "rtmdet/rtmdet_tiny_8xb32-300e_coco.py", "rtmdet/rtmdet_s_8xb32-300e_coco.py",
    "rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py", "rtmdet/rtmdet-ins_s_8xb32-300e_coco.py",
    "yolox/yolox_tiny_8xb8-300e_coco.py", "yolox/yolox_s_8xb8-300e_coco.py",
    "dino/dino-4scale_r50_8xb2-12e_coco.py", "detr/detr_r18_8xb2-500e_coco.py", "detr/detr_r50_8xb2-150e_coco.py",
    "deformable_detr/deformable-detr_r50_16xb2-50e_coco.py",
    "deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py",
    "conditional_detr/conditional-detr_r50_8xb2-50e_coco.py", "dab_detr/dab-detr_r50_8xb2-50e_coco.py",
    "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py", "faster_rcnn/faster-rcnn_r50-caffe_fpn_ms-1x_coco.py",
    "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py", "mask_rcnn/mask-rcnn_r50_fpn_amp-1x_coco.py",
    "cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py", "cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py",
    "retinanet/retinanet_r50_fpn_1x_coco.py", "retinanet/retinanet_r18_fpn_1x_coco.py",
    "fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py", "atss/atss_r50_fpn_1x_coco.py", "gfl/gfl_r50_fpn_1x_coco.py",
    "tood/tood_r50_fpn_1x_coco.py", "solov2/solov2_r50_fpn_1x_coco.py", "solov2/solov2-light_r18_fpn_ms-3x_coco.py",
    "condinst/condinst_r50_fpn_ms-poly-90k_coco_instance.py", "sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.py",
    "centernet/centernet-update_r50-caffe_fpn_ms-1x_coco.py", "centernet/centernet_r18_8xb16-crop512-140e_coco.py",
    "ssd/ssd300_coco.py", "yolo/yolov3_d53_8xb8-320-273e_coco.py", "yolof/yolof_r50-c5_8xb8-1x_coco.py",
    "vfnet/vfnet_r50_fpn_1x_coco.py", "paa/paa_r50_fpn_1x_coco.py", "autoassign/autoassign_r50-caffe_fpn_1x_coco.py",
    "solo/solo_r50_fpn_1x_coco.py", "htc/htc_r50_fpn_1x_coco.py", "queryinst/queryinst_r50_fpn_1x_coco.py",
    "panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py", "mask2former/mask2former_r50_8xb2-lsj-50e_coco.py",
    "ddq/ddq-detr-4scale_r50_8xb2-12e_coco.py", "fsaf/fsaf_r50_fpn_1x_coco.py",
]


def test_at_least_40_bundled_configs_of_every_family_build_as_detectors_on_the_cpu() -> None:
    from mmdet.models.detectors import BaseDetector
    from mmdet.registry import MODELS as REGISTRY

    assert len(BUNDLED) >= 40 and all((bundled_config_dir() / name).is_file() for name in BUNDLED)
    built, started = [], time.monotonic()
    for name in BUNDLED:
        cfg = build_mmdet_config({"config_file": name, "global_batch_size": 2,
                                  "override_mmdet_config": {"optim_wrapper.optimizer.lr": 0.001}},
                                 {"file_client_args": {"backend": "fake"}})
        assert cfg.train_dataloader.batch_size == 2
        assert cfg.train_dataloader.dataset.get("backend_args") or cfg.train_dataloader.dataset.dataset.backend_args
        model = REGISTRY.build(cfg.model)
        assert isinstance(model, BaseDetector), name
        built.append(name)
    assert len(built) == len(BUNDLED)
    print(f"{len(built)} bundled configs built as detectors in {time.monotonic() - started:.1f} s")


def test_overrides_follow_mmengine_semantics(shapes_dir: Path) -> None:
    over = data_overrides(shapes_dir)
    over.update({
        "optim_wrapper.optimizer.lr": "4e-3",  # YAML reads 4e-3 as a string: it becomes the float it replaces
        "train_dataloader.dataset.pipeline.2.scale": [96, 96],  # list index; YAML list -> the tuple it replaces
        "param_scheduler.0.end": 10,
        "optim_wrapper.paramwise_cfg._delete_": True,
        "optim_wrapper.paramwise_cfg.norm_decay_mult": 0.0,
    })
    cfg = build_mmdet_config({"config_file": MODELS["rtmdet"], "override_mmdet_config": over, "global_batch_size": 4},
                             slots=2)
    assert cfg.optim_wrapper.optimizer.lr == 0.004
    assert cfg.train_dataloader.dataset.pipeline[2].scale == (96, 96)
    assert cfg.param_scheduler[0].end == 10
    assert dict(cfg.optim_wrapper.paramwise_cfg) == {"norm_decay_mult": 0.0}
    assert cfg.train_dataloader.batch_size == 2  # global 4 over 2 slots


def test_file_client_args_become_backend_args_on_every_step_dataset_and_metric(shapes_dir: Path) -> None:
    from model_hub_mmdet.mmdet3.config.file_client import dataset_nodes, loading_steps, metric_nodes

    args = {"backend": "s3", "bucket_name": "b", "prefix": "coco"}
    cfg = build_mmdet_config({"config_file": MODELS["mask_rcnn"], "override_mmdet_config": data_overrides(shapes_dir)},
                             {"file_client_args": args})
    nodes = loading_steps(cfg) + dataset_nodes(cfg) + metric_nodes(cfg)
    assert len(nodes) >= 8
    assert all(dict(n["backend_args"]) == {"backend": "s3", "bucket_name": "b", "key_prefix": "coco"} for _, n in nodes)
    assert not any("file_client_args" in str(k) for k in cfg.to_dict())


def test_metainfo_classes_set_by_an_override_reach_the_built_dataset(shapes_dir: Path, caplog) -> None:
    """mmengine's merge_from_dict creates ``metainfo`` on a config without it; so does override_mmdet_config, with
    one INFO line, and the classes are the dataset's (issue 29)."""
    from mmdet.registry import DATASETS
    from mmengine.config import Config

    classes = ["rectangle", "ellipse", "triangle"]
    over = {"train_dataloader.dataset.data_root": f"{shapes_dir}/",
            "train_dataloader.dataset.ann_file": "annotations/train.json",
            "train_dataloader.dataset.data_prefix.img": "train/",
            "train_dataloader.dataset.metainfo.classes": classes}
    config_file = "rtmdet/rtmdet_tiny_8xb32-300e_coco.py"
    reference = Config.fromfile(bundled_config_dir() / config_file)
    assert "metainfo" not in reference.train_dataloader.dataset
    reference.merge_from_dict(over)
    with caplog.at_level("INFO", logger="model_hub_mmdet"):
        cfg = build_mmdet_config({"config_file": config_file, "override_mmdet_config": over})
    assert cfg.train_dataloader.dataset.to_dict() == reference.train_dataloader.dataset.to_dict()
    new = [r.getMessage() for r in caplog.records if "is new" in r.getMessage()]
    assert new == ["override_mmdet_config.train_dataloader.dataset.metainfo.classes: train_dataloader.dataset.metainfo"
                   " is new (the config has no such key); created as mmengine's merge_from_dict creates it"]
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert dataset.metainfo["classes"] == classes and len(dataset) == 8
    labels = {inst["bbox_label"] for i in range(len(dataset)) for inst in dataset.get_data_info(i)["instances"]}
    assert labels and labels <= {0, 1, 2}


def test_a_typo_of_a_missing_parent_is_refused_with_the_closest_key() -> None:
    over = {"train_dataloader.dataset.metainf.classes": ["a"]}
    with pytest.raises(ConfigError) as err:
        build_mmdet_config({"config_file": MODELS["rtmdet"], "override_mmdet_config": over})
    assert str(err.value) == ("override_mmdet_config.train_dataloader.dataset.metainf.classes:"
                              " train_dataloader.dataset.metainf does not exist in the config;"
                              " closest: train_dataloader.dataset.metainfo")


@pytest.mark.parametrize(("hparams", "message"), [
    ({"config_file": "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py"},
     "is an MMDetection 2.x config and this environment has MMDetection 3.3.0: its 3.x config is"
     " faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"),
    ({"config_file": "rtmdet/rtmdet_tiny_8xb32-300e_coc.py"}, "not found .*did you mean rtmdet/rtmdet_tiny_8xb32"),
    ({"config_file": MODELS["rtmdet"], "override_mmdet_config": {"optim_wrapper.optimiser.lr": 1}},
     "optim_wrapper.optimiser does not exist in the config; closest: optim_wrapper.optimizer"),
    ({"config_file": MODELS["rtmdet"], "override_mmdet_config": {"train_dataloader.dataset.pipeline.30.scale": 1}},
     "index 30 out of range for train_dataloader.dataset.pipeline"),
])
def test_mistakes_are_one_line(hparams: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        build_mmdet_config(hparams)
    assert "\n" not in str(err.value)


def test_a_2x_config_file_names_its_generation_and_3x_twin(tmp_path: Path) -> None:
    old = tmp_path / "faster_rcnn_r50_fpn_1x_coco.py"
    old.write_text("model = dict(type='FasterRCNN')\ndata = dict(train=dict())\nlr_config = dict(policy='step')\n")
    with pytest.raises(ConfigError, match="MMDetection 2.x config .* its 3.x config is faster_rcnn/faster-rcnn_r50"):
        build_mmdet_config({"config_file": str(old)})
    assert counterpart("yolox/yolox_s_8x8_300e_coco.py") == "yolox/yolox_s_8xb8-300e_coco.py"


def test_mmdet_scoped_bases_and_the_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.py").write_text("_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'\n"
                                      "optim_wrapper = dict(optimizer=dict(lr=0.123))\n")
    monkeypatch.setenv("MMDETECTION_CONFIG_DIR", str(tmp_path))
    cfg = build_mmdet_config({"config_file": "mine.py"}, context_dir=tmp_path / "elsewhere")
    assert cfg.optim_wrapper.optimizer.lr == 0.123 and cfg.model.type == "RetinaNet"


def test_use_pretrained_finds_the_3x_model_zoo_entry() -> None:
    from model_hub_mmdet.weights.zoo import zoo_entry_for_config

    entry = zoo_entry_for_config(str(bundled_config_dir() / "rtmdet/rtmdet_tiny_8xb32-300e_coco.py"))
    assert entry.weights.startswith("https://download.openmmlab.com/mmdetection/v3.0/rtmdet/")
    entry = zoo_entry_for_config(str(bundled_config_dir() / "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"))
    assert entry.name == "faster-rcnn_r50_fpn_1x_coco"
