"""``share_serialized``: a 3.x dataset's serialized records mapped from one node file give the same samples."""

from __future__ import annotations

import contextlib
import io
import pickle
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from model_hub_mmdet.mmdet3.shared_data import share_serialized
from model_hub_mmdet.node_cache import is_mapped

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coco2017 import CLASSES, make_coco2017_like  # noqa: E402


@pytest.fixture(autouse=True)
def node_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "node-cache"
    monkeypatch.setenv("MODEL_HUB_MMDET_NODE_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def coco_cfg(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from mmdet.utils import register_all_modules

    register_all_modules()
    root = tmp_path_factory.mktemp("coco2017")
    ann = make_coco2017_like(root, images=14)
    return dict(type="CocoDataset", data_root=f"{root}/", ann_file=ann.name, data_prefix=dict(img="images/"),
                metainfo=dict(classes=CLASSES), filter_cfg=dict(filter_empty_gt=True, min_size=8),
                pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
                          dict(type="Resize", scale=(64, 64), keep_ratio=True), dict(type="RandomFlip", prob=0.5),
                          dict(type="PackDetInputs")])


def build(cfg: dict[str, Any]) -> Any:
    from mmdet.registry import DATASETS

    with contextlib.redirect_stdout(io.StringIO()):
        return DATASETS.build(cfg)


def sample(dataset: Any, index: int) -> Any:
    np.random.seed(index)
    random.seed(index)
    return dataset[index]


def assert_same(plain: Any, shared: Any) -> None:
    assert len(plain) == len(shared) > 0
    for i in range(len(plain)):
        assert plain.get_data_info(i) == shared.get_data_info(i)
        a, b = sample(plain, i), sample(shared, i)
        assert torch.equal(a["inputs"], b["inputs"])
        ga, gb = a["data_samples"].gt_instances, b["data_samples"].gt_instances
        assert torch.equal(ga.bboxes.tensor, gb.bboxes.tensor) and torch.equal(ga.labels, gb.labels)
        assert np.array_equal(ga.masks.to_ndarray(), gb.masks.to_ndarray())
        assert a["data_samples"].metainfo == b["data_samples"].metainfo


def test_same_samples_from_one_node_file(coco_cfg: dict[str, Any], node_cache: Path) -> None:
    plain, first, second = build(coco_cfg), share_serialized(build(coco_cfg)), share_serialized(build(coco_cfg))
    assert is_mapped(first.data_bytes) and is_mapped(second.data_bytes) and is_mapped(first.data_address)
    assert len(list(node_cache.glob("*.flat"))) == 1  # the second dataset mapped the first one's file
    assert_same(plain, first)
    assert_same(plain, second)
    assert share_serialized(first) is first  # again: nothing to do
    assert_same(plain, pickle.loads(pickle.dumps(first)))  # what a spawned worker gets


def test_wrappers_and_no_serialization(coco_cfg: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    repeat = share_serialized(build(dict(type="RepeatDataset", times=2, dataset=coco_cfg)))
    assert is_mapped(repeat.dataset.data_bytes)
    assert_same(build(dict(type="RepeatDataset", times=2, dataset=coco_cfg)), repeat)
    plain = build(dict(coco_cfg, serialize_data=False))
    assert share_serialized(plain) is plain and isinstance(plain.data_list, list)
    monkeypatch.setenv("MODEL_HUB_MMDET_NODE_CACHE", "off")
    kept = share_serialized(build(coco_cfg))
    assert not is_mapped(kept.data_bytes)
    assert_same(build(coco_cfg), kept)
