"""Never stricter than MMDetection 3.3: under the project's patches, mmdet's and mmcv's own loaders raise what they
raised without them (``AssertionError`` for duplicate annotation ids, as mmdet's own
``test_coco.py::test_coco_annotation_ids_unique`` expects; ``FileNotFoundError`` for a missing image), as the
project's one-line errors too, and accept what they accepted.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from mmcv.transforms import LoadImageFromFile
from mmdet.datasets import CocoDataset

from model_hub_mmdet.bad_images import BadImageError
from model_hub_mmdet.errors import DataError
from model_hub_mmdet.patch_registry import MARK


def _coco(path: Path, images: int = 1, ann_ids: tuple[int, ...] = (1, 2)) -> Path:
    doc = {
        "images": [{"id": i + 1, "file_name": f"{i}.jpg", "width": 64, "height": 64} for i in range(images)],
        "annotations": [{"id": a, "image_id": 1, "category_id": 1, "bbox": [1, 1, 20, 20], "area": 400, "iscrowd": 0}
                        for a in ann_ids],
        "categories": [{"id": 1, "name": "car"}],
    }
    path.write_text(json.dumps(doc))
    return path


def _kept(ours: BaseException, theirs: BaseException, also: type) -> None:
    for err in (ours, pickle.loads(pickle.dumps(ours))):  # as it crosses a data-loader worker
        assert isinstance(err, type(theirs)) and isinstance(err, also), type(err).__mro__
        assert str(err) == str(ours) and "\n" not in str(err)


def test_duplicate_annotation_ids_are_mmdets_assertion_error(tmp_path: Path) -> None:
    ann = _coco(tmp_path / "dup.json", ann_ids=(1, 1))
    with pytest.raises(AssertionError, match="are not unique!") as ours:  # mmdet's own test's expectation
        CocoDataset(ann_file=str(ann), data_prefix=dict(img="imgs"), metainfo=dict(classes=("car",)), pipeline=[])
    assert isinstance(ours.value, DataError) and str(ours.value).startswith(f"{ann}: ")
    original = getattr(CocoDataset.load_data_list, MARK)
    dataset = CocoDataset(ann_file=str(ann), data_prefix=dict(img="imgs"), lazy_init=True, pipeline=[])
    with pytest.raises(AssertionError) as theirs:
        original(dataset)
    _kept(ours.value, theirs.value, DataError)


def test_a_missing_annotation_file_is_still_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as ours:
        CocoDataset(ann_file=str(tmp_path / "nope.json"), pipeline=[])
    assert isinstance(ours.value, DataError) and "file not found" in str(ours.value)


def test_an_empty_unserialised_dataset_is_accepted_as_mmdet_accepts_it(tmp_path: Path) -> None:
    ann = _coco(tmp_path / "empty.json", images=0, ann_ids=())
    assert len(CocoDataset(ann_file=str(ann), serialize_data=False, pipeline=[])) == 0
    with pytest.raises(ValueError, match="holds no images"):  # mmengine's np.concatenate fails here: a ValueError
        CocoDataset(ann_file=str(ann), pipeline=[])


@pytest.mark.parametrize("kind", ["missing", "empty", "not_an_image"])
def test_a_bad_image_is_also_what_mmcv_raised(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_an_image":
        path.write_bytes(b"not an image\n" * 20)
    original = getattr(LoadImageFromFile.transform, MARK)
    with pytest.raises(Exception) as theirs:
        original(LoadImageFromFile(), {"img_path": str(path)})
    with pytest.raises(BadImageError) as ours:
        LoadImageFromFile()({"img_path": str(path)})
    assert str(ours.value).startswith(f"{path}: ") and ours.value.filename == str(path)
    _kept(ours.value, theirs.value, BadImageError)
    if kind == "missing":
        assert isinstance(ours.value, FileNotFoundError)
