"""Rule 2: ``merge_config`` is merged over the base config with MMDetection's rules.

Dicts merge key by key; ``_delete_=True`` replaces the base's dict; lists (pipelines, scales, steps) REPLACE the
base's list whole: they are never merged element by element.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cfgtest_utils import FASTER_RCNN

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.mmdet2.config import build_mmdet_config, load_config, merge_config_file, resolve_config_path


def _build(tmp_path: Path, merge: str, **hparams) -> object:
    return build_mmdet_config({"config_file": FASTER_RCNN, "merge_config": merge, **hparams}, context_dir=tmp_path)


def test_dicts_merge_key_by_key(write_config, tmp_path: Path) -> None:
    write_config("merge.py", "optimizer = dict(lr=0.005)\nmodel = dict(roi_head=dict(bbox_head=dict(num_classes=3)))\n")
    cfg = _build(tmp_path, "merge.py")
    assert cfg.optimizer.to_dict() == {"type": "SGD", "lr": 0.005, "momentum": 0.9, "weight_decay": 0.0001}
    assert cfg.model.roi_head.bbox_head.num_classes == 3
    assert cfg.model.roi_head.bbox_head.type == "Shared2FCBBoxHead"  # siblings kept
    assert cfg.model.rpn_head.type == "RPNHead"


def test_delete_replaces_the_base_dict(write_config, tmp_path: Path) -> None:
    write_config("merge.py", "optimizer_config = dict(_delete_=True, grad_clip=dict(max_norm=35, norm_type=2))\n")
    base = load_config(resolve_config_path(FASTER_RCNN))
    assert base.optimizer_config.to_dict() == {"grad_clip": None}
    cfg = _build(tmp_path, "merge.py")
    assert cfg.optimizer_config.to_dict() == {"grad_clip": {"max_norm": 35, "norm_type": 2}}


def test_delete_of_a_key_the_base_lacks_leaves_no_delete_key(write_config, tmp_path: Path) -> None:
    write_config("merge.py", "custom_hooks = dict(_delete_=True, a=dict(_delete_=True, b=1))\n")
    cfg = _build(tmp_path, "merge.py")
    assert cfg.custom_hooks.to_dict() == {"a": {"b": 1}}


def test_lists_replace_whole(write_config, tmp_path: Path) -> None:
    write_config(
        "merge.py",
        """
        data = dict(train=dict(pipeline=[dict(type='LoadImageFromFile')]))
        lr_config = dict(step=[5])
        """,
    )
    base = load_config(resolve_config_path(FASTER_RCNN))
    assert len(base.data.train.pipeline) == 8 and base.lr_config.step == [8, 11]
    cfg = _build(tmp_path, "merge.py")
    assert [s.type for s in cfg.data.train.pipeline] == ["LoadImageFromFile"]
    assert cfg.lr_config.step == [5]
    assert cfg.lr_config.warmup == "linear"  # the dict around the list still merged
    assert cfg.data.train.ann_file == base.data.train.ann_file


def test_merge_path_absolute_or_relative_to_context(write_config, tmp_path: Path) -> None:
    path = write_config("sub/merge.py", "optimizer = dict(lr=0.001)\n")
    assert _build(tmp_path, "sub/merge.py").optimizer.lr == 0.001
    assert _build(tmp_path / "elsewhere", str(path)).optimizer.lr == 0.001


def test_merge_file_may_itself_inherit(write_config, tmp_path: Path) -> None:
    write_config("common.py", "optimizer = dict(lr=0.003)\n")
    write_config("merge.py", "_base_ = './common.py'\noptimizer = dict(momentum=0.5)\n")
    cfg = _build(tmp_path, "merge.py")
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.type) == (0.003, 0.5, "SGD")


def test_overrides_apply_after_merge(write_config, tmp_path: Path) -> None:
    write_config("merge.py", "optimizer = dict(lr=0.005, momentum=0.5)\n")
    cfg = _build(tmp_path, "merge.py", override_mmdet_config={"optimizer.lr": 0.001})
    assert (cfg.optimizer.lr, cfg.optimizer.momentum) == (0.001, 0.5)


def test_merged_text_names_both_files(write_config, tmp_path: Path) -> None:
    path = write_config("merge.py", "optimizer = dict(lr=0.005)\n")
    cfg = _build(tmp_path, "merge.py")
    assert f"# merged from {path.resolve()}" in cfg.text
    assert cfg.filename.endswith(FASTER_RCNN)


def test_dict_over_a_non_dict_is_an_error_naming_the_file(write_config, tmp_path: Path) -> None:
    path = write_config("merge.py", "model = dict(backbone=dict(depth=dict(a=1)))\n")
    with pytest.raises(ConfigError) as err:
        _build(tmp_path, "merge.py")
    msg = str(err.value)
    assert msg.startswith(f"merge_config {path.resolve()}: depth=") and "_delete_=True" in msg
    assert "\n" not in msg


def test_merge_config_load_errors_say_merge_config(write_config, tmp_path: Path) -> None:
    write_config("merge.py", "optimizer = dict(lr=\n")
    with pytest.raises(ConfigError, match=r"^merge_config .*merge\.py: syntax error at line 1"):
        _build(tmp_path, "merge.py")


def test_merge_config_file_does_not_modify_its_input(write_config) -> None:
    base = load_config(resolve_config_path(FASTER_RCNN))
    before = base._cfg_dict.to_dict()
    merged = merge_config_file(base, write_config("m.py", "model = dict(backbone=dict(depth=101))\n"))
    assert merged.model.backbone.depth == 101
    assert base._cfg_dict.to_dict() == before
