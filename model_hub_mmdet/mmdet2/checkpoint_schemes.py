"""mmcv's checkpoint URI schemes, routed through the core's cache and safe loader
(:class:`model_hub_mmdet.checkpoint_schemes.CheckpointSchemes`).

``model.init_weights()`` with ``init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')`` (and
``load_checkpoint`` in mmdet's own tools) resolves the URI through ``mmcv.runner.CheckpointLoader``; mmcv's own
loader for ``open-mmlab:s3://`` style Ceph paths stays in place.
"""

from __future__ import annotations

from types import ModuleType

from model_hub_mmdet.checkpoint_schemes import CheckpointSchemes

PREFIXES = ("http://", "https://", "s3://", "gs://", "torchvision://", "modelzoo://", "open-mmlab://", "openmmlab://",
            "mmcls://")


def _runner_checkpoint() -> ModuleType:
    from mmcv.runner import checkpoint

    return checkpoint


SCHEMES = CheckpointSchemes(PREFIXES, _runner_checkpoint, home="_get_mmcv_home")
load_from_model_hub_cache = SCHEMES.loader
register_checkpoint_schemes = SCHEMES.register
