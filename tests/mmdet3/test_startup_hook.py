"""``startup-hook.sh`` as Determined runs it, MMDetection 3.x: in a task image that holds only a torch, with the
environment variables of examples/shapes/shapes_mmdet3.yaml (MODEL_HUB_MMDET_GENERATION=3), from a copy of the
uploaded context and with no network; mmcv comes from scripts/install.sh's wheel cache as in an image that has
it baked in. Then the cluster entrypoint ``python3 -m model_hub_mmdet.run`` trains, validates and checkpoints
(tests/standin_image.py says how each part stands in for the cluster's)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from standin_image import hook_then_train

pytestmark = pytest.mark.slow


def test_the_hook_installs_3x_into_the_image_and_the_entrypoint_trains(shapes_dir: Path, tmp_path: Path) -> None:
    overrides = {"train_dataloader.num_workers": 0, "val_dataloader.num_workers": 0}
    run = hook_then_train("3", tmp_path, shapes_dir, overrides, via_install_sh=True)
    assert run["untouched"] == [], run["hook_log"][-3000:]
    assert run["torch"] == torch.__version__  # the image's torch, not one the hook brought
    assert "using cached mmcv wheel" in run["hook_log"], run["hook_log"][-3000:]
    assert run["generation"] == "mmdet3" and run["adapters"] == ["model_hub_mmdet.mmdet3"]
    assert run["mmdet"].startswith("3.") and run["mmcv"] == "2.1.0"
    assert "mmcv" in run["dists"] and "mmengine" in run["dists"] and "mmcv-full" not in run["dists"]
    assert run["mmcv_file"].startswith(str(tmp_path / "image")), run["mmcv_file"]  # installed into the image
    assert run["exit"] == 0 and run["checkpoints"], run["log"][-3000:]
    assert "coco/bbox_mAP" in run["log"], run["log"][-3000:]  # validated
