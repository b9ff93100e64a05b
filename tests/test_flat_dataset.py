"""``share_annotations``: the 2.x datasets' annotations in flat shared buffers give the same samples as mmdet's.

Every sample's ``get_ann_info``, ``data_infos`` record and pipeline output (under the same seeds) are compared with
and without flattening, on the tiny COCO-2017-like file, on a slice of the COCO-size file bench/loader_memory.py
generates, and on every dataset type mmdet 2.28 ships (VOC, the middle format, LVIS, ...); the wrappers, the COCO
index API around them, ``evaluate`` and the node cache (one file mapped by two datasets) too.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from coco2017 import CLASSES as COCO2017_CLASSES
from coco2017 import make_coco2017_like
from tiny_datasets import CLASSES, make

from model_hub_mmdet import generation
from model_hub_mmdet.node_cache import FlatList, is_mapped

generation.setup()
from mmcv.parallel import DataContainer  # noqa: E402
from mmdet.core import BitmapMasks, PolygonMasks  # noqa: E402
from mmdet.datasets import build_dataset  # noqa: E402

from model_hub_mmdet.mmdet2.datasets.flat import FlatCOCO, share_annotations  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)


def pipeline(with_mask: bool = False, denorm: bool = False, ignore: bool = True) -> list[dict]:
    keys = ["img", "gt_bboxes", "gt_labels"] + (["gt_bboxes_ignore"] if ignore else []) + (
        ["gt_masks"] if with_mask else [])
    load = dict(type="LoadAnnotations", with_bbox=True, with_mask=with_mask)
    if denorm:
        load["denorm_bbox"] = True
    return [dict(type="LoadImageFromFile"), load, dict(type="Resize", img_scale=(64, 64), keep_ratio=True),
            dict(type="RandomFlip", flip_ratio=0.5), dict(type="Normalize", **NORM), dict(type="Pad", size_divisor=32),
            dict(type="DefaultFormatBundle"), dict(type="Collect", keys=keys)]


@pytest.fixture(autouse=True)
def node_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "node-cache"
    monkeypatch.setenv("MODEL_HUB_MMDET_NODE_CACHE", str(folder))
    return folder


def build(cfg: dict, **default: Any) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return build_dataset(cfg, default or None)


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal values of the types mmdet's datasets and pipelines return (arrays, tensors, DataContainers, masks)."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, DataContainer):
        assert (a.stack, a.cpu_only, a.padding_value, a.pad_dims) == (b.stack, b.cpu_only, b.padding_value,
                                                                        b.pad_dims), where
        assert_same(a.data, b.data, f"{where}.data")
    elif isinstance(a, PolygonMasks):
        assert (a.height, a.width) == (b.height, b.width), where
        assert_same(a.masks, b.masks, f"{where}.masks")
    elif isinstance(a, BitmapMasks):
        assert_same(a.masks, b.masks, f"{where}.masks")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def seeded(dataset: Any, index: int) -> Any:
    np.random.seed(index)
    random.seed(index)
    return dataset[index]


def assert_same_dataset(plain: Any, flat: Any, samples: bool = True, limit: int | None = None) -> None:
    assert len(plain) == len(flat)
    indices = range(len(plain)) if limit is None else np.linspace(0, len(plain) - 1, limit).astype(int).tolist()
    for attr in ("CLASSES", "cat_ids", "img_ids", "cat2label"):
        if hasattr(plain, attr):
            assert getattr(plain, attr) == getattr(flat, attr), attr
    if hasattr(plain, "flag"):
        assert np.array_equal(plain.flag, flat.flag)
    inner = getattr(flat, "dataset", flat)
    if hasattr(inner, "data_infos"):
        assert isinstance(inner.data_infos, FlatList)
    for i in indices:
        if hasattr(plain, "data_infos"):
            assert_same(plain.data_infos[i], flat.data_infos[i], f"data_infos[{i}]")
            assert_same(plain.get_ann_info(i), flat.get_ann_info(i), f"get_ann_info({i})")
            assert_same(plain.get_cat_ids(i), flat.get_cat_ids(i), f"get_cat_ids({i})")
        if samples:
            assert_same(seeded(plain, i), seeded(flat, i), f"dataset[{i}]")


# ======================================================================================== COCO, the tiny file
@pytest.fixture(scope="module")
def coco2017(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("coco2017")
    ann = make_coco2017_like(root, images=14)
    return dict(type="CocoDataset", ann_file=str(ann), img_prefix=f"{root / 'images'}/", classes=COCO2017_CLASSES,
                pipeline=pipeline(with_mask=True))


def test_coco_train_samples_equal(coco2017: dict[str, Any]) -> None:
    plain, flat = build(coco2017), share_annotations(build(coco2017))
    assert isinstance(flat.coco, FlatCOCO)
    assert flat.coco._full_index is None  # a training set lets pycocotools' index go
    assert_same_dataset(plain, flat)
    assert share_annotations(flat) is flat and isinstance(flat.data_infos, FlatList)  # a second call: nothing


def test_coco_index_api_answers_as_pycocotools(coco2017: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    plain, flat = build(coco2017), share_annotations(build(coco2017))
    img_ids = plain.coco.get_img_ids()
    for img in img_ids + [-5, 10**9]:
        for kwargs in ({}, {"iscrowd": 0}, {"iscrowd": 1}, {"cat_ids": [18]}, {"cat_ids": 1},
                       {"area_rng": [0, 100.0]}, {"cat_ids": [1, 90], "iscrowd": 0}):
            ids = plain.coco.get_ann_ids(img_ids=[img], **kwargs)
            assert flat.coco.get_ann_ids(img_ids=[img], **kwargs) == ids, (img, kwargs)
            assert flat.coco.load_anns(ids) == plain.coco.load_anns(ids)
        assert flat.coco.getAnnIds(imgIds=img) == plain.coco.getAnnIds(imgIds=img)
    several = img_ids[:5]
    assert flat.coco.get_ann_ids(img_ids=several) == plain.coco.get_ann_ids(img_ids=several)
    ann_id = plain.coco.get_ann_ids(img_ids=several)[-1]
    assert flat.coco.load_anns(ann_id) == plain.coco.load_anns(ann_id) == flat.coco.loadAnns([ann_id])
    with pytest.raises(KeyError):
        flat.coco.load_anns([123456789])
    # anything else rebuilds the full index from the file, once, and says so
    with caplog.at_level(logging.WARNING, logger="model_hub_mmdet"):
        assert flat.coco.get_ann_ids() == plain.coco.get_ann_ids()
        assert flat.coco.imgs == plain.coco.imgs and flat.coco.cat_img_map == plain.coco.cat_img_map
    assert sum("Rebuilding the pycocotools index" in r.message for r in caplog.records) == 1


def test_coco_validation_keeps_index_and_evaluates_the_same(coco2017: dict[str, Any]) -> None:
    cfg = dict(coco2017, pipeline=[dict(type="LoadImageFromFile"), dict(
        type="MultiScaleFlipAug", img_scale=(64, 64), flip=False, transforms=[
            dict(type="Resize", keep_ratio=True), dict(type="Normalize", **NORM), dict(type="Pad", size_divisor=32),
            dict(type="ImageToTensor", keys=["img"]), dict(type="Collect", keys=["img"])])])
    plain, flat = build(cfg, test_mode=True), share_annotations(build(cfg, test_mode=True))
    assert flat.coco._full_index is not None
    assert_same_dataset(plain, flat)
    # results: each image's ground-truth boxes as detections (score 1), so the metrics are not trivial zeros
    results = []
    for i in range(len(plain)):
        ann = plain.get_ann_info(i)
        per_class = [np.zeros((0, 5), np.float32) for _ in plain.CLASSES]
        for box, label in zip(ann["bboxes"], ann["labels"]):
            per_class[label] = np.vstack([per_class[label], np.append(box, 1.0)[None].astype(np.float32)])
        results.append(per_class)
    with contextlib.redirect_stdout(io.StringIO()):
        expected, got = plain.evaluate(results, metric="bbox"), flat.evaluate(results, metric="bbox")
    assert expected == got and expected["bbox_mAP"] > 0.5


def test_bench_coco_size_file_subset(tmp_path: Path) -> None:
    """The generator of the COCO-size benchmark file (its quirks: crowd RLE, zero-height boxes, 1% empty images),
    at 2,000 images; every sample's annotations, and the pipeline of every 40th."""
    sys.path.insert(0, str(REPO / "bench"))
    from coco_annotations import generate

    ann = tmp_path / "instances.json"
    generate(ann, 2000, 14_540)
    steps = [dict(type="LoadImageFromFile", file_client_args={"backend": "fake"}), *pipeline(with_mask=True)[1:]]
    cfg = dict(type="CocoDataset", ann_file=str(ann), img_prefix=f"{tmp_path}/", pipeline=steps,
               file_client_args={"backend": "fake"})
    plain, flat = build(cfg), share_annotations(build(cfg))
    assert_same_dataset(plain, flat, samples=False)
    assert_same_dataset(plain, flat, limit=50)


def test_wrappers_are_walked(coco2017: dict[str, Any]) -> None:
    for wrapper in (dict(type="RepeatDataset", times=2, dataset=coco2017),
                    dict(type="ClassBalancedDataset", oversample_thr=0.5, dataset=coco2017),
                    dict(type="ConcatDataset", datasets=[coco2017, coco2017])):
        plain, flat = build(wrapper), share_annotations(build(wrapper))
        leaves = flat.datasets if hasattr(flat, "datasets") else [flat.dataset]
        assert all(isinstance(leaf.data_infos, FlatList) for leaf in leaves)
        for i in range(0, len(plain), 3):
            assert_same(seeded(plain, i), seeded(flat, i), f"{wrapper['type']}[{i}]")


def test_node_cache_one_file_for_two_datasets(coco2017: dict[str, Any], node_cache: Path) -> None:
    first, second = share_annotations(build(coco2017)), share_annotations(build(coco2017))
    assert len(list(node_cache.glob("*.flat"))) == 1
    assert is_mapped(first.data_infos.data) and is_mapped(second.coco._anns.data)
    assert_same_dataset(first, second, samples=False)
    # spawned workers get the dataset pickled: the same samples
    copy = pickle.loads(pickle.dumps(second))
    assert_same_dataset(first, copy, samples=False)
    assert copy.coco.get_ann_ids(img_ids=[first.data_infos[0]["id"]]) == first.coco.get_ann_ids(
        img_ids=[first.data_infos[0]["id"]])


def test_without_node_cache(coco2017: dict[str, Any], monkeypatch: pytest.MonkeyPatch, node_cache: Path) -> None:
    monkeypatch.setenv("MODEL_HUB_MMDET_NODE_CACHE", "off")
    plain, flat = build(coco2017), share_annotations(build(coco2017))
    assert not node_cache.exists() and not is_mapped(flat.data_infos.data)
    assert_same_dataset(plain, flat, samples=False)


# ============================================================================ every dataset type mmdet ships
KINDS = {
    "voc": dict(type="VOCDataset", classes=CLASSES),
    "middle": dict(type="CustomDataset", classes=CLASSES),
    "wider_face": dict(type="WIDERFaceDataset", classes=("face",)),
    "cityscapes": dict(type="CityscapesDataset", classes=CLASSES),
    "objects365": dict(type="Objects365V2Dataset", classes=CLASSES),
    "lvis_v1": dict(type="LVISV1Dataset", classes=CLASSES),
    "lvis_v0.5": dict(type="LVISV05Dataset", classes=CLASSES),
    "openimages": dict(type="OpenImagesDataset"),
    "panoptic": dict(type="CocoPanopticDataset"),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_dataset_type(kind: str, tmp_path: Path) -> None:
    p = make(kind, tmp_path)
    cfg = dict(KINDS[kind], ann_file=str(p["ann_file"]), img_prefix=f"{p['img_dir']}/",
               pipeline=pipeline(denorm=kind == "openimages", ignore=kind not in ("middle", "openimages")))
    if kind == "openimages":
        cfg.update(label_file=str(p["label_file"]), hierarchy_file=str(p["hierarchy_file"]),
                   image_level_ann_file=str(p["image_level_ann_file"]), meta_file=str(p["meta_file"]))
    if kind == "panoptic":
        from tiny_datasets import STUFF

        cfg.update(classes=(*CLASSES, STUFF), seg_prefix=f"{p['seg_dir']}/")
    plain, flat = build(cfg), share_annotations(build(cfg))
    assert_same_dataset(plain, flat, samples=kind != "panoptic")  # panoptic's pipeline needs its own loader steps


def test_non_integer_annotation_ids_keep_the_index(coco2017: dict[str, Any], tmp_path: Path) -> None:
    """pycocotools takes any JSON id: with string annotation ids only ``data_infos`` becomes flat."""
    import json

    doc = json.loads(Path(coco2017["ann_file"]).read_text())
    for ann in doc["annotations"]:
        ann["id"] = f"a{ann['id']}"
    ann_file = tmp_path / "string_ids.json"
    ann_file.write_text(json.dumps(doc))
    cfg = dict(coco2017, ann_file=str(ann_file))
    plain, flat = build(cfg), share_annotations(build(cfg))
    assert not isinstance(flat.coco, FlatCOCO) and isinstance(flat.data_infos, FlatList)
    assert_same_dataset(plain, flat)
