"""``startup-hook.sh`` as Determined runs it, MMDetection 2.x: in a task image that holds only a torch, with the
environment variables of examples/shapes/shapes.yaml, from a copy of the uploaded context and with no network,
then the cluster entrypoint ``python3 -m model_hub_mmdet.run`` trains, validates and checkpoints
(tests/standin_image.py says how each part stands in for the cluster's)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from standin_image import hook_then_train

pytestmark = pytest.mark.slow


def test_the_hook_installs_2x_into_the_image_and_the_entrypoint_trains(shapes_dir: Path, tmp_path: Path) -> None:
    run = hook_then_train("2", tmp_path, shapes_dir, {"data.workers_per_gpu": 0}, via_install_sh=False)
    assert run["untouched"] == [], run["hook_log"][-3000:]
    assert run["torch"] == torch.__version__  # the image's torch, not one the hook brought
    assert run["generation"] == "mmdet2" and run["adapters"] == ["model_hub_mmdet.mmdet2"]
    assert run["mmdet"].startswith("2.") and run["mmcv"] == "1.7.2"
    assert "mmcv-full" in run["dists"] and "mmcv" not in run["dists"] and "mmengine" not in run["dists"]
    assert run["mmcv_file"].startswith(str(tmp_path / "image")), run["mmcv_file"]  # installed into the image
    assert run["exit"] == 0 and run["checkpoints"], run["log"][-3000:]
    assert "bbox_mAP" in run["log"], run["log"][-3000:]  # validated
