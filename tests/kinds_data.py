"""Tiny hand-made datasets of kinds other than COCO instances, for the metric-name and summary tests of both
generations: Pascal VOC (XML) and COCO panoptic (PNG segment maps + JSON). numpy, OpenCV and the standard library
only, so both venvs can import it.

Every image is ``size`` x ``size`` px with a filled square (class ``square``) and a filled disc (class ``disc``) on a
grey background (the panoptic stuff class ``ground``), at positions that differ per image.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

THINGS = ("square", "disc")
STUFF = ("ground",)


def _shapes(index: int, size: int) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int], np.ndarray]]]:
    """An image and its objects: (class, (x1, y1, x2, y2) inclusive pixel box, boolean mask)."""
    img = np.full((size, size, 3), 90, np.uint8)
    s = size // 4
    x, y = 3 + (index * 7) % (size // 2 - s), 4 + (index * 5) % (size // 2 - s)
    square = np.zeros((size, size), bool)
    square[y:y + s, x:x + s] = True
    disc = np.zeros((size, size), np.uint8)
    cx, cy, r = size - s - 2 - (index * 3) % 6, size - s - 2 - (index * 4) % 6, s // 2 + 2
    cv2.circle(disc, (cx, cy), r, 1, -1)
    disc = disc.astype(bool)
    img[square] = (40, 200, 40)
    img[disc] = (30, 30, 220)
    objects = []
    for name, mask in (("square", square), ("disc", disc)):
        ys, xs = np.nonzero(mask)
        objects.append((name, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())), mask))
    return img, objects


def make_voc(root: Path, count: int = 3, size: int = 64) -> Path:
    """A VOC2007-style tree under ``root``: ``VOC2007/{JPEGImages,Annotations,ImageSets/Main/trainval.txt}``.
    Returns the ``VOC2007`` folder (mmdet's ``img_prefix``; 2.x infers the year from it)."""
    voc = Path(root) / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(count):
        img_id = f"{i:06d}"
        ids.append(img_id)
        img, objects = _shapes(i, size)
        cv2.imwrite(str(voc / "JPEGImages" / f"{img_id}.jpg"), img)
        boxes = "".join(
            f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
            f"<xmax>{x2 + 1}</xmax><ymax>{y2 + 1}</ymax></bndbox></object>"
            for name, (x1, y1, x2, y2), _ in objects)
        (voc / "Annotations" / f"{img_id}.xml").write_text(
            f"<annotation><filename>{img_id}.jpg</filename><size><width>{size}</width><height>{size}</height>"
            f"<depth>3</depth></size>{boxes}</annotation>")
    (voc / "ImageSets/Main/trainval.txt").write_text("\n".join(ids) + "\n")
    return voc


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic's PNG encoding, read back (R + 256 G + 256^2 B)."""
    rgb = rgb.astype(np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def make_coco_panoptic(root: Path, count: int = 3, size: int = 64) -> dict[str, Path]:
    """COCO panoptic files under ``root``: ``images/*.jpg``, ``panoptic/*.png`` (segment ids in COCO's RGB
    encoding), ``panoptic.json`` and ``instances.json`` (the things as COCO instances, for box metrics).
    Categories: ``square`` (1) and ``disc`` (2) are things, ``ground`` (3) is stuff."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "panoptic").mkdir(parents=True, exist_ok=True)
    categories = [{"id": k + 1, "name": n, "supercategory": "shape", "isthing": int(n in THINGS)}
                  for k, n in enumerate(THINGS + STUFF)]
    images, annotations, instances = [], [], []
    for i in range(count):
        img, objects = _shapes(i, size)
        name = f"{i:04d}"
        cv2.imwrite(str(root / "images" / f"{name}.jpg"), img)
        ids = np.zeros((size, size), np.uint32)
        segments = []
        ground = np.ones((size, size), bool)
        for k, (cls, (x1, y1, x2, y2), mask) in enumerate(objects):
            seg_id = 10 + k
            ids[mask] = seg_id
            ground &= ~mask
            box = [x1, y1, x2 - x1 + 1, y2 - y1 + 1]
            segments.append({"id": seg_id, "category_id": THINGS.index(cls) + 1, "area": int(mask.sum()),
                             "bbox": box, "iscrowd": 0})
            instances.append({"id": len(instances) + 1, "image_id": i + 1, "category_id": THINGS.index(cls) + 1,
                              "bbox": box, "area": int(mask.sum()), "iscrowd": 0,
                              "segmentation": [[x1, y1, x2 + 1, y1, x2 + 1, y2 + 1, x1, y2 + 1]]})
        ids[ground] = 30
        ys, xs = np.nonzero(ground)
        segments.append({"id": 30, "category_id": 3, "area": int(ground.sum()), "iscrowd": 0,
                         "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                  int(ys.max() - ys.min() + 1)]})
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
        cv2.imwrite(str(root / "panoptic" / f"{name}.png"), rgb[..., ::-1])  # OpenCV writes BGR
        images.append({"id": i + 1, "file_name": f"{name}.jpg", "width": size, "height": size})
        annotations.append({"image_id": i + 1, "file_name": f"{name}.png", "segments_info": segments})
    (root / "panoptic.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))
    (root / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": instances, "categories": [c for c in categories if c["isthing"]]}))
    return {"root": root, "images": root / "images", "panoptic": root / "panoptic",
            "ann_file": root / "panoptic.json", "ins_ann_file": root / "instances.json"}
