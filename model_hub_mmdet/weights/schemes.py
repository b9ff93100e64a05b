"""Route mmcv's checkpoint URI schemes through this package's cache and safe loader.

``model.init_weights()`` with ``init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')`` (and
``load_checkpoint`` in mmdet's own tools) resolves the URI through ``mmcv.runner.CheckpointLoader``. Its stock
loaders download with ``torch.hub`` into ``~/.cache/torch`` on rank 0 behind a barrier, unpickle without limits
and cannot read ``gs://`` at all; the loaders registered here use the shared, locked, resumable cache instead, and
the same trust rules as ``warm_start``.
"""

from __future__ import annotations

from typing import Any

from model_hub_mmdet.weights.loading import MapLocation, load_checkpoint_file, resolve_weights

SCHEMES = (
    "http://",
    "https://",
    "s3://",
    "gs://",
    "torchvision://",
    "modelzoo://",
    "open-mmlab://",
    "openmmlab://",
    "mmcls://",
)


def load_from_model_hub_cache(filename: str, map_location: MapLocation = None) -> Any:
    """An mmcv checkpoint loader: ``filename`` through :func:`resolve_weights`, then the trust-aware load.
    (mmcv logs ``loader.__name__[10:]``, hence the ``load_from_`` prefix.)"""
    src = resolve_weights(filename)
    checkpoint = load_checkpoint_file(src.path, src.trusted, filename, map_location=map_location)
    if filename.startswith("mmcls://"):
        from mmcv.runner.checkpoint import _process_mmcls_checkpoint

        checkpoint = _process_mmcls_checkpoint(checkpoint)
    return checkpoint


def register_checkpoint_schemes() -> None:
    """Make mmcv's ``CheckpointLoader`` use :func:`load_from_model_hub_cache` for every remote scheme (idempotent).
    mmcv's own loader for ``open-mmlab:s3://`` style Ceph paths stays in place."""
    from mmcv.runner import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes=list(SCHEMES), loader=load_from_model_hub_cache, force=True)
