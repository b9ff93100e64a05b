"""Warm starts into real (tiny) mmdet detectors: zoo, local files, load_from, init_cfg backbones, safe loading."""

from __future__ import annotations

import argparse
import io
import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from mmcv.runner import CheckpointLoader
from weights_helpers import FASTER_RCNN, FileServer, buffer_of, build_tiny, sha256, tiny_detector_cfg, zoo_style_path

from model_hub_mmdet.errors import ConfigError, WeightsError
from model_hub_mmdet.mmdet2.checkpoint_schemes import load_from_model_hub_cache
from model_hub_mmdet.weights import extract_state_dict, load_checkpoint_file, warm_start, zoo

HEAD = {f"roi_head.bbox_head.{layer}.{p}" for layer in ("fc_cls", "fc_reg") for p in ("weight", "bias")}


def _state(body: bytes) -> dict[str, torch.Tensor]:
    return torch.load(io.BytesIO(body), weights_only=True)["state_dict"]


def _redirect_zoo(server: FileServer, monkeypatch, tmp_path: Path, body: bytes, config: str = FASTER_RCNN) -> str:
    """Serve ``body`` under a zoo-style URL and point ``config``'s zoo entry at it, the way a mirror would."""
    path = zoo_style_path("faster_rcnn_tiny", body)
    server.add(path, body)
    metafile = tmp_path / "mirror.yml"
    entry = {"Name": "faster_rcnn_tiny", "Config": f"configs/{config}", "Weights": zoo.OPENMMLAB_DOWNLOAD + path}
    metafile.write_text(yaml.safe_dump({"Models": [entry]}))
    monkeypatch.setenv(zoo.ZOO_INDEX_ENV, str(metafile))
    monkeypatch.setenv(zoo.ZOO_URL_ENV, server.base)
    return path


def test_use_pretrained_loads_the_zoo_checkpoint_except_a_different_head(
    file_server: FileServer, monkeypatch, tmp_path: Path, coco_checkpoint: bytes, caplog
):
    path = _redirect_zoo(file_server, monkeypatch, tmp_path, coco_checkpoint)
    cfg = tiny_detector_cfg(num_classes=3)
    model = build_tiny(cfg)
    zoo_state = _state(coco_checkpoint)
    assert not torch.equal(model.state_dict()["backbone.conv1.weight"], zoo_state["backbone.conv1.weight"])

    report = warm_start(model, cfg, {"use_pretrained": True})

    own = model.state_dict()
    assert report["origin"] == "model zoo entry faster_rcnn_tiny"
    assert set(report["mismatched_keys"]) == HEAD  # 81-class head in the checkpoint, 4 in the model
    assert (report["matched"], report["missing"], report["unexpected"]) == (len(own) - 4, 0, 0)
    for key, value in zoo_state.items():
        assert torch.equal(own[key], value) != (key in HEAD), key
    assert "4 tensors skipped because their shapes differ" in caplog.text
    assert "roi_head.bbox_head.fc_cls.weight (81, 64) in checkpoint vs (4, 64) in model" in caplog.text

    warm_start(build_tiny(cfg), cfg, {"use_pretrained": True})
    assert len(file_server.gets(path)) == 1  # the second warm start used the cache


def test_use_pretrained_without_zoo_entry_is_an_error(tmp_path: Path):
    cfg = tiny_detector_cfg()
    own = tmp_path / "my_detector.py"
    cfg.dump(str(own))
    from mmcv import Config

    cfg = Config.fromfile(str(own))
    with pytest.raises(ConfigError, match="my_detector.py has no checkpoint in the MMDetection model zoo"):
        warm_start(build_tiny(cfg), cfg, {"use_pretrained": True})


def test_pretrained_weights_local_path_and_precedence(tmp_path: Path, coco_checkpoint: bytes, caplog):
    caplog.set_level(logging.INFO, logger="model_hub_mmdet")
    context = tmp_path / "context"
    (context / "weights").mkdir(parents=True)
    (context / "weights" / "mine.pth").write_bytes(coco_checkpoint)
    cfg = tiny_detector_cfg(num_classes=80)
    cfg.load_from = "https://download.openmmlab.com/never/fetched-00000000.pth"
    model = build_tiny(cfg)

    report = warm_start(model, cfg, {"pretrained_weights": "weights/mine.pth"}, context_dir=context)

    assert report["origin"] == "hyperparameters.pretrained_weights"
    assert (report["matched"], report["mismatched"]) == (len(model.state_dict()), 0)
    assert "load_from https://download.openmmlab.com/never/fetched-00000000.pth ignored" in caplog.text
    with pytest.raises(ConfigError, match="use_pretrained and hyperparameters.pretrained_weights are both set"):
        warm_start(model, cfg, {"pretrained_weights": "weights/mine.pth", "use_pretrained": True})
    with pytest.raises(WeightsError, match="weights/missing.pth does not exist"):
        warm_start(model, cfg, {"pretrained_weights": "weights/missing.pth"}, context_dir=context)


def test_load_from_in_config_and_nothing_to_load(tmp_path: Path, coco_checkpoint: bytes):
    (tmp_path / "ckpt.pth").write_bytes(coco_checkpoint)
    cfg = tiny_detector_cfg(num_classes=80)
    assert warm_start(build_tiny(cfg), cfg, {}) is None
    cfg.load_from = str(tmp_path / "ckpt.pth")
    report = warm_start(build_tiny(cfg), cfg, {"use_pretrained": False})
    assert report["origin"] == "load_from" and report["matched"] > 0


def test_http_url_with_zoo_hash(file_server: FileServer, monkeypatch, tmp_path: Path, coco_checkpoint: bytes):
    path = zoo_style_path("by_url", coco_checkpoint)
    file_server.add(path, coco_checkpoint)
    cfg = tiny_detector_cfg(num_classes=80)
    report = warm_start(build_tiny(cfg), cfg, {"pretrained_weights": file_server.base + path})
    assert report["matched"] == len(_state(coco_checkpoint))


def test_downloaded_weights_load_only_as_plain_data(file_server: FileServer, tmp_path: Path, caplog):
    model = build_tiny(tiny_detector_cfg())
    body = buffer_of({"state_dict": model.state_dict(), "meta": {"args": argparse.Namespace(lr=0.1)}})
    url = file_server.add("/untrusted.pth", body)
    cfg = tiny_detector_cfg()
    with pytest.raises(WeightsError, match=r"pickled objects a safe load refuses .*download it and set"):
        warm_start(build_tiny(cfg), cfg, {"pretrained_weights": url})
    local = tmp_path / "own.pth"
    local.write_bytes(body)
    report = warm_start(build_tiny(cfg), cfg, {"pretrained_weights": str(local)})
    assert report["matched"] == len(model.state_dict())
    assert "unpickling it in full because it is your own file" in caplog.text


def test_numpy_in_meta_loads_safely(tmp_path: Path):
    import numpy as np

    path = tmp_path / "np.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": {"best_score": np.float64(0.5), "a": np.arange(3)}}, path)
    ckpt = load_checkpoint_file(path, trusted=False)
    assert ckpt["meta"]["best_score"] == 0.5


def test_init_cfg_backbone_goes_through_the_cache(
    file_server: FileServer, monkeypatch, tmp_path: Path, weights_env: Path, coco_checkpoint: bytes
):
    backbone = {k[len("backbone.") :]: v for k, v in _state(coco_checkpoint).items() if k.startswith("backbone.")}
    body = buffer_of({"state_dict": backbone})
    path = f"/pretrain/test/tiny_r18-{sha256(body)[:8]}.pth"
    file_server.add(path, body)
    monkeypatch.setenv(zoo.ZOO_URL_ENV, file_server.base)
    mmcv_home = Path(weights_env.parent / "mmcv_home")
    mmcv_home.mkdir()
    (mmcv_home / "open_mmlab.json").write_text(json.dumps({"test/tiny_r18": zoo.OPENMMLAB_DOWNLOAD + path}))
    cfg = tiny_detector_cfg()
    cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint="open-mmlab://test/tiny_r18")

    model = build_tiny(cfg)  # init_weights() -> mmcv CheckpointLoader -> our scheme loader

    for key, value in backbone.items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    assert file_server.gets(path) == [None]
    assert any(p.name.startswith("tiny_r18-") for p in weights_env.rglob("*.pth"))


def test_remote_schemes_are_routed_to_the_cache():
    for uri in ("torchvision://resnet50", "open-mmlab://x", "https://h/x.pth", "http://h/x", "s3://b/k", "gs://b/k"):
        assert CheckpointLoader._get_checkpoint_loader(uri) is load_from_model_hub_cache, uri


def test_state_dict_formats():
    weights = {"backbone.w": torch.ones(1)}
    ddp = {f"module.{k}": v for k, v in weights.items()}
    assert dict(extract_state_dict({"state_dict": ddp})) == weights
    assert dict(extract_state_dict({"models_state_dict": [ddp], "optimizers_state_dict": [{}]})) == weights
    assert dict(extract_state_dict(weights)) == weights
    with pytest.raises(WeightsError, match="has no model weights"):
        extract_state_dict({"epoch": 3})


def test_checkpoint_of_another_architecture_is_an_error(tmp_path: Path):
    path = tmp_path / "classifier.pth"
    torch.save({"fc.weight": torch.zeros(10, 512)}, path)
    cfg = tiny_detector_cfg()
    with pytest.raises(WeightsError, match="none of its 1 tensors match"):
        warm_start(build_tiny(cfg), cfg, {"pretrained_weights": str(path)})
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="not a"):
        warm_start(build_tiny(cfg), cfg, {"pretrained_weights": str(tmp_path / "text.pth")})
