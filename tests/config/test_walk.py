"""The config walkers: every dict with its path, key paths in depth-first order, datasets through wrappers."""

from __future__ import annotations

from cfgtest_utils import FASTER_RCNN

from model_hub_mmdet.mmdet2.config import build_mmdet_config
from model_hub_mmdet.mmdet2.config.walk import annotated_dataset, dataset_configs, dicts, key_paths

TREE = {
    "a": {"b": 1, "c": [{"d": 2}, 3, ({"e": 4},)]},
    "f": 5,
}


def test_dicts_lists_every_dict_with_its_path_parents_first():
    assert [p for p, _ in dicts(TREE)] == [(), ("a",), ("a", "c", "0"), ("a", "c", "2", "0")]
    assert dict(dicts(TREE))[("a", "c", "2", "0")] == {"e": 4}
    assert list(dicts([1, "x"])) == []


def test_key_paths_are_depth_first_and_bounded():
    assert list(key_paths(TREE)) == [
        ("a",), ("a", "b"), ("a", "c"), ("a", "c", "0", "d"), ("a", "c", "2", "0", "e"), ("f",)
    ]
    assert list(key_paths(TREE, max_depth=3)) == [("a",), ("a", "b"), ("a", "c"), ("f",)]
    deep: dict = {}
    node = deep
    for _ in range(12):
        node["k"] = {}
        node = node["k"]
    assert max(len(p) for p in key_paths(deep)) == 10


def test_dataset_configs_follow_every_wrapper():
    coco = {"type": "CocoDataset", "ann_file": "a.json", "classes": ("x",)}
    voc = {"type": "VOCDataset", "ann_file": "b.txt"}
    train = [{"type": "RepeatDataset", "times": 2, "dataset": {"type": "ConcatDataset", "datasets": [coco, voc]}},
             {"type": "CocoDataset", "ann_file": "c.json"}]
    assert [d["type"] for d in dataset_configs(train)] == [
        "RepeatDataset", "ConcatDataset", "CocoDataset", "VOCDataset", "CocoDataset"
    ]
    assert annotated_dataset(train[0]) is coco
    assert annotated_dataset({"type": "MultiImageMixDataset", "dataset": {"type": "X"}}) == {"type": "X"}


def test_a_real_config_walks_to_its_loading_steps_and_datasets():
    cfg = build_mmdet_config({"config_file": FASTER_RCNN})
    steps = [p for p, d in dicts(cfg._cfg_dict) if d.get("type") == "LoadImageFromFile"]
    assert ("data", "train", "pipeline", "0") in steps and ("data", "test", "pipeline", "0") in steps
    assert [d["type"] for d in dataset_configs(cfg.data.val)] == ["CocoDataset"]
    assert ("optimizer", "lr") in set(key_paths(cfg._cfg_dict))
