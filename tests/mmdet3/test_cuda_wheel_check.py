"""The CUDA wheel check covers every mmcv op the MMDetection 3.3 zoo names (tests/cuda_wheel_zoo.py)."""

from __future__ import annotations

from cuda_wheel_zoo import uncovered


def test_the_check_covers_every_mmcv_op_the_zoo_names() -> None:
    from mmengine.registry import MODELS

    ops, missing = uncovered([MODELS])
    assert {"RoIAlign", "nms", "DCNv2"} <= ops  # (3.x builds its deformable attention in code, not by type)
    assert missing == set()
