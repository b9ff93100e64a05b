"""mmengine's checkpoint URI schemes, routed through the core's cache and safe loader
(:class:`model_hub_mmdet.checkpoint_schemes.CheckpointSchemes`).

``init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')``, ``load_from`` and mmdet's own
``init_detector`` resolve a checkpoint through ``mmengine.runner.CheckpointLoader``. mmengine 0.10.7's loaders call
``torch.load`` without ``weights_only``; since torch 2.6 that means ``weights_only=True`` with no allow-list, so
any checkpoint whose ``meta`` holds more than tensors (mmengine's own checkpoints keep a ``message_hub`` of
``HistoryBuffer`` objects) fails to load, and mmengine's eventual fix turns the safe loader off everywhere. The
fix here sits at the loader: every scheme, local files included, goes through the core's
:func:`~model_hub_mmdet.weights.loading.load_checkpoint_file`, which loads downloads as plain tensors only and the
user's own files (local paths, their buckets) in full, with a warning, when they hold more. Downloads also use the
shared, locked, resumable cache instead of ``torch.hub``'s, and ``gs://`` works.
"""

from __future__ import annotations

from types import ModuleType

from model_hub_mmdet.checkpoint_schemes import CheckpointSchemes

# The keys of CheckpointLoader._schemes taken over: '' is the local-file fallback, and the s3 key is mmengine's
# own regular expression (its Petrel loader), replaced so that `s3://` reads through our S3 client.
PREFIXES = ("", "http://", "https://", r"(\S+\:)?s3://", "gs://", "torchvision://", "modelzoo://", "open-mmlab://",
            "openmmlab://", "mmcls://")


def _runner_checkpoint() -> ModuleType:
    from mmengine.runner import checkpoint

    return checkpoint


SCHEMES = CheckpointSchemes(PREFIXES, _runner_checkpoint, home="_get_mmengine_home")
register_checkpoint_schemes = SCHEMES.register
