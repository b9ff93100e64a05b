"""No traceback from bad input with the 3.x generation: random overrides, data sections, image bytes and annotation
files end in success or a one-line :class:`~model_hub_mmdet.errors.UserError`, never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mm3_helpers import MODELS, data_overrides

from model_hub_mmdet.errors import UserError
from model_hub_mmdet.mmdet3.config import build_mmdet_config

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
FEW = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None,
               derandomize=True)

REAL_KEYS = [
    "optim_wrapper.optimizer.lr", "optim_wrapper.optimizer.type", "optim_wrapper.clip_grad", "optim_wrapper._delete_",
    "optim_wrapper.paramwise_cfg.norm_decay_mult", "param_scheduler.0.end", "param_scheduler.1", "param_scheduler",
    "train_cfg.max_epochs", "train_cfg.type", "train_dataloader.batch_size", "train_dataloader.num_workers",
    "train_dataloader.dataset.pipeline", "train_dataloader.dataset.pipeline.2.scale", "train_dataloader.dataset.-1",
    "train_dataloader.dataset.pipeline.100.type", "train_dataloader.dataset.metainfo.classes",
    "val_evaluator.metric", "val_evaluator.ann_file", "model.backbone.widen_factor", "model.bbox_head.num_classes",
    "custom_hooks.0.momentum", "custom_hooks", "default_hooks.checkpoint.interval", "load_from", "randomness.seed",
    "auto_scale_lr.base_batch_size", "custom_imports.imports", "model", "nonexistent.key", "model..backbone", "",
    ".", "filename", "train_dataloader.dataset.pipeline.x",
]
numbers = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20), st.sampled_from(["1e-4", "AdamW"]))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(["type", "_delete_", "lr"]), st.text(max_size=8)),
                                            inner, max_size=4)),
    max_leaves=8,
)
overrides = st.one_of(st.dictionaries(st.one_of(st.sampled_from(REAL_KEYS), st.text(max_size=25)), values,
                                      max_size=4), values)


def _user_error_or_success(call: Any) -> None:
    try:
        call()
    except UserError as err:
        assert str(err).strip() and len(str(err).strip().splitlines()) == 1, repr(err)


@FEW
@given(over=overrides)
def test_random_overrides_end_in_a_config_or_a_user_error(over: Any, shapes_dir: Path) -> None:
    merged = {**data_overrides(shapes_dir), **over} if isinstance(over, dict) else over
    _user_error_or_success(lambda: build_mmdet_config({"config_file": MODELS["rtmdet"],
                                                       "override_mmdet_config": merged}))


@FEW
@given(data=st.one_of(values, st.fixed_dictionaries({"file_client_args": values})))
def test_random_data_sections_end_in_a_config_or_a_user_error(data: Any, shapes_dir: Path) -> None:
    _user_error_or_success(lambda: build_mmdet_config(
        {"config_file": MODELS["rtmdet"], "override_mmdet_config": data_overrides(shapes_dir)}, data))


@FEW
@given(body=st.binary(max_size=300), keep=st.integers(0, 2000))
def test_random_image_bytes_load_or_raise_a_bad_image_error(body: bytes, keep: int, shapes_dir: Path) -> None:
    from mmcv.transforms import LoadImageFromFile

    from model_hub_mmdet.bad_images import BadImageError

    real = (shapes_dir / "train" / "000000.png").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.png"
        path.write_bytes(real[:keep] + body)
        try:
            LoadImageFromFile().transform({"img_path": str(path)})
        except BadImageError as err:
            assert str(path) in str(err) and "\n" not in str(err)


@FEW
@given(doc=st.one_of(values, st.fixed_dictionaries({"images": values, "annotations": values, "categories": values})))
def test_random_annotation_files_load_or_raise_one_data_error(doc: Any) -> None:
    from mmdet.datasets import CocoDataset

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ann.json"
        path.write_text(json.dumps(doc, allow_nan=True))
        _user_error_or_success(lambda: CocoDataset(ann_file=str(path), pipeline=[], lazy_init=False))
