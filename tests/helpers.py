"""Shared helpers for tests that train real (tiny) mmdet models through Determined's local Trainer."""

from __future__ import annotations

import copy
import socket
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).parent / "mmdet_configs"  # the tiny mmdet configs the training tests merge
BASE_CONFIGS = {
    "faster_rcnn": "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py",
    "mask_rcnn": "mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py",
    "retinanet": "retinanet/retinanet_r50_fpn_1x_coco.py",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def data_overrides(data_dir: str | Path, prefix: str = "") -> dict[str, str]:
    """override_mmdet_config entries pointing train/val/test at a shapes dataset in ``data_dir``.
    ``prefix`` replaces ``data_dir`` in the paths (e.g. ``s3://bucket/shapes``) when given."""
    root = prefix.rstrip("/") if prefix else str(data_dir)
    out = {}
    for split, folder in (("train", "train"), ("val", "val"), ("test", "val")):
        out[f"data.{split}.ann_file"] = f"{root}/annotations/{folder}.json"
        out[f"data.{split}.img_prefix"] = f"{root}/{folder}/"
    return out


def tiny_experiment(
    data_dir: str | Path,
    model: str = "faster_rcnn",
    global_batch_size: int = 2,
    max_batches: int = 4,
    overrides: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    prefix: str = "",
    **hparams: Any,
) -> dict[str, Any]:
    """An experiment config (as parsed YAML) training a tiny model on the shapes data in ``data_dir``."""
    over = data_overrides(data_dir, prefix)
    over.update(overrides or {})
    return {
        "name": f"test-{model}",
        "hyperparameters": {
            "global_batch_size": global_batch_size,
            "config_file": BASE_CONFIGS[model],
            "merge_config": str(CONFIGS / f"tiny_{model}.py"),
            "override_mmdet_config": over,
            **hparams,
        },
        "searcher": {"name": "single", "metric": "bbox_mAP", "max_length": {"batches": max_batches},
                     "smaller_is_better": False},
        "data": copy.deepcopy(data) if data else {},
        "entrypoint": "model_hub_mmdet:MMDetTrial",
    }
