"""Bad data and bad numbers end a 3.x run in one line naming the file, the key or the batch (or, where the
experiment allows it, are skipped)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mm3_helpers import experiment

from model_hub_mmdet.errors import DataError, UserError
from model_hub_mmdet.local import train_local

pytestmark = pytest.mark.slow


@pytest.fixture
def broken_shapes(shapes_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "shapes"
    shutil.copytree(shapes_dir, root)
    return root


def test_a_bad_training_image_is_substituted_or_stops_the_run_in_one_line(broken_shapes: Path, det_local: Path):
    (broken_shapes / "train" / "000003.png").write_bytes(b"not a png at all")
    allowed = experiment(broken_shapes, "rtmdet", max_batches=4, data={"bad_images": {"max_fraction": 0.5}})
    result = train_local(allowed, validation_period=100)
    assert result.batches_trained == 4
    assert sum(t["skipped_samples"] for t in result.training) > 0
    stop = r"max_fraction=0.01 allows \(latest: .*train/000003.png: not a decodable image"
    with pytest.raises(DataError, match=stop) as err:
        train_local(experiment(broken_shapes, "rtmdet", max_batches=4), validation_period=100)
    assert "\n" not in str(err.value)


def test_a_bad_validation_image_names_the_file(broken_shapes: Path, det_local: Path) -> None:
    (broken_shapes / "val" / "000001.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"val/000001.png: the file is empty \(0 bytes\)"):
        train_local(experiment(broken_shapes, "rtmdet", max_batches=1), validation_period=1)


def test_a_bad_annotation_file_is_one_line(broken_shapes: Path, det_local: Path) -> None:
    (broken_shapes / "annotations" / "train.json").write_text("{not json")
    with pytest.raises(DataError, match=r"annotations/train.json: not valid JSON") as err:
        train_local(experiment(broken_shapes, "rtmdet", max_batches=1))
    assert "\n" not in str(err.value)


def test_a_non_finite_loss_stops_before_the_step(shapes_dir: Path, det_local: Path) -> None:
    exp = experiment(shapes_dir, "rtmdet", max_batches=2,
                     overrides={"model.bbox_head.loss_cls.loss_weight": float("nan")})
    with pytest.raises(UserError, match=r"batch 0 \(images .*\.png.*\): the loss is not finite \(.*loss_cls=nan"):
        train_local(exp, validation_period=100)


def test_classes_the_annotation_file_lacks_are_one_line(shapes_dir: Path, det_local: Path) -> None:
    exp = experiment(shapes_dir, "rtmdet", max_batches=1,
                     overrides={"train_dataloader.dataset.metainfo.classes": ["cat", "dog"]})
    with pytest.raises(DataError, match=r"annotations/train.json: none of its images has an annotation of the"
                                        r" dataset's classes \(cat, dog\)"):
        train_local(exp)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("model.bbox_head.type", "RTMDetSepBNHeadd",
     r"^model: RTMDetSepBNHeadd is not in the mmdet::model registry; did you mean RTMDetSepBNHead"),
    ("custom_hooks.1.type", "PipelineSwitchHok",
     r"^custom_hooks.1: PipelineSwitchHok is not in the mmdet::hook registry; did you mean PipelineSwitchHook\?"),
])
def test_an_unknown_type_names_the_key_and_the_closest_names(key: str, value: str, message: str, shapes_dir: Path,
                                                             det_local: Path) -> None:
    from model_hub_mmdet.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as err:
        train_local(experiment(shapes_dir, "rtmdet", max_batches=1, overrides={key: value}))
    assert "\n" not in str(err.value)


def test_check_loads_the_annotation_files_as_the_trial_does(broken_shapes: Path, tmp_path: Path) -> None:
    import yaml

    from model_hub_mmdet.tools.check import check_experiment

    (broken_shapes / "annotations" / "val.json").write_text('{"images": [], "annotations": [], "categories": []}')
    exp = experiment(broken_shapes, "rtmdet", overrides={"train_dataloader.dataset.metainfo.classes": ["cat"]})
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    problems = check_experiment(path, tmp_path).problems
    assert any("annotations/train.json: none of its images has an annotation of the dataset's classes (cat)" in p
               for p in problems), problems
    assert any("annotations/val.json: holds no images" in p for p in problems), problems
