"""Experiments for the 3.x tests: small models on the session's 64 px shapes data."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONFIGS = Path(__file__).resolve().parent / "configs"
MODELS = {
    "rtmdet": str(CONFIGS / "rtmdet_tiny_shapes.py"),
    "dino": str(CONFIGS / "dino_shapes.py"),
    "yolox": str(CONFIGS / "yolox_shapes.py"),
    "mask_rcnn": str(REPO / "examples" / "shapes" / "mask_rcnn_shapes_mmdet3.py"),
}


def data_overrides(data_dir: str | Path, nested: bool = False) -> dict[str, Any]:
    """override_mmdet_config entries pointing the datasets and the evaluators at a shapes dataset."""
    root = f"{data_dir}/"
    out: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        out[f"{split}_dataloader.dataset.data_root"] = root
    if nested:  # a dataset wrapper (YOLOX's MultiImageMixDataset) holds the dataset that reads the files
        out["train_dataloader.dataset.dataset.data_root"] = out.pop("train_dataloader.dataset.data_root")
    for key in ("val_evaluator", "test_evaluator"):
        out[f"{key}.ann_file"] = f"{root}annotations/val.json"
    out["train_dataloader.num_workers"] = 0
    out["val_dataloader.num_workers"] = 0
    return out


def experiment(data_dir: str | Path, model: str = "rtmdet", global_batch_size: int = 2, max_batches: int = 4,
               overrides: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
               **hparams: Any) -> dict[str, Any]:
    """An experiment config (as parsed YAML) training a small 3.x model on the shapes data in ``data_dir``."""
    over = data_overrides(data_dir, nested=model == "yolox")
    over.update(overrides or {})
    return {
        "name": f"test-mmdet3-{model}",
        "hyperparameters": {"global_batch_size": global_batch_size, "config_file": MODELS[model],
                            "override_mmdet_config": over, **hparams},
        "searcher": {"name": "single", "metric": "coco/bbox_mAP", "max_length": {"batches": max_batches},
                     "smaller_is_better": False},
        "data": copy.deepcopy(data) if data else {},
        "entrypoint": "model_hub_mmdet:MMDetTrial",
    }
