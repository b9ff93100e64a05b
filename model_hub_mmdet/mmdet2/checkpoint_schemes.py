"""mmcv's checkpoint URI schemes: routed through the core's cache and safe loader, and their name tables.

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


def torchvision_models() -> dict[str, str]:
    """``torchvision://`` names -> URLs, as mmcv builds them from the installed torchvision."""
    from mmcv.runner.checkpoint import get_torchvision_models

    return get_torchvision_models()


def external_models() -> dict[str, str]:
    """``open-mmlab://`` names -> URLs (or paths under :func:`openmmlab_home`), mmcv's table plus the user's."""
    from mmcv.runner.checkpoint import get_external_models

    return get_external_models()


def deprecated_model_names() -> dict[str, str]:
    """Renamed ``open-mmlab://`` names -> their replacement."""
    from mmcv.runner.checkpoint import get_deprecated_model_names

    return get_deprecated_model_names()


def mmcls_models() -> dict[str, str]:
    """``mmcls://`` names -> URLs."""
    from mmcv.runner.checkpoint import get_mmcls_models

    return get_mmcls_models()


def openmmlab_home() -> str:
    """``$MMCV_HOME``: where relative ``open-mmlab://`` table entries are found."""
    from mmcv.runner.checkpoint import _get_mmcv_home

    return _get_mmcv_home()
