"""Rule 5: val/test datasets get ``test_mode=True`` and batched-inference pipelines; ``evaluation`` keys that only
mmdet's EvalHook understands never reach ``dataset.evaluate``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from cfgtest_utils import FASTER_RCNN, shapes_data, walk

from model_hub_mmdet.mmdet2.config import build_mmdet_config, evaluate_kwargs, split_evaluation_cfg
from model_hub_mmdet.mmdet2.config.finalize import EVAL_HOOK_KEYS

HOOK_ONLY = {
    "interval": 2,
    "start": 1,
    "by_epoch": False,
    "save_best": "auto",
    "rule": "greater",
    "greater_keys": ["bbox_mAP"],
    "less_keys": ["loss"],
    "gpu_collect": True,
    "tmpdir": "/tmp/x",
    "out_dir": "/tmp/y",
    "file_client_args": {"backend": "disk"},
    "dynamic_intervals": [(10, 1)],
    "broadcast_bn_buffer": True,
}


def _build(tmp_path: Path, **overrides):
    return build_mmdet_config({"config_file": FASTER_RCNN, "override_mmdet_config": overrides}, context_dir=tmp_path)


def _types(pipeline) -> list[str]:
    return [t for _, t in walk(pipeline) if isinstance(t, str)]


def test_val_and_test_are_in_test_mode_and_batched(tmp_path: Path) -> None:
    cfg = _build(tmp_path)
    assert "test_mode" not in cfg.data.train
    for split in ("val", "test"):
        ds = cfg.data[split]
        assert ds.test_mode is True
        transforms = ds.pipeline[1].transforms  # inside MultiScaleFlipAug
        assert [t.type for t in transforms][-2:] == ["DefaultFormatBundle", "Collect"]  # attribute access works
        assert "ImageToTensor" not in _types(ds.pipeline)
    assert "ImageToTensor" in _types(cfg.test_pipeline)  # only the datasets' pipelines are changed


def test_built_test_dataset_yields_batchable_items(shapes, tmp_path: Path) -> None:
    from mmcv.parallel import DataContainer
    from mmdet.datasets import build_dataset

    cfg = _build(tmp_path, **shapes_data(shapes), **{"data.test.pipeline.1.img_scale": [64, 64]})
    dataset = build_dataset(cfg.data.test)
    assert dataset.test_mode and len(dataset) == 4  # test_mode keeps images without annotations
    item = dataset[0]
    assert isinstance(item["img"][0], DataContainer)  # DefaultFormatBundle, not ImageToTensor's bare tensor
    assert "gt_bboxes" not in item


def test_wrapped_val_datasets(tmp_path: Path) -> None:
    part = {"type": "CocoDataset", "ann_file": "a.json", "img_prefix": "i/", "pipeline": [{"type": "ImageToTensor"}]}
    cfg = _build(
        tmp_path,
        **{
            "data.val": {"_delete_": True, "type": "ConcatDataset", "datasets": [part, part]},
            "data.test": {"_delete_": True, "type": "RepeatDataset", "times": 2, "dataset": part},
        },
    )
    assert "test_mode" not in cfg.data.val and "test_mode" not in cfg.data.test
    assert [d.test_mode for d in cfg.data.val.datasets] == [True, True]
    assert cfg.data.test.dataset.test_mode is True
    assert cfg.data.test.dataset.pipeline[0].type == "DefaultFormatBundle"


def test_a_mix_wrapper_in_val_gets_no_test_mode_and_builds(shapes, tmp_path: Path) -> None:
    from mmdet.datasets import build_dataset

    inner = {
        "type": "CocoDataset",
        "ann_file": str(shapes["val"]),
        "img_prefix": str(shapes["root"] / "val") + "/",
        "classes": ["rectangle", "ellipse", "triangle"],
        "pipeline": [{"type": "LoadImageFromFile"}, {"type": "LoadAnnotations", "with_bbox": True}],
    }
    mix = {"_delete_": True, "type": "MultiImageMixDataset", "dataset": inner, "pipeline": [{"type": "ImageToTensor",
           "keys": ["img"]}]}  # fmt: skip
    cfg = _build(tmp_path, **{"data.val": mix})
    assert "test_mode" not in cfg.data.val and cfg.data.val.dataset.test_mode is True
    dataset = build_dataset(cfg.data.val)  # MultiImageMixDataset takes no test_mode argument
    assert len(dataset) == 4


def test_split_evaluation_cfg_keeps_hook_keys_apart(tmp_path: Path) -> None:
    cfg = _build(tmp_path, evaluation={**HOOK_ONLY, "metric": ["bbox"], "classwise": True})
    metric_kwargs, hook_kwargs = split_evaluation_cfg(cfg.evaluation)
    assert metric_kwargs == {"metric": ["bbox"], "classwise": True}
    assert set(hook_kwargs) == set(HOOK_ONLY) and set(HOOK_ONLY) <= EVAL_HOOK_KEYS
    assert split_evaluation_cfg(None) == ({}, {})


def _perfect_results(dataset) -> list[list[np.ndarray]]:
    """Per image, per class (n, 5) boxes: the ground truth itself with score 1."""
    results = []
    for i in range(len(dataset)):
        ann = dataset.get_ann_info(i)
        per_class = []
        for c in range(len(dataset.CLASSES)):
            boxes = ann["bboxes"][ann["labels"] == c]
            per_class.append(np.hstack([boxes, np.ones((len(boxes), 1), np.float32)]))
        results.append(per_class)
    return results


def test_evaluate_kwargs_on_a_real_coco_dataset(shapes, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from mmdet.datasets import build_dataset

    evaluation = {**HOOK_ONLY, "metric": "bbox", "classwise": False, "not_an_argument": 1}
    cfg = _build(tmp_path, **shapes_data(shapes), evaluation=evaluation)
    dataset = build_dataset(cfg.data.val)
    results = _perfect_results(dataset)
    with pytest.raises(TypeError, match="save_best"):  # what the old integration did
        dataset.evaluate(results, metric="bbox", save_best="auto")
    with caplog.at_level(logging.WARNING, logger="model_hub_mmdet"):
        kwargs = evaluate_kwargs(cfg.evaluation, dataset.evaluate)
    assert kwargs == {"metric": "bbox", "classwise": False}
    assert any("evaluation.not_an_argument is not an argument" in r.getMessage() for r in caplog.records)
    metrics = dataset.evaluate(results, **kwargs)
    assert metrics["bbox_mAP"] == pytest.approx(1.0)


def test_evaluate_kwargs_passes_everything_but_hook_keys_to_var_keyword_functions() -> None:
    def evaluate(results, metric="bbox", **kwargs):
        return kwargs

    kwargs = evaluate_kwargs({**HOOK_ONLY, "metric": "segm", "anything": 1}, evaluate)
    assert kwargs == {"metric": "segm", "anything": 1}
