"""``model-hub-mmdet init`` with MMDetection 2.x: zoo configs become experiments that pass ``check`` and train the
config's own schedule; ``train CONFIG.py --local`` trains that experiment."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from helpers import CONFIGS, data_overrides
from mmcv import Config

from model_hub_mmdet import checkpoints
from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.expconf import SCRIPT_ENTRYPOINT, load_experiment, local_hparams, parse_length, searcher_length
from model_hub_mmdet.mmdet2.config import apply_overrides, bundled_config_dir, load_config, merge_config_file
from model_hub_mmdet.mmdet2.schedules import build_schedule
from model_hub_mmdet.tools.cli import main
from model_hub_mmdet.tools.init import experiment_for_config, gpus_from_name, storage_args

# (config, GPUs its name says or mmdet's 8): families, epoch- and iteration-based schedules, every metric kind
ZOO = {
    "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py": 8,
    "mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py": 8,
    "retinanet/retinanet_r50_fpn_1x_coco.py": 8,
    "cascade_rcnn/cascade_mask_rcnn_r50_fpn_1x_coco.py": 8,
    "htc/htc_r50_fpn_1x_coco.py": 8,
    "fcos/fcos_r50_caffe_fpn_gn-head_4x4_1x_coco.py": 4,
    "autoassign/autoassign_r50_fpn_8x2_1x_coco.py": 8,
    "yolof/yolof_r50_c5_8x8_1x_coco.py": 8,
    "yolox/yolox_s_8x8_300e_coco.py": 8,
    "detr/detr_r50_8x2_150e_coco.py": 8,
    "deformable_detr/deformable_detr_r50_16x2_50e_coco.py": 16,
    "ssd/ssd300_coco.py": 8,
    "yolo/yolov3_d53_mstrain-608_273e_coco.py": 8,
    "centernet/centernet_resnet18_dcnv2_140e_coco.py": 8,
    "cornernet/cornernet_hourglass104_mstest_10x5_210e_coco.py": 10,
    "yolact/yolact_r50_1x8_coco.py": 1,
    "solov2/solov2_r50_fpn_1x_coco.py": 8,
    "rpn/rpn_r50_fpn_1x_coco.py": 8,
    "pascal_voc/retinanet_r50_fpn_1x_voc0712.py": 8,
    "pascal_voc/faster_rcnn_r50_caffe_c4_mstrain_18k_voc0712.py": 8,
    "objects365/retinanet_r50_fpn_syncbn_1350k_obj365v1.py": 8,
    "simple_copy_paste/mask_rcnn_r50_fpn_syncbn-all_rpn-2conv_ssj_32x2_90k_coco.py": 32,
    "strong_baselines/mask_rcnn_r50_fpn_syncbn-all_rpn-2conv_lsj_50e_coco.py": 8,
    "lvis/mask_rcnn_r50_fpn_sample1e-3_mstrain_1x_lvis_v1.py": 8,
    "cityscapes/faster_rcnn_r50_fpn_1x_cityscapes.py": 8,
    "mask2former/mask2former_r50_lsj_8x2_50e_coco.py": 8,
}
EPOCH_LENGTHS = (1000, 7330)  # any loader length: the schedule must equal the config's for each


@pytest.mark.parametrize(
    "name, gpus",
    [("yolox_s_8x8_300e_coco.py", 8), ("rtmdet_l_8xb32-300e_coco.py", 8), ("detr_r50_16xb1-150e_coco.py", 16),
     ("yolact_r50_1x8_coco.py", 1), ("fcos_r50_caffe_fpn_gn-head_4x4_1x_coco.py", 4),
     ("faster_rcnn_x101_32x4d_fpn_1x_coco.py", None), ("faster_rcnn_r50_fpn_2x_coco.py", None),
     ("configs/scnet/scnet_x101_64x4d_fpn_8x1_20e_coco.py", 8)],
)
def test_the_gpu_count_is_read_from_the_name_as_the_zoo_spells_it(name: str, gpus: int | None) -> None:
    assert gpus_from_name(name) == gpus


def test_data_uris_become_file_client_args() -> None:
    assert storage_args("s3://my-bucket/datasets/coco/") == {"backend": "s3", "bucket_name": "my-bucket",
                                                             "prefix": "datasets/coco"}
    assert storage_args("gs://b") == {"backend": "gcs", "bucket_name": "b"}
    for bad in ("ftp://b/x", "s3://", "/data/coco"):
        with pytest.raises(ConfigError, match="^--data"):
            storage_args(bad)


def _own_iters(own: Config, epoch_len: int) -> int:
    """The config's own length in batches of one GPU's loader, as mmcv's runners count it."""
    runner = own.get("runner") or {}
    if runner.get("type") == "IterBasedRunner":
        return runner["max_iters"]
    return runner.get("max_epochs", own.get("total_epochs")) * epoch_len


@pytest.mark.parametrize("config", ZOO)
def test_init_writes_an_experiment_that_passes_check_and_keeps_the_schedule(
    config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", config, "-o", "exp.yaml"]) == 0
    assert main(["check", "exp.yaml"]) == 0, capsys.readouterr().err
    conf = load_experiment("exp.yaml")
    own = Config.fromfile(str(bundled_config_dir() / config))  # the config as mmdet's tools/train.py reads it
    hparams = local_hparams(conf["hyperparameters"])
    gbs, slots = hparams["global_batch_size"], conf["resources"]["slots_per_trial"]
    assert slots == ZOO[config] and conf["entrypoint"] == SCRIPT_ENTRYPOINT
    # Each slot trains the config's per-GPU batch, so its loader is as long as one GPU's under dist_train.sh ...
    per_gpu = own.data.get("train_dataloader", {}).get("samples_per_gpu", own.data.samples_per_gpu)
    assert gbs // slots == per_gpu and gbs % slots == 0
    runner = own.runner
    by_iter = runner.type == "IterBasedRunner"
    eval_interval = own.evaluation.get("interval", 1)
    for epoch_len in EPOCH_LENGTHS:
        # ... and the trial's length (MMDetTrial.resolve_max_iters) is the config's epochs x that loader's length.
        max_iters = searcher_length(conf).to_batches(global_batch_size=gbs, epoch_len=epoch_len)
        assert max_iters == _own_iters(own, epoch_len)
        validation = parse_length(conf["min_validation_period"], "min_validation_period")
        assert validation.to_batches(global_batch_size=gbs, epoch_len=epoch_len) == eval_interval * (
            1 if by_iter else epoch_len)
        checkpoint = parse_length(conf["min_checkpoint_period"], "min_checkpoint_period")
        ckpt_by_epoch = own.checkpoint_config.get("by_epoch", not by_iter)
        assert checkpoint.to_batches(global_batch_size=gbs, epoch_len=epoch_len) == (
            own.checkpoint_config.interval * (epoch_len if ckpt_by_epoch else 1))
        # The schedule the trial builds says so itself: it logs any difference from the config's runner length.
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="model_hub_mmdet"):
            schedule = build_schedule(own, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1),
                                      epoch_len, max_iters)
        assert schedule.max_iters == max_iters
        assert not [r for r in caplog.records if "runner length" in r.getMessage()]


def test_init_output_says_where_every_value_came_from(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py", "--slots", "4", "--data",
                 "s3://my-bucket/datasets"]) == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(" # " in line for line in lines), text
    conf = yaml.safe_load(text)
    assert conf["hyperparameters"]["global_batch_size"] == 8 and conf["resources"]["slots_per_trial"] == 4
    assert conf["data"]["file_client_args"] == {"backend": "s3", "bucket_name": "my-bucket", "prefix": "datasets"}
    assert conf["searcher"]["max_length"] == {"epochs": 12} and conf["searcher"]["metric"] == "bbox_mAP"
    assert "data.samples_per_gpu=2 x 4 GPUs" in text and "# --slots" in text and "runner.max_epochs=12" in text
    (tmp_path / "exp.yaml").write_text(text)
    assert main(["check", "exp.yaml"]) == 0  # the bucket is not read offline; the backend is known


def test_init_errors_are_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "faster_rcnn/faster_rcnn_r50_fpn_1x_cooc.py"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: faster_rcnn/faster_rcnn_r50_fpn_1x_cooc.py not found") and "\n" not in err
    assert "did you mean faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py" in err
    (tmp_path / "exp.yaml").write_text("edited")
    assert main(["init", "ssd/ssd300_coco.py", "-o", "exp.yaml"]) == 1
    assert capsys.readouterr().err.strip() == "error: init: exp.yaml exists; give --force to overwrite it"
    assert main(["init", "ssd/ssd300_coco.py", "-o", "exp.yaml", "--force"]) == 0
    with pytest.raises(ConfigError, match="^--slots"):
        experiment_for_config("ssd/ssd300_coco.py", slots=0)
    bad = tmp_path / "no_batch_4x2.py"
    base = bundled_config_dir() / "ssd/ssd300_coco.py"
    bad.write_text(f"_base_ = '{base}'\ndata = dict(samples_per_gpu=0)\n")
    with pytest.raises(ConfigError, match="data.samples_per_gpu must be a whole number >= 1, got 0"):
        experiment_for_config(str(bad))


def _tiny_config(shapes_dir: Path, path: Path) -> Path:
    """A whole mmdet config file: the zoo's Faster R-CNN with the tiny test model on the shapes data, 2 epochs."""
    cfg = load_config(bundled_config_dir() / "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py")
    cfg = merge_config_file(cfg, CONFIGS / "tiny_faster_rcnn.py")
    apply_overrides(cfg, {**data_overrides(shapes_dir), "runner.max_epochs": 2, "checkpoint_config.interval": 1})
    path.write_text(cfg.pretty_text)
    return path


@pytest.mark.slow
def test_train_a_config_with_cfg_options(shapes_dir: Path, det_local: Path, capsys) -> None:
    """``train CONFIG.py --local`` trains what init writes (one slot here): the config's 2 epochs of
    len(loader) batches, validating and checkpointing every epoch; --cfg-options reach the model and the records."""
    config = _tiny_config(shapes_dir, Path("tiny_faster_rcnn_1xb2_shapes.py").resolve())
    out = det_local / "run"
    options = ["optimizer.lr=0.0123", "lr_config.warmup=None", "data.train.pipeline.2.img_scale=[64,64]"]
    assert main(["train", str(config), "--local", "--out", str(out), "--cfg-options", *options]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    loader_len = 8 // 2  # 8 square training images, 2 per batch, one aspect-ratio group
    assert [v["batches"] for v in metrics["validations"]] == [loader_len, 2 * loader_len]
    assert metrics["cfg_options"] == {"optimizer.lr": 0.0123, "lr_config.warmup": None,
                                      "data.train.pipeline.2.img_scale": [64, 64]}
    assert all(t["lr"] == pytest.approx(0.0123) for t in metrics["training"])
    saved = yaml.safe_load((out / "experiment.yaml").read_text())
    assert saved["searcher"]["max_length"] == {"epochs": 2} and saved["resources"]["slots_per_trial"] == 1
    assert list(saved["hyperparameters"]["override_mmdet_config"])[-3:] == [o.split("=")[0] for o in options]
    newest = checkpoints.newest_complete(out)
    assert "lr=0.0123" in (Path(newest) / checkpoints.CONFIG_FILE).read_text()
    assert "img_scale=(64, 64)" in (Path(newest) / checkpoints.CONFIG_FILE).read_text()  # a tuple, as the config's
