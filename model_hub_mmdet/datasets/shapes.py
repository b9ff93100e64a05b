"""A synthetic COCO-format detection/instance-segmentation dataset: coloured shapes on textured backgrounds.

``make_shapes(out_dir)`` writes::

    out_dir/train/000000.png ...   out_dir/annotations/train.json
    out_dir/val/000000.png ...     out_dir/annotations/val.json

Everything is drawn from ``numpy.random.RandomState(seed)``: the same arguments give byte-identical files.
Shapes overlap; an occluded shape's box and polygon mask describe only its visible part, and shapes that
are mostly hidden are dropped, so every annotation is learnable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("rectangle", "ellipse", "triangle")
SPLIT_SEED_OFFSET = {"train": 0, "val": 1_000_003}


@dataclass(frozen=True)
class ShapesSpec:
    """Parameters of one generated split."""

    size: int = 128  # images are size x size
    min_objects: int = 2
    max_objects: int = 5
    min_extent: float = 0.15  # shape extent as a fraction of the image side
    max_extent: float = 0.5
    min_visible: float = 0.4  # drop shapes with less than this fraction visible


def _background(rng: np.random.RandomState, size: int) -> np.ndarray:
    """A smooth colour gradient plus low-frequency blotches and pixel noise."""
    base = rng.randint(0, 256, size=(2, 2, 3)).astype(np.float32)
    img = cv2.resize(base, (size, size), interpolation=cv2.INTER_LINEAR)
    blotches = cv2.resize(rng.randint(-40, 40, size=(6, 6, 3)).astype(np.float32), (size, size))
    noise = rng.normal(0, 8, size=(size, size, 3)).astype(np.float32)
    return np.clip(img * 0.6 + 50 + blotches + noise, 0, 255).astype(np.uint8)


def _shape_mask(rng: np.random.RandomState, kind: str, size: int, spec: ShapesSpec) -> np.ndarray:
    """A filled mask of one shape at a random place, size and rotation."""
    mask = np.zeros((size, size), np.uint8)
    w = rng.uniform(spec.min_extent, spec.max_extent) * size
    h = rng.uniform(spec.min_extent, spec.max_extent) * size
    cx, cy = rng.uniform(w / 3, size - w / 3), rng.uniform(h / 3, size - h / 3)
    angle = rng.uniform(0, 180)
    if kind == "rectangle":
        box = cv2.boxPoints(((cx, cy), (w, h), angle))
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    elif kind == "ellipse":
        cv2.ellipse(mask, (int(cx), int(cy)), (int(w / 2), int(h / 2)), angle, 0, 360, 1, -1)
    else:
        theta = np.deg2rad(angle) + np.array([0.0, 2.1, 4.2]) + rng.uniform(-0.3, 0.3, 3)
        pts = np.stack([cx + w / 2 * np.cos(theta), cy + h / 2 * np.sin(theta)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask


def _polygons(mask: np.ndarray) -> list[list[float]]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def _draw_image(rng: np.random.RandomState, spec: ShapesSpec):
    size = spec.size
    img = _background(rng, size)
    n = rng.randint(spec.min_objects, spec.max_objects + 1)
    objects = []  # (label, full mask), in drawing order
    for _ in range(n):
        label = rng.randint(len(CLASSES))
        mask = _shape_mask(rng, CLASSES[label], size, spec)
        if mask.sum() < 16:
            continue
        colour = rng.randint(0, 256, 3)
        # Keep shapes distinguishable from the background they sit on.
        colour = np.where(np.abs(colour - img[mask > 0].mean(0)) < 60, (colour + 128) % 256, colour)
        texture = rng.normal(0, 10, size=(size, size, 1))
        shaded = np.clip(colour[None, None, :] + texture, 0, 255).astype(np.uint8)
        img[mask > 0] = shaded[mask > 0]
        objects.append((label, mask))
    anns = []
    covered = np.zeros((size, size), bool)
    for label, mask in reversed(objects):  # later shapes are on top
        visible = (mask > 0) & ~covered
        covered |= mask > 0
        if visible.sum() < spec.min_visible * mask.sum() or visible.sum() < 16:
            continue
        polys = _polygons(visible)
        if not polys:
            continue
        ys, xs = np.nonzero(visible)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        anns.append(
            dict(
                category_id=int(label) + 1,
                bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                area=float(visible.sum()),
                segmentation=polys,
                iscrowd=0,
            )
        )
    return img, anns[::-1]


def make_split(out_dir: str | Path, split: str, count: int, seed: int = 0, spec: ShapesSpec = ShapesSpec()) -> Path:
    """Write ``count`` images to ``out_dir/split/`` and their COCO annotations; return the annotation path."""
    out_dir = Path(out_dir)
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed + SPLIT_SEED_OFFSET.get(split, 7))
    images, annotations = [], []
    for i in range(count):
        img, anns = _draw_image(rng, spec)
        name = f"{i:06d}.png"
        cv2.imwrite(str(out_dir / split / name), img[:, :, ::-1])  # RGB -> BGR for cv2
        images.append(dict(id=i + 1, file_name=name, width=spec.size, height=spec.size))
        for ann in anns:
            annotations.append(dict(ann, id=len(annotations) + 1, image_id=i + 1))
    coco = dict(
        info=dict(description=f"model_hub_mmdet synthetic shapes, split={split}, seed={seed}"),
        images=images,
        annotations=annotations,
        categories=[dict(id=i + 1, name=name, supercategory="shape") for i, name in enumerate(CLASSES)],
    )
    ann_path = out_dir / "annotations" / f"{split}.json"
    ann_path.write_text(json.dumps(coco))
    return ann_path


def make_shapes(
    out_dir: str | Path, train: int = 400, val: int = 50, size: int = 128, seed: int = 0, **spec_kwargs
) -> dict[str, Path]:
    """Write train and val splits under ``out_dir``; returns ``{"train": ann_path, "val": ann_path}``."""
    spec = ShapesSpec(size=size, **spec_kwargs)
    return {
        "train": make_split(out_dir, "train", train, seed, spec),
        "val": make_split(out_dir, "val", val, seed, spec),
    }
