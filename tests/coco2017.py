"""A tiny COCO file with the real quirks of COCO 2017's ``instances_train2017.json`` (for the annotation tests).

Non-contiguous category ids (1, 18, 90), the two zero-height boxes of train2017 (annotation 918 on image 200365,
annotation 2206849 on image 550395), crowd regions in uncompressed and compressed RLE, images without
annotations, and grayscale JPEGs among the colour ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

CLASSES = ("person", "dog", "toothbrush")
CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person"},
              {"id": 18, "name": "dog", "supercategory": "animal"},
              {"id": 90, "name": "toothbrush", "supercategory": "indoor"}]
# train2017's two boxes of height 0 and area 0.0 (cocoapi issue #355), on images of their real sizes
ZERO_HEIGHT = [(918, 200365, 640, 480, [296.65, 388.33, 1.03, 0.0]),
               (2206849, 550395, 640, 427, [9.98, 188.56, 5.54, 0.0])]


def _polygon(x: float, y: float, w: float, h: float) -> list[list[float]]:
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]  # COCO's 80 ids


def make_coco2017_like(root: Path, images: int = 10, size: int = 96, seed: int = 0,
                       all_categories: bool = False) -> Path:
    """Write ``root/images/*.jpg`` and ``root/annotations.json``; returns the annotation file. With
    ``all_categories`` the file lists COCO's 80 categories (ids and names), as instances_train2017.json does."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    imgs: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    next_id = [1]

    def add(image_id: int, cat: int, bbox: list[float], **extra: Any) -> None:
        ann = {"id": next_id[0], "image_id": image_id, "category_id": cat, "bbox": bbox,
               "area": float(bbox[2] * bbox[3]), "iscrowd": 0, "segmentation": _polygon(*bbox)}
        ann.update(extra)
        anns.append(ann)
        next_id[0] += 1

    sizes = [(640, 480, 200365), (640, 427, 550395)] + [(size, size * 3 // 4, 1000 + i) for i in range(images - 2)]
    for n, (width, height, image_id) in enumerate(sizes):
        gray = n % 3 == 1  # some grayscale JPEGs, as in train2017
        img = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        empty = n in (3, 7)  # images without annotations (about 1% of train2017)
        boxes = [] if empty else [(CATEGORIES[(n + k) % 3]["id"], k) for k in range(2)]
        for cat, k in boxes:
            w, h = width // 3, height // 3
            x, y = (k * width // 2) + 2, height // 4 + 2 * k
            colour = {1: (200, 40, 40), 18: (40, 200, 40), 90: (40, 40, 200)}[cat]
            cv2.rectangle(img, (x, y), (x + w, y + h), colour, -1)
            add(image_id, cat, [float(x), float(y), float(w), float(h)])
        if gray:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        name = f"{image_id:012d}.jpg"
        cv2.imwrite(str(root / "images" / name), img)
        imgs.append({"id": image_id, "file_name": name, "width": width, "height": height, "license": 1})
    for ann_id, image_id, _, _, bbox in ZERO_HEIGHT:
        anns.append({"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": bbox, "area": 0.0,
                     "iscrowd": 0,  # a flat polygon of three points
                     "segmentation": [[bbox[0], bbox[1], bbox[0] + bbox[2] / 2, bbox[1], bbox[0] + bbox[2], bbox[1]]]})
    # crowd regions: uncompressed RLE (as train2017 stores them) and compressed RLE
    crowd_img = sizes[2]
    mask = np.zeros((crowd_img[1], crowd_img[0]), dtype=np.uint8, order="F")
    mask[5:20, 5:30] = 1
    counts, value, run = [], 0, 0
    for pixel in mask.flatten(order="F"):
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    add(crowd_img[2], 1, [5.0, 5.0, 25.0, 15.0], iscrowd=1,
        segmentation={"counts": counts, "size": [crowd_img[1], crowd_img[0]]})
    compressed = mask_utils.encode(mask)
    add(sizes[4][2], 18, [5.0, 5.0, 25.0, 15.0], iscrowd=1,
        segmentation={"counts": compressed["counts"].decode(), "size": list(compressed["size"])})
    path = root / "annotations.json"
    categories = CATEGORIES
    if all_categories:
        from mmdet.datasets import CocoDataset

        categories = [{"id": i, "name": n, "supercategory": ""} for i, n in zip(COCO_IDS, CocoDataset.CLASSES)]
    path.write_text(json.dumps({"info": {"year": 2017}, "licenses": [], "images": imgs, "annotations": anns,
                                "categories": categories}))
    return path
