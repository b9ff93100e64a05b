"""mmengine's checkpoint URI schemes: routed through the core's cache and safe loader, and their name tables.

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

from typing import Any

from model_hub_mmdet.weights.loading import MapLocation, load_checkpoint_file, resolve_weights

# The keys of CheckpointLoader._schemes this module takes over: '' is the local-file fallback, and the s3 key is
# mmengine's own regular expression (its Petrel loader), replaced so that `s3://` reads through our S3 client.
SCHEMES = (
    "",
    "http://",
    "https://",
    r"(\S+\:)?s3://",
    "gs://",
    "torchvision://",
    "modelzoo://",
    "open-mmlab://",
    "openmmlab://",
    "mmcls://",
)


def load_from_model_hub_cache(filename: str, map_location: MapLocation = None, *args: Any, **kwargs: Any) -> Any:
    """An mmengine checkpoint loader: ``filename`` through :func:`resolve_weights`, then the trust-aware load.
    (mmengine logs ``loader.__name__[10:]``, hence the ``load_from_`` prefix.)"""
    src = resolve_weights(filename)
    checkpoint = load_checkpoint_file(src.path, src.trusted, filename, map_location=map_location)
    if filename.startswith("mmcls://"):
        from mmengine.runner.checkpoint import _process_mmcls_checkpoint

        checkpoint = _process_mmcls_checkpoint(checkpoint)
    return checkpoint


def register_checkpoint_schemes() -> None:
    """Make mmengine's ``CheckpointLoader`` use :func:`load_from_model_hub_cache` for local files and every remote
    scheme (idempotent). ``pavi://`` and ``petrel://`` keep mmengine's loaders."""
    from mmengine.runner import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes=list(SCHEMES), loader=load_from_model_hub_cache, force=True)


def torchvision_models() -> dict[str, str]:
    """``torchvision://`` names -> URLs, as mmengine builds them from the installed torchvision."""
    from mmengine.runner.checkpoint import get_torchvision_models

    return get_torchvision_models()


def external_models() -> dict[str, str]:
    """``open-mmlab://`` names -> URLs (or paths under :func:`openmmlab_home`), mmengine's table plus the user's."""
    from mmengine.runner.checkpoint import get_external_models

    return get_external_models()


def deprecated_model_names() -> dict[str, str]:
    """Renamed ``open-mmlab://`` names -> their replacement."""
    from mmengine.runner.checkpoint import get_deprecated_model_names

    return get_deprecated_model_names()


def mmcls_models() -> dict[str, str]:
    """``mmcls://`` names -> URLs."""
    from mmengine.runner.checkpoint import get_mmcls_models

    return get_mmcls_models()


def openmmlab_home() -> str:
    """``$MMENGINE_HOME``: where relative ``open-mmlab://`` table entries are found."""
    from mmengine.runner.checkpoint import _get_mmengine_home

    return _get_mmengine_home()
