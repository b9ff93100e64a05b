"""Helpers shared by the config-pipeline tests (a uniquely named module: ``conftest`` is not importable)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

FASTER_RCNN = "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py"
MASK_RCNN = "mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py"
LOADING_TYPES = {"LoadImageFromFile", "LoadAnnotations", "LoadPanopticAnnotations", "LoadMultiChannelImageFromFiles"}


def walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every (path, value) in a nested config, dicts and lists alike (independent of the package's walkers)."""
    yield path, node
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from walk(v, path + (str(k),))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from walk(v, path + (str(i),))


def loading_steps_anywhere(cfg: Mapping) -> dict[tuple, Mapping]:
    """Every file-loading pipeline step anywhere in the config, by path."""
    root = getattr(cfg, "_cfg_dict", cfg)  # an mmcv.Config is not a Mapping
    return {p: v for p, v in walk(root) if isinstance(v, Mapping) and v.get("type") in LOADING_TYPES}


def shapes_data(shapes: dict[str, Path]) -> dict[str, Any]:
    """Overrides that point a COCO config's train/val/test at the shapes dataset."""
    root = shapes["root"]
    classes = ["rectangle", "ellipse", "triangle"]
    out: dict[str, Any] = {}
    for split, ann, img in (("train", "train", "train"), ("val", "val", "val"), ("test", "val", "val")):
        out[f"data.{split}.ann_file"] = str(shapes[ann])
        out[f"data.{split}.img_prefix"] = str(root / img) + "/"
        out[f"data.{split}.classes"] = classes
    return out
