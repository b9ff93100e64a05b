"""``backend: fake``: one image for every image read, annotation files from disk, so a detector trains on real
annotation files with no image files at all (as the model hub's end-to-end tests did with COCO's)."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import mmcv
import numpy as np
import pytest
import yaml
from helpers import tiny_experiment
from mmcv import FileClient

from model_hub_mmdet.errors import ConfigError, DataError
from model_hub_mmdet.storage import fake
from model_hub_mmdet.storage.fake import STOCK_SIZE, FakeBackend, image_sizes, is_image_path, size_of, stock_image

CLASSES = ("rectangle", "ellipse", "triangle")


@pytest.fixture(autouse=True)
def fresh_size_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no image sizes learnt (the tables are per process)."""
    monkeypatch.setattr(fake, "_SIZES", {})
    monkeypatch.setattr(fake, "_STEM_SIZES", {})


def write_annotations(root: Path, split: str, sizes: list[tuple[int, int]], seed: int = 0,
                      classes: tuple[str, ...] = CLASSES) -> Path:
    """A small COCO instance-segmentation file (boxes + polygon masks) for images that do not exist."""
    rng = np.random.RandomState(seed)
    images, anns = [], []
    for image_id, (width, height) in enumerate(sizes, start=1):
        images.append({"id": image_id, "file_name": f"{split}_{image_id:03d}.jpg", "width": width, "height": height})
        for _ in range(2):
            w, h = rng.randint(8, width // 2), rng.randint(8, height // 2)
            x, y = rng.randint(0, width - w), rng.randint(0, height - h)
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
            category = int(rng.randint(1, len(classes) + 1))
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": category,
                         "bbox": [x, y, w, h], "area": float(w * h), "segmentation": [polygon], "iscrowd": 0})
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(classes)]}
    path = root / "annotations" / f"{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco))
    return path


@pytest.fixture
def annotations_only(tmp_path: Path) -> Path:
    """A dataset directory with annotation files and no images (``train/`` and ``val/`` do not exist)."""
    root = tmp_path / "no-images"
    write_annotations(root, "train", [(640, 480), (320, 240), (200, 300), (64, 64)])
    write_annotations(root, "val", [(640, 480), (128, 96)], seed=1)
    return root


def test_every_image_read_returns_the_stock_image() -> None:
    client = FileClient(backend="fake")
    data = client.get("data/coco/train2017/000000000009.jpg")
    assert data == stock_image() == client.get("/anything/else.PNG")
    img = mmcv.imfrombytes(data)
    assert img.shape == (STOCK_SIZE[1], STOCK_SIZE[0], 3)
    assert img.std() > 30  # shapes on a gradient, not a blank frame
    assert client.exists("missing.jpg") and client.isfile("missing.jpeg")


def test_stock_image_is_drawn_deterministically() -> None:
    first = stock_image()
    stock_image.cache_clear()
    assert stock_image() == first


def test_fake_img_path_is_served_for_every_image(tmp_path: Path) -> None:
    path = tmp_path / "one.png"
    mmcv.imwrite(np.full((30, 40, 3), 200, np.uint8), str(path))
    client = FileClient(backend="fake", fake_img_path=str(path))
    assert client.get("a/b.jpg") == path.read_bytes()
    assert mmcv.imfrombytes(client.get("c.bmp")).shape == (30, 40, 3)


def test_bad_fake_img_path_is_one_line_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^data\.file_client_args\.fake_img_path: cannot read .*missing\.jpg"):
        FakeBackend(fake_img_path=str(tmp_path / "missing.jpg"))
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="notes.txt is not a readable image"):
        FakeBackend(fake_img_path=str(tmp_path / "notes.txt"))
    with pytest.raises(ConfigError, match="unknown key.* bucket_name for the fake backend; known keys: backend"):
        FakeBackend(bucket_name="b")


def test_annotation_files_are_read_from_disk(annotations_only: Path) -> None:
    client = FakeBackend()
    ann = annotations_only / "annotations" / "train.json"
    assert client.get(str(ann)) == ann.read_bytes()
    assert json.loads(client.get_text(str(ann)))["categories"][0]["name"] == "rectangle"
    with client.get_local_path(str(ann)) as local:
        assert Path(local) == ann
    assert not client.exists(str(annotations_only / "annotations" / "missing.json"))
    with pytest.raises(FileNotFoundError):
        client.get(str(annotations_only / "proposals.pkl"))


def test_image_paths_are_recognised_by_extension() -> None:
    assert all(is_image_path(p) for p in ["x.jpg", "a/b.JPEG", "c.png", "d.tif", "e.webp"])
    assert not any(is_image_path(p) for p in ["ann.json", "props.pkl", "list.txt", "noext"])


def test_image_sizes_are_read_from_coco_records_only() -> None:
    text = json.dumps({
        "images": [{"id": 1, "file_name": "train2017/a.jpg", "height": 300, "width": 200},
                   {"width": 64, "file_name": "b\u00e9.png", "id": 2, "height": 48}],  # JSON-escaped
        # A panoptic annotation: a file_name without a size, after nested segment records.
        "annotations": [{"segments_info": [{"id": 3, "area": 5}], "file_name": "a.png", "image_id": 1}],
    }).encode()
    assert image_sizes(text) == {"train2017/a.jpg": (200, 300), "b\u00e9.png": (64, 48)}


def test_images_come_at_the_size_their_annotation_file_gives(annotations_only: Path) -> None:
    client = FakeBackend()
    ann = annotations_only / "annotations" / "train.json"
    assert size_of(annotations_only / "train" / "train_003.jpg") is None  # nothing learnt yet: the stock size
    with client.get_local_path(str(ann)):
        pass  # as a dataset loads its ann_file
    assert size_of(f"{annotations_only}/train/train_003.jpg") == (200, 300)
    assert mmcv.imfrombytes(client.get(f"{annotations_only}/train/train_003.jpg")).shape == (300, 200, 3)
    assert mmcv.imfrombytes(client.get("elsewhere/train_002.png")).shape == (240, 320, 3)  # by stem (panoptic)
    assert client.get("unknown.jpg") == stock_image()
    assert client.get("x/train_001.jpg") == stock_image()  # declared 640x480: the stock image itself


def test_backend_travels_to_spawned_workers(annotations_only: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeBackend()
    client.get_text(str(annotations_only / "annotations" / "val.json"))
    pickled = pickle.dumps(client)
    monkeypatch.setattr(fake, "_SIZES", {})  # a fresh process
    monkeypatch.setattr(fake, "_STEM_SIZES", {})
    worker = pickle.loads(pickled)
    assert worker.get("val_002.jpg") == client.get("val_002.jpg")
    assert mmcv.imfrombytes(FakeBackend().get("val/val_002.jpg")).shape == (96, 128, 3)  # steps share sizes


def test_dataset_and_pipeline_use_it_through_file_client_args(annotations_only: Path) -> None:
    from mmdet.datasets import build_dataset

    from model_hub_mmdet.mmdet2.config import build_mmdet_config

    exp = tiny_experiment(annotations_only, model="mask_rcnn", data={"file_client_args": {"backend": "fake"}})
    cfg = build_mmdet_config(exp["hyperparameters"], exp["data"])
    assert cfg.data.train.file_client_args.backend == "fake"
    dataset = build_dataset(cfg.data.train)
    assert len(dataset) == 4 and not (annotations_only / "train").exists()
    sample = dataset[2]  # declared 200x300: the fake image comes at that size, like its masks
    assert sample["img"].data.shape[0] == 3 and sample["gt_masks"].data.masks.shape[0] == 2
    assert sample["img_metas"].data["ori_shape"] == (300, 200, 3)


def test_coco_mask_rcnn_pipeline_runs_on_fake_images(tmp_path: Path) -> None:
    # MMDetection's own COCO pipeline (1333x800, pad to 32): masks are built at the annotated sizes, so an image
    # of another size would break Pad; COCO's class names, sizes of COCO images.
    from mmdet.datasets import build_dataset

    from model_hub_mmdet.mmdet2.config import build_mmdet_config

    ann = write_annotations(tmp_path, "train", [(640, 427), (500, 375), (427, 640)], classes=("person", "car"))
    hparams = {"global_batch_size": 2, "config_file": "mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py",
               "override_mmdet_config": {"data.train.ann_file": str(ann), "data.train.img_prefix": "train2017/",
                                         "data.train.classes": ["person", "car"]}}
    dataset = build_dataset(build_mmdet_config(hparams, {"file_client_args": {"backend": "fake"}}).data.train)
    for i, (width, height) in enumerate([(640, 427), (500, 375), (427, 640)]):
        sample = dataset[i]
        assert sample["img_metas"].data["ori_shape"] == (height, width, 3)
        assert sample["gt_masks"].data.masks.shape[1:] == sample["img"].data.shape[1:]


def test_check_accepts_the_fake_backend(annotations_only: Path, tmp_path: Path, capsys) -> None:
    from model_hub_mmdet.tools.cli import main

    exp = tiny_experiment(annotations_only, model="mask_rcnn", data={"file_client_args": {"backend": "fake"}})
    (tmp_path / "fake.yaml").write_text(yaml.safe_dump(exp))
    assert main(["check", str(tmp_path / "fake.yaml"), "--context", str(tmp_path)]) == 0, capsys.readouterr().err


@pytest.mark.slow
def test_mask_rcnn_trains_on_annotations_without_images(annotations_only: Path, det_local: Path) -> None:
    from model_hub_mmdet.local import train_local

    exp = tiny_experiment(annotations_only, model="mask_rcnn", max_batches=2,
                          data={"file_client_args": {"backend": "fake"}})
    result = train_local(exp, max_batches=2)
    assert result.batches_trained == 2
    loss = result.training[-1]
    assert math.isfinite(loss["loss"]) and loss["loss_mask"] > 0 and loss["loss_bbox"] >= 0
    (val,) = result.validations  # evaluated on the val annotations, with fake images
    assert "bbox_mAP" in val and "segm_mAP" in val
    assert sorted(p.name for p in annotations_only.iterdir()) == ["annotations"]
