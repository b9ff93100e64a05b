"""Rule 4: ``data.file_client_args`` reaches every image/annotation loading step and annotation-reading dataset,
through wrapper datasets, while overrides can still change it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cfgtest_utils import FASTER_RCNN, LOADING_TYPES, loading_steps_anywhere, shapes_data, walk
from mmcv import FileClient
from mmcv.fileio.file_client import BaseStorageBackend

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.mmdet2.config import build_mmdet_config, substitute_file_client_args

S3 = {"backend": "s3", "bucket_name": "b"}

WRAPPED = [
    ("pascal_voc/faster_rcnn_r50_fpn_1x_voc0712.py", "RepeatDataset"),
    ("lvis/mask_rcnn_r50_fpn_sample1e-3_mstrain_1x_lvis_v1.py", "ClassBalancedDataset"),
    ("yolox/yolox_tiny_8x8_300e_coco.py", "MultiImageMixDataset"),
    ("ssd/ssd300_coco.py", "RepeatDataset"),
    ("panoptic_fpn/panoptic_fpn_r50_fpn_1x_coco.py", "CocoPanopticDataset"),
    (FASTER_RCNN, "CocoDataset"),
]


def _build(config_file: str, tmp_path: Path, file_client_args=S3, **overrides):
    hparams = {"config_file": config_file, "override_mmdet_config": overrides}
    return build_mmdet_config(hparams, {"file_client_args": file_client_args}, context_dir=tmp_path)


def _assert_everywhere(cfg, expected: dict, skip: tuple = ()) -> int:
    """Checks every loading step and every ``ann_file`` dataset (found by an independent walk); returns how many."""
    steps = loading_steps_anywhere(cfg)
    datasets = {p: v for p, v in walk(cfg._cfg_dict) if isinstance(v, dict) and "ann_file" in v}
    for path, node in {**steps, **datasets}.items():
        if path not in skip:
            assert node.get("file_client_args") == expected, ".".join(path)
    return len(steps) + len(datasets)


@pytest.mark.parametrize("config_file, train_type", WRAPPED)
def test_every_loading_step_and_dataset_through_wrappers(config_file: str, train_type: str, tmp_path: Path) -> None:
    cfg = _build(config_file, tmp_path)
    assert cfg.data.train.type == train_type
    count = _assert_everywhere(cfg, S3)
    # train: image + annotations (+ dataset), val/test: image (+ dataset); nested inside the wrapper too
    train_steps = [p for p in loading_steps_anywhere(cfg) if p[:2] == ("data", "train")]
    assert len(train_steps) >= 2 and count >= 7
    if train_type != "CocoDataset" and train_type != "CocoPanopticDataset":
        assert all("dataset" in p for p in train_steps)


def test_panoptic_annotations_step_is_substituted(tmp_path: Path) -> None:
    cfg = _build("panoptic_fpn/panoptic_fpn_r50_fpn_1x_coco.py", tmp_path)
    (step,) = [s for s in cfg.data.train.pipeline if s.type == "LoadPanopticAnnotations"]
    assert step.file_client_args == S3


def test_concat_and_list_datasets(write_config, tmp_path: Path) -> None:
    write_config(
        "concat.py",
        f"""
        _base_ = '{Path(FASTER_RCNN).name}'
        """,
    )
    load = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True)]
    part = dict(type="CocoDataset", ann_file="a.json", img_prefix="i/", pipeline=load)
    overrides = {
        "data.train": {"_delete_": True, "type": "ConcatDataset", "datasets": [part, part]},
        "data.val": [part, part],  # a list means "concatenate" to mmdet's build_dataset
    }
    cfg = _build(FASTER_RCNN, tmp_path, **overrides)
    assert _assert_everywhere(cfg, S3) >= 10
    assert cfg.data.train.datasets[1].pipeline[1].file_client_args == S3
    assert cfg.data.val[1].pipeline[0].file_client_args == S3 and cfg.data.val[1].test_mode is True


def test_top_level_copies_are_kept_consistent_for_the_dump(tmp_path: Path) -> None:
    cfg = _build("yolox/yolox_tiny_8x8_300e_coco.py", tmp_path)
    assert cfg.train_dataset.dataset.pipeline[0].file_client_args == S3
    assert cfg.test_pipeline[0].file_client_args == S3


def test_an_override_of_the_args_wins(tmp_path: Path) -> None:
    disk = {"backend": "disk"}
    cfg = _build(FASTER_RCNN, tmp_path, **{"data.train.pipeline.0.file_client_args": disk})
    assert cfg.data.train.pipeline[0].file_client_args == disk
    assert _assert_everywhere(cfg, S3, skip={("data", "train", "pipeline", "0")}) > 5

    cfg = _build(FASTER_RCNN, tmp_path, **{"data.val.pipeline.0.file_client_args.bucket_name": "other"})
    assert cfg.data.val.pipeline[0].file_client_args.to_dict() == {"backend": "s3", "bucket_name": "other"}
    assert cfg.data.test.pipeline[0].file_client_args == S3


def test_an_overridden_step_keeps_its_own_args_but_a_step_without_args_gets_them(tmp_path: Path) -> None:
    own = {"type": "LoadImageFromFile", "file_client_args": {"backend": "disk"}}
    plain = {"type": "LoadAnnotations", "with_bbox": True}
    cfg = _build(FASTER_RCNN, tmp_path, **{"data.train.pipeline": [own, plain]})
    assert cfg.data.train.pipeline[0].file_client_args == {"backend": "disk"}
    assert cfg.data.train.pipeline[1].file_client_args == S3


def test_no_file_client_args_changes_nothing(tmp_path: Path) -> None:
    for args in (None, {}):
        cfg = build_mmdet_config({"config_file": FASTER_RCNN}, {"file_client_args": args}, context_dir=tmp_path)
        assert not any("file_client_args" in step for step in loading_steps_anywhere(cfg).values())
    cfg = build_mmdet_config({"config_file": FASTER_RCNN}, context_dir=tmp_path)
    assert all(step.get("type") in LOADING_TYPES for step in loading_steps_anywhere(cfg).values())


def test_each_node_gets_its_own_copy(tmp_path: Path) -> None:
    cfg = _build(FASTER_RCNN, tmp_path)
    cfg.data.train.pipeline[0].file_client_args.bucket_name = "changed"
    assert cfg.data.val.pipeline[0].file_client_args.bucket_name == "b"
    assert substitute_file_client_args(cfg, S3) == len(loading_steps_anywhere(cfg)) + 3


@pytest.mark.parametrize(
    "args, message",
    [
        ({"bucket_name": "b", "aws_secret_access_key": "hunter2"}, r"must be a mapping with a 'backend' key"),
        ("s3", r"got 's3'"),
    ],
)
def test_bad_file_client_args(tmp_path: Path, args, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        _build(FASTER_RCNN, tmp_path, file_client_args=args)
    assert "hunter2" not in str(err.value)  # an error message never shows a credential


def test_data_section_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data section must be a mapping, got list"):
        build_mmdet_config({"config_file": FASTER_RCNN}, ["file_client_args"], context_dir=tmp_path)


# ------------------------------------------------------------------------------- end to end through mmdet
class RecordingDiskBackend(BaseStorageBackend):
    """Reads local files and records each path asked for, so the test sees which reads went through it."""

    reads: list[str] = []

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def get(self, filepath: str) -> bytes:
        self.reads.append(str(filepath))
        return (self.root / filepath).read_bytes()

    def get_text(self, filepath: str, encoding: str = "utf-8") -> str:
        return self.get(filepath).decode(encoding)

    @contextlib.contextmanager
    def get_local_path(self, filepath: str) -> Iterator[str]:
        self.reads.append(str(filepath))
        yield str(self.root / filepath)


def test_mmdet_reads_annotations_and_images_through_the_backend(shapes, tmp_path: Path) -> None:
    from mmdet.datasets import build_dataset

    FileClient.register_backend("cfgtest_recording", RecordingDiskBackend, force=True)
    RecordingDiskBackend.reads.clear()
    overrides = {
        **shapes_data(shapes),
        "data.train.ann_file": "annotations/train.json",
        "data.train.img_prefix": "train/",
        "data.train.pipeline.2.img_scale": [64, 64],
    }
    args = {"backend": "cfgtest_recording", "root": str(shapes["root"])}
    cfg = _build(FASTER_RCNN, tmp_path, file_client_args=args, **overrides)
    dataset = build_dataset(cfg.data.train)
    assert RecordingDiskBackend.reads == ["annotations/train.json"]
    item = dataset[0]
    assert item["gt_bboxes"].data.shape[1] == 4
    assert RecordingDiskBackend.reads[1].startswith("train/") and RecordingDiskBackend.reads[1].endswith(".png")


def test_args_of_the_same_backend_merge_and_of_another_replace(tmp_path: Path) -> None:
    s3 = {"backend": "s3", "bucket_name": "b", "endpoint_url": "http://127.0.0.1:9"}
    overrides = {
        "data.train.pipeline.0.file_client_args": {"backend": "s3", "bucket_name": "c"},
        "data.train.pipeline.1.file_client_args": {"backend": "disk"},
    }
    cfg = _build(FASTER_RCNN, tmp_path, file_client_args=s3, **overrides)
    assert cfg.data.train.pipeline[0].file_client_args == {**s3, "bucket_name": "c"}
    assert cfg.data.train.pipeline[1].file_client_args == {"backend": "disk"}
    assert cfg.data.train.file_client_args == s3


def test_object_store_args_reach_mmcv_in_the_form_it_accepts(tmp_path: Path) -> None:
    """``prefix`` (a key prefix for the s3/gcs backends) would be a URI scheme to mmcv's FileClient."""
    from model_hub_mmdet.mmdet2.fileio import register
    from model_hub_mmdet.storage import S3Backend

    register()
    args = {"backend": "s3", "bucket_name": "b", "prefix": "datasets/v2", "cache_dir": str(tmp_path / "cache")}
    cfg = _build(FASTER_RCNN, tmp_path, file_client_args=args)
    expected = {"backend": "s3", "bucket_name": "b", "key_prefix": "datasets/v2", "cache_dir": str(tmp_path / "cache")}
    _assert_everywhere(cfg, expected)
    client = FileClient(**cfg.data.train.pipeline[0].file_client_args).client  # no request is made
    assert isinstance(client, S3Backend)


def test_uri_data_paths_select_their_backend_without_file_client_args() -> None:
    from model_hub_mmdet.mmdet2.config import build_mmdet_config

    root = "s3://bucket/coco/"
    overrides = {
        f"data.{split}.{key}": root + value
        for split in ("train", "val", "test")
        for key, value in (("ann_file", "annotations/x.json"), ("img_prefix", "images/"))
    }
    cfg = build_mmdet_config(
        {"config_file": "retinanet/retinanet_r50_fpn_1x_coco.py", "override_mmdet_config": overrides}
    )
    assert cfg.data.train.pipeline[0].file_client_args == {"backend": "s3"}
    assert cfg.data.val.file_client_args == {"backend": "s3"}
    plain = build_mmdet_config({"config_file": "retinanet/retinanet_r50_fpn_1x_coco.py"})
    assert "file_client_args" not in plain.data.train.pipeline[0] or plain.data.train.pipeline[0].file_client_args[
        "backend"
    ] == "disk"
