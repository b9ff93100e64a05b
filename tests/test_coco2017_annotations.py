"""COCO 2017's own quirks are trained exactly as MMDetection trains them; only what mmdet cannot train is refused."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from coco2017 import CLASSES, make_coco2017_like
from helpers import tiny_experiment
from mmdet.datasets import CocoDataset, build_dataset

from model_hub_mmdet.mmdet2.datasets import annotations
from model_hub_mmdet.mmdet2.datasets.annotations import AnnotationError, validate_coco_annotations
from model_hub_mmdet.mmdet2.datasets.patching import MARK
from model_hub_mmdet.tools.cli import main


@pytest.fixture(scope="module")
def coco17(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_coco2017_like(tmp_path_factory.mktemp("coco2017"))


def dataset_cfg(ann: Path, **kwargs) -> dict:
    return {"type": "CocoDataset", "ann_file": str(ann), "img_prefix": str(ann.parent / "images"),
            "classes": CLASSES, "pipeline": [], **kwargs}


def plain_mmdet(monkeypatch: pytest.MonkeyPatch, cfg: dict, **default) -> CocoDataset:
    """The dataset as plain mmdet builds it: its own load_annotations, without this package's check."""
    with monkeypatch.context() as m:
        m.setattr(CocoDataset, "load_annotations", getattr(CocoDataset.load_annotations, MARK))
        return build_dataset(cfg, default or None)


@pytest.mark.parametrize("test_mode", [False, True], ids=["train", "val"])
def test_same_data_infos_and_annotations_as_plain_mmdet(
    coco17: Path, test_mode: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="model_hub_mmdet")
    cfg = dataset_cfg(coco17, test_mode=test_mode)
    ours, plain = build_dataset(cfg), plain_mmdet(monkeypatch, cfg)
    assert ours.data_infos == plain.data_infos and ours.cat_ids == plain.cat_ids == [1, 18, 90]
    assert len(ours) == (10 if test_mode else 8)  # training leaves out the 2 images without annotations
    for i in range(len(ours)):
        a, b = ours.get_ann_info(i), plain.get_ann_info(i)
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], np.ndarray):
                np.testing.assert_array_equal(a[key], b[key])
            else:
                assert a[key] == b[key]
    # the zero-height boxes are dropped, as mmdet drops them
    index = [info["id"] for info in ours.data_infos].index(200365)
    assert ours.get_ann_info(index)["bboxes"].shape == (2, 4)


def test_coco2017_quirks_are_one_warning_line(coco17: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="model_hub_mmdet")
    annotations._warned.clear()  # once per process: an earlier test may have built this file
    build_dataset(dataset_cfg(coco17, test_mode=True))
    build_dataset(dataset_cfg(coco17, test_mode=True))  # the same file again: no second line
    lines = [r.getMessage() for r in caplog.records if str(coco17) in r.getMessage()]
    print(lines)
    assert len(lines) == 1 and "\n" not in lines[0]
    (line,) = lines
    assert line.startswith(f"{coco17}: trained as MMDetection trains it: ")
    assert ("boxes of zero area, under 1 px wide or high, or outside their image (dropped): 2 (first:"
            " annotations[16] id 918 on image 200365, bbox [296.65, 388.33, 1.03, 0.0])") in line
    assert "crowd regions (ignored boxes): 2" in line
    assert "images without annotations of the classes (kept, without ground truth): 2" in line


def edited(ann: Path, tmp_path: Path, change) -> Path:
    obj = json.loads(ann.read_text())
    change(obj)
    out = tmp_path / "edited.json"
    out.write_text(json.dumps(obj))
    return out


def test_classes_in_another_order_than_the_file_are_refused_naming_an_order_that_works(
    coco17: Path, tmp_path: Path
) -> None:
    cfg = dataset_cfg(coco17, test_mode=True, classes=("dog", "person", "toothbrush"))
    with pytest.raises(AnnotationError) as info:
        build_dataset(cfg)
    message = str(info.value)
    assert "\n" not in message
    assert ("classes would get other labels than their index, since mmdet numbers the labels in the order of the"
            " file's categories: 'dog' (index 0) would be label 1, 'person' (index 1) would be label 0; an order"
            " of classes that works: ('person', 'dog', 'toothbrush')") in message
    # a missing class in the middle shifts the ones after it
    with pytest.raises(AnnotationError, match="'toothbrush' \\(index 2\\) would be label 1; the file lacks 'cat'"):
        build_dataset(dict(cfg, classes=("person", "cat", "toothbrush")))


def test_missing_classes_after_every_present_one_are_a_warning(
    coco17: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="model_hub_mmdet")
    annotations._warned.clear()
    dataset = build_dataset(dataset_cfg(coco17, test_mode=True, classes=(*CLASSES, "cat", "kite")))
    assert dataset.cat2label == {1: 0, 18: 1, 90: 2}
    assert any("classes without a category in the file (no label shifts: they come after every present class):"
               " 2 (first: 'cat', 'kite')" in r.getMessage() for r in caplog.records)


def test_mmdets_own_occluded_sample_builds_with_its_classes(tmp_path: Path) -> None:
    # mmdet's tests/data/coco_sample.json (test_coco_occluded.py): categories bus (1) and car (2)
    sample = {
        "images": [{"file_name": f"fake{i + 1}.jpg", "height": 800, "width": 800, "id": i} for i in range(3)],
        "annotations": [{"bbox": [0, 0, 20, 20], "area": 400.0, "score": 1.0, "category_id": c, "id": i + 1,
                         "image_id": img} for i, (c, img) in enumerate([(1, 0), (2, 0), (1, 1)])],
        "categories": [{"id": 1, "name": "bus", "supercategory": "none"},
                       {"id": 2, "name": "car", "supercategory": "none"}],
        "licenses": [], "info": None,
    }
    path = tmp_path / "coco_sample.json"
    path.write_text(json.dumps(sample))
    cfg = dict(type="OccludedSeparatedCocoDataset", ann_file=str(path), occluded_ann=str(path),
               separated_ann=str(path), pipeline=[], test_mode=True)
    with pytest.raises(AnnotationError, match="'bus' \\(index 5\\) would be label 0"):
        build_dataset(cfg)  # COCO's 80 classes: bus would be trained and exported as "person"
    cfg_classes = dict(type="CocoDataset", ann_file=str(path), pipeline=[], test_mode=True, classes=("bus", "car"))
    assert build_dataset(cfg_classes).cat2label == {1: 0, 2: 1}
    with_extra = dict(cfg_classes, classes=("bus", "car", "truck"))  # missing after the present ones: built
    assert build_dataset(with_extra).cat2label == {1: 0, 2: 1}


def test_duplicate_annotation_ids_raise_what_mmdet_raised(coco17: Path, tmp_path: Path) -> None:
    path = edited(coco17, tmp_path, lambda o: o["annotations"][1].update(id=o["annotations"][0]["id"]))
    with pytest.raises(AssertionError) as info:  # mmdet's test_coco_annotation_ids_unique expects this
        build_dataset(dataset_cfg(path))
    assert isinstance(info.value, AnnotationError)
    assert "annotations with a duplicate 'id': 1 (first: annotations[1] id 1)" in str(info.value)
    missing = edited(coco17, tmp_path, lambda o: o["images"][0].pop("file_name"))
    with pytest.raises(KeyError) as key_info:
        build_dataset(dataset_cfg(missing))
    assert "images entries without a string 'file_name': 1" in str(key_info.value)
    assert not str(key_info.value).startswith("'")


def test_refused_and_tolerated_kinds(coco17: Path, tmp_path: Path) -> None:
    obj = json.loads(coco17.read_text())
    assert validate_coco_annotations(obj, CLASSES) == []
    broken = copy.deepcopy(obj)
    broken["annotations"][0]["bbox"] = [1, 2, float("nan"), 3]
    broken["annotations"][1].pop("area")
    problems = validate_coco_annotations(broken, CLASSES, name="x.json")
    assert problems == [
        "x.json: annotations without a 'bbox' of 4 finite numbers [x, y, width, height]: 1 (first: annotations[0]"
        " id 1 bbox=[1, 2, nan, 3])",
        "x.json: annotations without an 'area' number: 1 (first: annotations[1] id 2)",
    ]
    tolerated = copy.deepcopy(obj)
    tolerated["annotations"][0].update(category_id=5)  # a category the file does not list: mmdet drops it
    tolerated["annotations"][1].update(image_id=424242)  # an image the file does not list: never read
    tolerated["annotations"][2].update(bbox=[900.0, 900.0, 5.0, 5.0])  # outside its image: dropped
    assert validate_coco_annotations(tolerated, CLASSES) == []


@pytest.mark.slow
def test_mask_rcnn_trains_and_validates_on_the_coco2017_quirks(
    coco17: Path, det_local: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    from model_hub_mmdet.local import train_local

    caplog.set_level(logging.WARNING, logger="model_hub_mmdet")

    split = {"ann_file": str(coco17), "img_prefix": str(coco17.parent / "images") + "/", "classes": list(CLASSES)}
    overrides = {f"data.{s}.{k}": v for s in ("train", "val", "test") for k, v in split.items()}
    exp = tiny_experiment(coco17.parent, model="mask_rcnn", max_batches=3, overrides=overrides)
    Path("exp.yaml").write_text(yaml.safe_dump(exp))
    assert main(["check", "exp.yaml"]) == 0  # the tolerated quirks are a warning, not a problem
    out, err = capsys.readouterr()
    assert "exp.yaml: OK" in out
    assert f"warning: {coco17}: trained as MMDetection trains it: boxes of zero area" in err
    result = train_local(exp)
    (val,) = result.validations
    assert {"bbox_mAP", "segm_mAP"} <= val.keys()
    assert all(0.0 <= val[k] <= 1.0 for k in ("bbox_mAP", "segm_mAP"))
