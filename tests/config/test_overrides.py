"""Rule 3: dotted ``override_mmdet_config`` keys, list indices, ``_delete_``, errors and YAML type coercion."""

from __future__ import annotations

import copy

import pytest
import yaml
from cfgtest_utils import FASTER_RCNN, shapes_data

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.mmdet2.config import (
    apply_overrides,
    build_mmdet_config,
    coerce_like,
    load_config,
    resolve_config_path,
)


@pytest.fixture(scope="module")
def base_cfg():
    return load_config(resolve_config_path(FASTER_RCNN))


@pytest.fixture
def cfg(base_cfg):
    return copy.deepcopy(base_cfg)


def _yaml(text: str) -> dict:
    """Overrides exactly as Determined hands them over: parsed from the experiment YAML."""
    return yaml.safe_load(text)


def test_values_of_every_yaml_type(cfg) -> None:
    apply_overrides(
        cfg,
        _yaml(
            """
            runner.max_epochs: 3
            optimizer.lr: 0.01
            optimizer.type: AdamW
            model.backbone.norm_eval: false
            load_from: null
            workflow: [[train, 1], [val, 1]]
            model.test_cfg.rcnn: {score_thr: 0.3, max_per_img: 10}
            """
        ),
    )
    assert cfg.runner.max_epochs == 3 and cfg.optimizer.lr == 0.01 and cfg.optimizer.type == "AdamW"
    assert cfg.model.backbone.norm_eval is False and cfg.load_from is None
    assert cfg.workflow == [("train", 1), ("val", 1)]  # the default [('train', 1)] holds tuples
    # A dict merges into the existing dict: nms is kept.
    assert cfg.model.test_cfg.rcnn.to_dict() == {
        "score_thr": 0.3,
        "nms": {"type": "nms", "iou_threshold": 0.5},
        "max_per_img": 10,
    }


def test_yaml_strings_and_ints_take_the_config_numeric_type(cfg) -> None:
    overrides = _yaml("optimizer.lr: 1e-4\noptimizer.momentum: 1\nrunner.max_epochs: '7'\noptimizer.weight_decay: 0")
    assert overrides["optimizer.lr"] == "1e-4"  # PyYAML reads 1e-4 as a string
    apply_overrides(cfg, overrides)
    assert cfg.optimizer.lr == 0.0001 and isinstance(cfg.optimizer.lr, float)
    assert cfg.optimizer.momentum == 1.0 and isinstance(cfg.optimizer.momentum, float)
    assert cfg.optimizer.weight_decay == 0.0 and isinstance(cfg.optimizer.weight_decay, float)
    assert cfg.runner.max_epochs == 7 and isinstance(cfg.runner.max_epochs, int)


def test_ambiguous_values_keep_their_yaml_type(cfg) -> None:
    apply_overrides(cfg, {"optimizer.lr": "auto", "runner.max_epochs": 2.5, "model.backbone.norm_eval": "yes"})
    assert cfg.optimizer.lr == "auto" and cfg.runner.max_epochs == 2.5 and cfg.model.backbone.norm_eval == "yes"
    apply_overrides(cfg, {"optimizer.momentum": True})
    assert cfg.optimizer.momentum is True


def test_new_leaf_under_an_existing_dict_is_allowed(cfg) -> None:
    written = apply_overrides(cfg, {"optimizer.nesterov": True, "custom_setting": {"a": [1, 2]}})
    assert cfg.optimizer.nesterov is True and cfg.custom_setting.a == [1, 2]
    assert written == {("optimizer", "nesterov"), ("custom_setting",), ("custom_setting", "a"),
                       ("custom_setting", "a", "0"), ("custom_setting", "a", "1")}  # fmt: skip


def test_numeric_segments_index_lists_and_lists_become_tuples(cfg) -> None:
    apply_overrides(cfg, _yaml("data.train.pipeline.2.img_scale: [640, 480]\ndata.test.pipeline.-1.img_scale: [3, 2]"))
    assert cfg.data.train.pipeline[2].type == "Resize"
    assert cfg.data.train.pipeline[2].img_scale == (640, 480)
    assert cfg.data.test.pipeline[1].img_scale == (3, 2)  # MultiScaleFlipAug, index -1


def test_several_scales_replacing_one_become_a_list_of_tuples(cfg) -> None:
    apply_overrides(cfg, _yaml("data.train.pipeline.2.img_scale: [[1333, 640], [1333, 800]]"))
    assert cfg.data.train.pipeline[2].img_scale == [(1333, 640), (1333, 800)]
    apply_overrides(cfg, _yaml("data.train.pipeline.2.img_scale: [1000, 600]"))  # and back to one scale
    assert cfg.data.train.pipeline[2].img_scale == (1000, 600)


def test_a_replaced_step_or_pipeline_keeps_tuples_by_step_type(cfg) -> None:
    apply_overrides(cfg, _yaml("data.train.pipeline.2: {type: Resize, img_scale: [96, 64], keep_ratio: false}"))
    assert cfg.data.train.pipeline[2].to_dict() == {"type": "Resize", "img_scale": (96, 64), "keep_ratio": False}
    apply_overrides(
        cfg,
        _yaml(
            """
            data.train.pipeline:
              - {type: LoadImageFromFile}
              - {type: LoadAnnotations, with_bbox: true}
              - {type: RandomFlip, flip_ratio: 0.5}
              - {type: Resize, img_scale: [128, 96], keep_ratio: true}
            """
        ),
    )
    assert cfg.data.train.pipeline[3].img_scale == (128, 96)
    assert cfg.data.train.pipeline[3].type == "Resize" and cfg.data.train.pipeline[2].flip_ratio == 0.5


def test_overridden_scale_builds_and_loads_with_mmdet(shapes, tmp_path) -> None:
    """The point of the coercion: mmdet's Resize asserts that img_scale is a tuple (a YAML list fails)."""
    from mmdet.datasets import build_dataset

    scale = {"data.train.pipeline.2.img_scale": [96, 64], "data.train.pipeline.2.keep_ratio": False}
    overrides = {**shapes_data(shapes), **scale}
    cfg = build_mmdet_config({"config_file": FASTER_RCNN, "override_mmdet_config": overrides}, context_dir=tmp_path)
    dataset = build_dataset(cfg.data.train)
    assert len(dataset) == 8 and list(dataset.CLASSES) == ["rectangle", "ellipse", "triangle"]
    item = dataset[0]
    assert tuple(item["img"].data.shape) == (3, 64, 96)  # (C, H, W) after Resize to (w=96, h=64), Pad to 32
    assert item["img_metas"].data["img_shape"] == (64, 96, 3)


def test_dotted_delete_then_new_keys(cfg) -> None:
    overrides = _yaml("optimizer_config.grad_clip.max_norm: 35\noptimizer_config._delete_: true\n")  # order-free
    apply_overrides(cfg, overrides)
    assert cfg.optimizer_config.to_dict() == {"grad_clip": {"max_norm": 35}}


def test_delete_in_a_dict_value_replaces_at_any_depth(cfg) -> None:
    apply_overrides(cfg, {"optimizer_config": {"_delete_": True, "grad_clip": {"max_norm": 35, "norm_type": 2}}})
    assert cfg.optimizer_config.to_dict() == {"grad_clip": {"max_norm": 35, "norm_type": 2}}
    apply_overrides(cfg, {"model.roi_head": {"bbox_head": {"_delete_": True, "type": "X", "num_classes": 3}}})
    assert cfg.model.roi_head.bbox_head.to_dict() == {"type": "X", "num_classes": 3}
    assert cfg.model.roi_head.type == "StandardRoIHead"


def test_delete_a_list_element_then_rebuild_it_keeps_tuples(cfg) -> None:
    apply_overrides(
        cfg,
        {"data.train.pipeline.2._delete_": True, "data.train.pipeline.2.type": "Resize",
         "data.train.pipeline.2.img_scale": [640, 480]},
    )  # fmt: skip
    assert cfg.data.train.pipeline[2].to_dict() == {"type": "Resize", "img_scale": (640, 480)}


def test_delete_false_does_nothing(cfg, base_cfg) -> None:
    apply_overrides(cfg, {"optimizer._delete_": False})
    assert cfg.optimizer == base_cfg.optimizer


def test_digit_keys_in_a_dict_value_change_list_elements(cfg) -> None:
    apply_overrides(cfg, _yaml("data.train: {pipeline: {'2': {img_scale: [500, 300]}}}"))
    assert cfg.data.train.pipeline[2].to_dict() == {"type": "Resize", "img_scale": (500, 300), "keep_ratio": True}
    assert len(cfg.data.train.pipeline) == 8


def test_overridden_dicts_support_attribute_access(cfg) -> None:
    apply_overrides(cfg, _yaml("data.train.pipeline: [{type: LoadImageFromFile, to_float32: true}]"))
    assert cfg.data.train.pipeline[0].to_float32 is True


def test_the_callers_overrides_are_not_modified(tmp_path) -> None:
    overrides = {"model.roi_head": {"bbox_head": {"_delete_": True, "type": "X"}}, "optimizer._delete_": True}
    before = copy.deepcopy(overrides)
    hparams = {"config_file": FASTER_RCNN, "override_mmdet_config": overrides}
    first = build_mmdet_config(hparams, context_dir=tmp_path)
    second = build_mmdet_config(hparams, context_dir=tmp_path)
    assert overrides == before
    assert first._cfg_dict.to_dict() == second._cfg_dict.to_dict()
    assert first.model.roi_head.bbox_head.to_dict() == {"type": "X"}


# ------------------------------------------------------------------------------------------------------ errors
def _error(cfg, overrides) -> str:
    with pytest.raises(ConfigError) as err:
        apply_overrides(cfg, overrides)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_parent_names_the_key_and_the_key_at_its_right_place(cfg) -> None:
    msg = _error(cfg, {"model.bbox_head.num_classes": 3})
    assert msg.startswith("override_mmdet_config.model.bbox_head.num_classes: model.bbox_head does not exist")
    assert "closest: " in msg and "model.roi_head.bbox_head" in msg


def test_missing_parent_suggests_close_spellings(cfg) -> None:
    msg = _error(cfg, {"optimiser.lr": 0.1})
    assert msg == (
        "override_mmdet_config.optimiser.lr: optimiser does not exist in the config;"
        " closest: optimizer, optimizer_config"
    )
    msg = _error(cfg, {"model.roi_head.bbox_haed.num_classes": 3})
    assert "closest: model.roi_head.bbox_head" in msg


def test_missing_parent_without_a_close_sibling_is_created_as_mmcv_does(cfg, caplog) -> None:
    """Never stricter than mmcv: its Config.merge_from_dict creates missing intermediate dicts (issue 29)."""
    from mmcv import Config

    reference = copy.deepcopy(cfg)
    reference.merge_from_dict({"optimizer_config.zzzz.qqq": 1, "optimizer.paramwise_cfg.norm_decay_mult": 0.0})
    with caplog.at_level("INFO", logger="model_hub_mmdet"):
        apply_overrides(cfg, {"optimizer_config.zzzz.qqq": 1, "optimizer.paramwise_cfg.norm_decay_mult": 0.0})
    assert isinstance(reference, Config) and cfg._cfg_dict.to_dict() == reference._cfg_dict.to_dict()
    assert cfg.optimizer.paramwise_cfg.norm_decay_mult == 0.0 and cfg.optimizer_config.zzzz.qqq == 1
    lines = [r.getMessage() for r in caplog.records if "is new" in r.getMessage()]
    assert lines == [
        "override_mmdet_config.optimizer_config.zzzz.qqq: optimizer_config.zzzz is new (the config has no such key);"
        " created as mmcv's merge_from_dict creates it",
        "override_mmdet_config.optimizer.paramwise_cfg.norm_decay_mult: optimizer.paramwise_cfg is new (the config"
        " has no such key); created as mmcv's merge_from_dict creates it",
    ]


def test_a_new_leaf_is_named_once_and_a_known_key_not_at_all(cfg, caplog) -> None:
    with caplog.at_level("INFO", logger="model_hub_mmdet"):
        apply_overrides(copy.deepcopy(cfg), {"optimizer.dampening": 0.1}, announce=False)  # a scratch trial (check)
        apply_overrides(cfg, {"optimizer.lr": 0.1, "optimizer.nesterov": True, "data.train.pipeline.2.keep_ratio": 0})
    assert [r.getMessage() for r in caplog.records if "is new" in r.getMessage()] == [
        "override_mmdet_config.optimizer.nesterov: optimizer.nesterov is new (the config has no such key); created as"
        " mmcv's merge_from_dict creates it"
    ]


def test_a_created_paramwise_cfg_reaches_mmcvs_optimizer(cfg) -> None:
    """The created dict is what mmcv's optimizer constructor reads: no weight decay on the norm layers."""
    import torch
    from mmcv.runner import build_optimizer

    apply_overrides(cfg, {"optimizer.paramwise_cfg.norm_decay_mult": 0.0})
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    groups = build_optimizer(model, cfg.optimizer).param_groups
    assert [g["weight_decay"] for g in groups] == [0.0001, 0.0001, 0.0, 0.0]  # conv w, b; bn w, b


def test_a_typo_of_a_missing_parent_is_still_refused_with_a_suggestion(cfg, caplog) -> None:
    with caplog.at_level("INFO", logger="model_hub_mmdet"):
        msg = _error(cfg, {"optimizer_config.grad_clp.max_norm": 1})
    assert msg == (
        "override_mmdet_config.optimizer_config.grad_clp.max_norm: optimizer_config.grad_clp does not exist in the"
        " config; closest: optimizer_config.grad_clip"
    )
    assert not [r for r in caplog.records if "is new" in r.getMessage()]


def test_out_of_range_index_names_the_length(cfg) -> None:
    msg = _error(cfg, {"data.train.pipeline.12.img_scale": [1, 2]})
    assert msg == (
        "override_mmdet_config.data.train.pipeline.12.img_scale: index 12 out of range for data.train.pipeline"
        " (a list of length 8)"
    )
    assert "a list of length 8" in _error(cfg, {"data.train.pipeline.8": {}})
    assert "a list of length 8" in _error(cfg, {"data.train.pipeline.-9._delete_": True})
    assert "a list of length 8" in _error(cfg, {"data.train": {"pipeline": {"9": {"a": 1}}}})


def test_non_numeric_segment_into_a_list(cfg) -> None:
    msg = _error(cfg, {"data.train.pipeline.resize.img_scale": [1, 2]})
    assert "data.train.pipeline is a list; use a numeric index, not 'resize'" in msg


def test_stepping_into_a_scalar(cfg) -> None:
    msg = _error(cfg, {"optimizer.lr.value": 1})
    assert msg.startswith("override_mmdet_config.optimizer.lr.value: optimizer.lr is float (0.02), not a dict")
    assert "optimizer.lr._delete_: true" in msg


@pytest.mark.parametrize("key", ["", "a..b", ".a", 3])
def test_malformed_keys(cfg, key) -> None:
    assert "is not a dotted path like 'optimizer.lr'" in _error(cfg, {key: 1})


def test_reserved_top_level_key(cfg) -> None:
    assert "mmcv reserves the top-level key 'filename'" in _error(cfg, {"filename": "x"})


def test_bare_delete_and_non_mapping_overrides(cfg) -> None:
    assert "_delete_ needs a key" in _error(cfg, {"_delete_": True})
    assert "must be a mapping of dotted keys" in _error(cfg, ["optimizer.lr"])


def test_error_through_build_mmdet_config(tmp_path) -> None:
    hparams = {"config_file": FASTER_RCNN, "override_mmdet_config": {"optimiser.lr": 1}}
    with pytest.raises(ConfigError, match=r"^override_mmdet_config\.optimiser\.lr: .*closest: optimizer, "):
        build_mmdet_config(hparams, context_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ coerce_like
@pytest.mark.parametrize(
    "value, existing, expected",
    [
        ([1, 2], (3, 4), (1, 2)),
        ([[1, 2], [3, 4]], [(5, 6)], [(1, 2), (3, 4)]),  # extra elements follow the first
        ([1, 2], [(5, 6), (7, 8)], (1, 2)),
        ("0.5", 1.0, 0.5),
        ("x", 1.0, "x"),
        ("3", 1, 3),
        (3, 1.0, 3.0),
        (True, 1.0, True),
        ([1, 2], None, [1, 2]),
        (None, (1, 2), None),
        ({"type": "A", "s": [1, 2]}, {"type": "A", "s": (0, 0)}, {"type": "A", "s": (1, 2)}),
        ({"type": "B", "s": [1, 2]}, {"type": "A", "s": (0, 0)}, {"type": "B", "s": [1, 2]}),
    ],
)
def test_coerce_like(value, existing, expected) -> None:
    got = coerce_like(value, existing)
    assert got == expected and type(got) is type(expected)
