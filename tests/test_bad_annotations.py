"""COCO annotation files MMDetection cannot train on: one line naming the file and the problem, at start-up,
before any training (what it tolerates is trained as it trains it: tests/test_coco2017_annotations.py)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import tiny_experiment
from mmdet.datasets import build_dataset

import model_hub_mmdet.mmdet2.data  # noqa: F401  (installs the annotation check, as the trial's import does)
from model_hub_mmdet import build_mmdet_config
from model_hub_mmdet.errors import DataError
from model_hub_mmdet.mmdet2.datasets.annotations import (
    AnnotationError,
    annotation_warnings,
    validate_coco_annotations,
)
from model_hub_mmdet.tools.cli import main

CLASSES = ("rectangle", "ellipse", "triangle")
GOOD = {
    "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}, {"id": 2, "file_name": "b.png",
                                                                           "width": 64, "height": 64}],
    "annotations": [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 12], "area": 120, "iscrowd": 0},
        {"id": 11, "image_id": 2, "category_id": 3, "bbox": [5.5, 2, 3.5, 4], "area": 14, "iscrowd": 0},
    ],
    "categories": [{"id": 1, "name": "rectangle"}, {"id": 2, "name": "ellipse"}, {"id": 3, "name": "triangle"}],
}


def edited(change) -> dict:
    obj = copy.deepcopy(GOOD)
    change(obj)
    return obj


# (file contents, what the one problem line must say)
BAD_FILES = {
    "not_json": (b"{not json", "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    "empty": (b"", "the file is empty"),
    "not_utf8": (b'{"images": "\xff\xfe"}', "not UTF-8 text"),
    "a_list": (b"[1, 2, 3]", "must be a JSON object with images, annotations, categories (COCO format), but the file"
                             " holds a JSON list"),
    "no_images": (edited(lambda o: o.pop("images")), "has no 'images' list"),
    "no_annotations": (edited(lambda o: o.pop("annotations")), "has no 'annotations' list"),
    "no_categories": (edited(lambda o: o.pop("categories")), "has no 'categories' list"),
    "images_not_a_list": (edited(lambda o: o.update(images={"id": 1})), "'images' must be a list, got a JSON object"),
    "unknown_category_name": (edited(lambda o: o["categories"][0].pop("name")),
                              "categories entries without a string 'name': 1 (first: categories[0] name=None)"),
    "negative_area": (edited(lambda o: o["annotations"][1].update(area="14")),
                      "annotations without an 'area' number: 1 (first: annotations[1] id 11)"),
    "bad_bbox": (edited(lambda o: o["annotations"][1].update(bbox="1,2,3,4")),
                 "annotations without a 'bbox' of 4 finite numbers"),
    "duplicate_annotation_id": (edited(lambda o: o["annotations"][1].update(id=10)),
                                "annotations with a duplicate 'id': 1"),
    "image_without_size": (edited(lambda o: o["images"][0].pop("width")), "images entries without a number 'width'"),
    "class_not_in_file": (edited(lambda o: o["categories"][1].update(name="circle")),
                          "'triangle' (index 2) would be label 1; the file lacks 'ellipse'; an order of classes that"
                          " works: ('rectangle', 'triangle', 'ellipse')"),
}


def write(path: Path, contents: bytes | dict) -> Path:
    path.write_bytes(contents if isinstance(contents, bytes) else json.dumps(contents).encode())
    return path


def test_a_good_file_has_no_problems(tmp_path: Path, shapes_dir: Path) -> None:
    assert validate_coco_annotations(write(tmp_path / "good.json", GOOD), classes=CLASSES) == []
    assert validate_coco_annotations(GOOD, classes=CLASSES) == []
    for split in ("train", "val"):
        assert validate_coco_annotations(shapes_dir / "annotations" / f"{split}.json", classes=CLASSES) == []


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_each_problem_is_one_line_naming_the_file(case: str, tmp_path: Path) -> None:
    contents, expected = BAD_FILES[case]
    path = write(tmp_path / f"{case}.json", contents)
    problems = validate_coco_annotations(path, classes=CLASSES)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: ") and expected in problems[0] and "\n" not in problems[0]


def test_every_problem_kind_is_listed_once_with_a_count(tmp_path: Path) -> None:
    def break_everything(obj: dict) -> None:
        for ann in obj["annotations"]:
            ann.update(bbox=[0, 0, "1", 0])
        obj.pop("categories")

    problems = validate_coco_annotations(edited(break_everything), classes=CLASSES, name="x.json")
    assert problems == [
        "x.json: has no 'categories' list (COCO format needs images, annotations, categories)",
        "x.json: annotations without a 'bbox' of 4 finite numbers [x, y, width, height]: 2 (first: annotations[0] id"
        " 10 bbox=[0, 0, '1', 0])",
    ]


@pytest.mark.parametrize("case", ["zero_width_box", "negative_height_box", "unknown_image", "unknown_category"])
def test_what_mmdet_tolerates_is_not_refused(case: str) -> None:
    change = {
        "zero_width_box": lambda o: o["annotations"][0].update(bbox=[1, 2, 0, 12]),
        "negative_height_box": lambda o: o["annotations"][1].update(bbox=[1, 2, 3, -4]),
        "unknown_image": lambda o: o["annotations"][1].update(image_id=99),
        "unknown_category": lambda o: o["annotations"][0].update(category_id=7),
    }[case]
    obj = edited(change)
    assert validate_coco_annotations(obj, classes=CLASSES) == []
    (line,) = annotation_warnings(obj, classes=CLASSES, name="x.json")
    assert line.startswith("x.json: trained as MMDetection trains it: ") and ": 1 (first: annotations[" in line


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    assert validate_coco_annotations(tmp_path / "nope.json") == [f"{tmp_path / 'nope.json'}: annotation file not found"]


@pytest.mark.parametrize("case", ["not_json", "no_annotations", "bad_bbox", "duplicate_annotation_id",
                                  "class_not_in_file"])
def test_building_the_mmdet_dataset_raises_one_line(case: str, shapes_dir: Path, tmp_path: Path) -> None:
    contents, expected = BAD_FILES[case]
    ann = write(tmp_path / f"{case}.json", contents)
    exp = tiny_experiment(shapes_dir, overrides={"data.val.ann_file": str(ann)})
    cfg = build_mmdet_config(exp["hyperparameters"], exp["data"])
    with pytest.raises(AnnotationError) as info:
        build_dataset(cfg.data.val, dict(test_mode=True))
    message = str(info.value)
    assert isinstance(info.value, DataError)
    assert message.startswith(f"CocoDataset: {ann}: ") and expected in message and "\n" not in message
    build_dataset(cfg.data.train)  # the good training file still builds


def test_an_annotation_file_in_a_bucket_is_checked_through_the_backend(moto, tmp_path: Path, monkeypatch) -> None:
    import boto3
    from servers import isolate_cloud_env, make_bucket

    isolate_cloud_env(monkeypatch, tmp_path)
    bucket = f"bad-ann-{tmp_path.name.lower().replace('_', '-')}"[:60]
    make_bucket("s3", moto.endpoint, bucket)
    s3 = boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1")
    s3.put_object(Bucket=bucket, Key="ann/bad.json", Body=b"{not json")
    s3.put_object(Bucket=bucket, Key="ann/good.json", Body=json.dumps(GOOD).encode())
    args = {"backend": "s3", "endpoint_url": moto.endpoint, "cache_dir": str(tmp_path / "cache")}
    problems = validate_coco_annotations(f"s3://{bucket}/ann/bad.json", file_client_args=args)
    assert problems == [f"s3://{bucket}/ann/bad.json: not valid JSON: Expecting property name enclosed in double"
                        " quotes at line 1 column 2"]
    assert validate_coco_annotations(f"s3://{bucket}/ann/good.json", CLASSES, file_client_args=args) == []
    (missing,) = validate_coco_annotations(f"s3://{bucket}/ann/none.json", file_client_args=args)
    assert bucket in missing and "ann/none.json" in missing and "\n" not in missing


@pytest.mark.slow
def test_training_stops_at_start_up_with_one_line(shapes_dir: Path, det_local: Path, capfd) -> None:
    data = Path(shutil.copytree(shapes_dir, det_local / "shapes"))
    (data / "annotations" / "val.json").write_text("{not json")
    Path("exp.yaml").write_text(yaml.safe_dump(tiny_experiment(data, max_batches=2)))
    assert main(["train", "exp.yaml", "--local", "--max-batches", "2", "--out", "out"]) == 1
    err = capfd.readouterr().err
    # the progress bar, already started, leaves "0batch [00:00, ?batch/s]" without a newline before the error
    lines = [line[line.index("error:"):] for line in err.splitlines() if "error:" in line]
    assert lines == [f"error: CocoDataset: {data / 'annotations' / 'val.json'}: not valid JSON: Expecting property"
                     " name enclosed in double quotes at line 1 column 2"]
    assert "Traceback" not in err
    assert not list((det_local / "xdg").rglob("state_dict.pth"))  # nothing was trained or checkpointed


def test_names_with_newlines_stay_on_one_line() -> None:
    obj = edited(lambda o: o["categories"][0].update(name="rect\nangle"))
    (problem,) = validate_coco_annotations(obj, classes=["circle\n", "rect\nangle"], name="x.json")
    assert "\n" not in problem and "'circle\\n'" in problem
