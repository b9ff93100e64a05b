"""``model-hub-mmdet init`` with MMDetection 3.x: zoo configs become experiments that pass ``check`` and keep the
config's own schedule (``train_cfg``) and per-GPU batch."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml
from mmengine.config import Config

from model_hub_mmdet import generation
from model_hub_mmdet.expconf import SCRIPT_ENTRYPOINT, load_experiment, local_hparams, parse_length, searcher_length
from model_hub_mmdet.mmdet3.config import bundled_config_dir
from model_hub_mmdet.mmdet3.schedules import build_schedule, hyperparameters, loop_is_iter_based
from model_hub_mmdet.tools import check
from model_hub_mmdet.tools.cli import main

# config -> GPUs (its name's NxbM, else mmdet's 8): families, epoch and iteration loops, COCO/VOC/LVIS/panoptic
ZOO = {
    "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py": 8,
    "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py": 8,
    "retinanet/retinanet_r50_fpn_1x_coco.py": 8,
    "cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py": 8,
    "rtmdet/rtmdet_tiny_8xb32-300e_coco.py": 8,
    "rtmdet/rtmdet-ins_s_8xb32-300e_coco.py": 8,
    "yolox/yolox_s_8xb8-300e_coco.py": 8,
    "detr/detr_r50_8xb2-150e_coco.py": 8,
    "deformable_detr/deformable-detr_r50_16xb2-50e_coco.py": 16,
    "dino/dino-4scale_r50_8xb2-12e_coco.py": 8,
    "ssd/ssd300_coco.py": 8,
    "yolo/yolov3_d53_8xb8-ms-608-273e_coco.py": 8,
    "fcos/fcos_r101-caffe_fpn_gn-head-1x_coco.py": 8,
    "centernet/centernet_r18_8xb16-crop512-140e_coco.py": 8,
    "cornernet/cornernet_hourglass104_10xb5-crop511-210e-mstest_coco.py": 10,
    "yolact/yolact_r50_1xb8-55e_coco.py": 1,
    "solov2/solov2_r50_fpn_1x_coco.py": 8,
    "pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py": 8,
    "pascal_voc/faster-rcnn_r50-caffe-c4_ms-18k_voc0712.py": 8,
    "objects365/retinanet_r50-syncbn_fpn_1350k_objects365v1.py": 8,
    "lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py": 8,
    "cityscapes/faster-rcnn_r50_fpn_1x_cityscapes.py": 8,
    "panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py": 8,
}
EPOCH_LENGTHS = (1000, 7330)  # any loader length: the schedule must equal the config's for each


def _check_problems(path: Path) -> list[str]:
    """``model-hub-mmdet check``'s problems (the 3.x trial's entrypoint included)."""
    return check.check_experiment(path).problems


@pytest.mark.parametrize("config", ZOO)
def test_init_writes_an_experiment_that_passes_check_and_keeps_the_schedule(
    config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", config, "-o", "exp.yaml"]) == 0
    assert _check_problems(tmp_path / "exp.yaml") == []
    conf = load_experiment("exp.yaml")
    own = Config.fromfile(str(bundled_config_dir() / config))  # the config as mmdet's tools/train.py reads it
    hparams = local_hparams(conf["hyperparameters"])
    gbs, slots = hparams["global_batch_size"], conf["resources"]["slots_per_trial"]
    assert slots == ZOO[config] and conf["entrypoint"] == SCRIPT_ENTRYPOINT
    assert conf["searcher"]["metric"].split("/")[0] in ("coco", "pascal_voc", "lvis", "coco_panoptic")
    # Each slot's loader has the config's batch size (the trial's config says so), so an epoch is as long as ...
    cfg = generation.adapter("check").build_config(hparams, conf, tmp_path)
    assert cfg.train_dataloader.batch_size == own.train_dataloader.batch_size == gbs // slots
    train_cfg = own.train_cfg
    by_iter = loop_is_iter_based(train_cfg)
    for epoch_len in EPOCH_LENGTHS:
        # ... one GPU's under dist_train.sh, and the trial's length is the config's epochs x that loader's length.
        max_iters = searcher_length(conf).to_batches(global_batch_size=gbs, epoch_len=epoch_len)
        assert max_iters == (train_cfg.max_iters if by_iter else train_cfg.max_epochs * epoch_len)
        validation = parse_length(conf["min_validation_period"], "min_validation_period")
        val_interval = train_cfg.get("val_interval", 1000 if by_iter else 1)
        assert validation.to_batches(global_batch_size=gbs, epoch_len=epoch_len) == val_interval * (
            1 if by_iter else epoch_len)
        hook = own.default_hooks.checkpoint
        checkpoint = parse_length(conf["min_checkpoint_period"], "min_checkpoint_period")
        assert checkpoint.to_batches(global_batch_size=gbs, epoch_len=epoch_len) == hook.interval * (
            epoch_len if hook.get("by_epoch", True) else 1)
        # The schedule the trial builds logs any difference from train_cfg's length: there must be none.
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01, momentum=0.9)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="model_hub_mmdet"):
            schedule = build_schedule(own, optimizer, hyperparameters(optimizer), epoch_len, max_iters)
        assert schedule.max_iters == max_iters
        assert not [r for r in caplog.records if "not train_cfg's" in r.getMessage()]


def test_init_output_comments_and_options(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "rtmdet/rtmdet_tiny_8xb32-300e_coco.py", "--slots", "2", "--data", "gs://b/coco"]) == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(" # " in line for line in lines), text
    conf = yaml.safe_load(text)
    assert conf["hyperparameters"]["global_batch_size"] == 64 and conf["resources"]["slots_per_trial"] == 2
    assert conf["searcher"]["metric"] == "coco/bbox_mAP" and conf["searcher"]["max_length"] == {"epochs": 300}
    assert conf["data"]["file_client_args"] == {"backend": "gcs", "bucket_name": "b", "prefix": "coco"}
    # the cluster's startup-hook.sh installs 3.x for it (tests/mmdet3/test_generation_env.py: check refuses without)
    assert conf["environment"] == {"environment_variables": ["MODEL_HUB_MMDET_GENERATION=3"]}
    assert "train_dataloader.batch_size=32 x 2 GPUs" in text and "dynamic_intervals is not kept" in text
    (tmp_path / "exp.yaml").write_text(text)
    assert _check_problems(tmp_path / "exp.yaml") == []


def test_print_config_takes_a_config_and_cfg_options(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    options = ["optim_wrapper.optimizer.lr=0.0123", "train_cfg.val_interval=3"]
    assert main(["print-config", "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py", "--cfg-options", *options]) == 0
    text = capsys.readouterr().out
    assert "lr=0.0123" in text and "val_interval=3" in text
    assert main(["print-config", "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py", "--cfg-options",
                 "optim_wraper.optimizer.lr=1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --cfg-options optim_wraper.optimizer.lr:") and "optim_wrapper" in err


def test_cfg_options_shape_the_experiment(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    options = ["train_cfg.max_epochs=24", "train_dataloader.batch_size=4"]
    config = "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"
    assert main(["init", config, "-o", "exp.yaml", "--cfg-options", *options]) == 0
    conf = load_experiment(tmp_path / "exp.yaml")
    assert conf["searcher"]["max_length"] == {"epochs": 24} and conf["hyperparameters"]["global_batch_size"] == 32
    assert _check_problems(tmp_path / "exp.yaml") == []


@pytest.mark.slow
def test_train_a_config_with_cfg_options(shapes_dir: Path, det_local: Path) -> None:
    """``train CONFIG.py --local`` trains what init writes (one slot here): train_cfg's epochs of len(loader)
    batches, validating and checkpointing every epoch; --cfg-options reach the model and the run's records."""
    import json

    from model_hub_mmdet import checkpoints

    base = Path(__file__).parent / "configs" / "rtmdet_tiny_shapes.py"
    data = "\n".join(f"{split}_dataloader = dict(dataset=dict(data_root='{shapes_dir}/'))"
                     for split in ("train", "val", "test"))
    config = Path("rtmdet_tiny_1xb2_shapes.py").resolve()
    config.write_text(
        f"_base_ = '{base}'\n{data}\n"
        f"val_evaluator = dict(ann_file='{shapes_dir}/annotations/val.json')\ntest_evaluator = val_evaluator\n"
        "train_cfg = dict(max_epochs=2, val_interval=1)\ndefault_hooks = dict(checkpoint=dict(interval=1))\n"
    )
    out = det_local / "run"
    options = ["optim_wrapper.optimizer.lr=0.0123", "model.test_cfg.max_per_img=10"]
    assert main(["train", str(config), "--local", "--out", str(out), "--cfg-options", *options]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    loader_len = 8 // 2  # 8 square training images, 2 per batch, one aspect-ratio group
    assert [v["batches"] for v in metrics["validations"]] == [loader_len, 2 * loader_len]
    assert "coco/bbox_mAP" in metrics["validations"][-1]
    assert metrics["cfg_options"] == {"optim_wrapper.optimizer.lr": 0.0123, "model.test_cfg.max_per_img": 10}
    saved = yaml.safe_load((out / "experiment.yaml").read_text())
    assert saved["searcher"]["max_length"] == {"epochs": 2} and saved["hyperparameters"]["global_batch_size"] == 2
    text = (Path(checkpoints.newest_complete(out)) / checkpoints.CONFIG_FILE).read_text()
    assert "lr=0.0123" in text and "max_per_img=10" in text
