"""A synthetic COCO-format detection/instance-segmentation dataset: coloured shapes on textured backgrounds.

``make_shapes(out_dir)`` writes::

    out_dir/train/000000.png ...   out_dir/annotations/train.json
    out_dir/val/000000.png ...     out_dir/annotations/val.json

Everything is drawn from ``numpy.random.RandomState(seed)``: the same arguments give byte-identical files.
Shapes overlap; an occluded shape's box and polygon mask describe only its visible part, and shapes with less
than ``min_visible`` of their area visible are dropped (they stay in the picture, unannotated, like clutter),
so every annotation is learnable. Each annotation's polygons decode (pycocotools) to exactly its visible
pixels, and its ``bbox`` and ``area`` are those pixels' tight box and count, so box, mask and area agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model_hub_mmdet.errors import ConfigError

CLASSES = ("rectangle", "ellipse", "triangle")
SPLIT_SEED_OFFSET = {"train": 0, "val": 1_000_003}
MIN_PIXELS = 16  # a shape (or its visible part) smaller than this is never annotated


@dataclass(frozen=True)
class ShapesSpec:
    """Parameters of one generated split."""

    size: int = 128  # images are size x size
    min_objects: int = 2
    max_objects: int = 5
    min_extent: float = 0.15  # shape extent as a fraction of the image side
    max_extent: float = 0.5
    min_visible: float = 0.4  # drop shapes with less than this fraction visible

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 32:
            raise ConfigError(f"shapes size={self.size!r}: images must be at least 32 px; pass size=128")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ConfigError(
                f"shapes min_objects={self.min_objects}, max_objects={self.max_objects}: need 1 <= min <= max"
            )
        if not 0 < self.min_extent <= self.max_extent <= 1:
            raise ConfigError(
                f"shapes min_extent={self.min_extent}, max_extent={self.max_extent}: need 0 < min <= max <= 1"
                " (fractions of the image side)"
            )
        if not 0 <= self.min_visible <= 1:
            raise ConfigError(f"shapes min_visible={self.min_visible}: must be a fraction between 0 and 1")


@dataclass
class DrawnShape:
    """One shape as drawn: its class index, its whole mask and the part of it left visible on top."""

    label: int
    full: np.ndarray  # bool (size, size): every pixel the shape was painted on
    visible: np.ndarray  # bool (size, size): the pixels no later shape painted over


def _background(rng: np.random.RandomState, size: int) -> np.ndarray:
    """A smooth colour gradient plus low-frequency blotches and pixel noise."""
    base = rng.randint(0, 256, size=(2, 2, 3)).astype(np.float32)
    img = cv2.resize(base, (size, size), interpolation=cv2.INTER_LINEAR)
    blotches = cv2.resize(rng.randint(-40, 40, size=(6, 6, 3)).astype(np.float32), (size, size))
    noise = rng.normal(0, 8, size=(size, size, 3)).astype(np.float32)
    return np.clip(img * 0.6 + 50 + blotches + noise, 0, 255).astype(np.uint8)


def _shape_mask(rng: np.random.RandomState, kind: str, size: int, spec: ShapesSpec) -> np.ndarray:
    """A filled mask of one shape at a random place, size and rotation (it may run off the image)."""
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


def render_image(rng: np.random.RandomState, spec: ShapesSpec) -> tuple[np.ndarray, list[DrawnShape]]:
    """Paint one RGB image and return it with every shape painted on it, in drawing order (last on top)."""
    size = spec.size
    img = _background(rng, size)
    n = rng.randint(spec.min_objects, spec.max_objects + 1)
    shapes: list[DrawnShape] = []
    for _ in range(n):
        label = rng.randint(len(CLASSES))
        mask = _shape_mask(rng, CLASSES[label], size, spec) > 0
        if mask.sum() < MIN_PIXELS:
            continue
        colour = rng.randint(0, 256, 3)
        # Keep shapes distinguishable from whatever they are painted over.
        colour = np.where(np.abs(colour - img[mask].mean(0)) < 60, (colour + 128) % 256, colour)
        texture = rng.normal(0, 10, size=(size, size, 1))
        shaded = np.clip(colour[None, None, :] + texture, 0, 255).astype(np.uint8)
        img[mask] = shaded[mask]
        shapes.append(DrawnShape(int(label), mask, mask.copy()))
    covered = np.zeros((size, size), bool)
    for shape in reversed(shapes):  # later shapes are on top
        shape.visible &= ~covered
        covered |= shape.full
    return img, shapes


def polygons(mask: np.ndarray) -> list[list[float]]:
    """The outlines of ``mask`` as COCO polygons ``[x0, y0, x1, y1, ...]`` that pycocotools rasterises back to
    exactly ``mask``.

    COCO polygons live in continuous coordinates (pixel ``i`` spans ``[i, i+1)``) and a pixel is inside when its
    centre is. OpenCV contours run through the centres of the border pixels, so used as they are they lose part
    of the border. Tracing the mask at twice the resolution puts each vertex a quarter pixel outside the border
    pixel centres instead, which round-trips exactly and keeps even one-pixel slivers."""
    up = cv2.resize(mask.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [((c.reshape(-1) + 0.5) / 2).tolist() for c in contours if len(c) >= 3]


def is_annotated(shape: DrawnShape, spec: ShapesSpec) -> bool:
    """The visible-area rule: annotate a shape only if enough of it shows."""
    seen = int(shape.visible.sum())
    return seen >= MIN_PIXELS and seen >= spec.min_visible * int(shape.full.sum())


def annotate(shapes: list[DrawnShape], spec: ShapesSpec) -> list[dict]:
    """COCO annotations (without ids) of the shapes that pass :func:`is_annotated`, in drawing order."""
    anns = []
    for shape in shapes:
        if not is_annotated(shape, spec):
            continue
        polys = polygons(shape.visible)
        if not polys:
            continue
        ys, xs = np.nonzero(shape.visible)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        anns.append(
            dict(
                category_id=shape.label + 1,
                bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                area=float(shape.visible.sum()),
                segmentation=polys,
                iscrowd=0,
            )
        )
    return anns


def make_split(out_dir: str | Path, split: str, count: int, seed: int = 0, spec: ShapesSpec = ShapesSpec()) -> Path:
    """Write ``count`` images to ``out_dir/split/`` and their COCO annotations; return the annotation path."""
    out_dir = Path(out_dir)
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed + SPLIT_SEED_OFFSET.get(split, 7))
    images, annotations = [], []
    for i in range(count):
        img, shapes = render_image(rng, spec)
        name = f"{i:06d}.png"
        cv2.imwrite(str(out_dir / split / name), img[:, :, ::-1])  # RGB -> BGR for cv2
        images.append(dict(id=i + 1, file_name=name, width=spec.size, height=spec.size))
        for ann in annotate(shapes, spec):
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
    """Write train and val splits under ``out_dir``; returns ``{"train": ann_path, "val": ann_path}``.

    ``spec_kwargs`` are :class:`ShapesSpec` fields (``max_objects=3``, ``min_visible=0.5``, ...)."""
    unknown = sorted(set(spec_kwargs) - set(ShapesSpec.__dataclass_fields__))
    if unknown:
        valid = ", ".join(f for f in ShapesSpec.__dataclass_fields__ if f != "size")
        raise ConfigError(f"make_shapes: unknown option(s) {', '.join(unknown)}; valid: size, {valid}")
    spec = ShapesSpec(size=size, **spec_kwargs)
    return {
        "train": make_split(out_dir, "train", train, seed, spec),
        "val": make_split(out_dir, "val", val, seed, spec),
    }
