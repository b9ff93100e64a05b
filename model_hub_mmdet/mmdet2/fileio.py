"""The core's storage clients as mmcv 1.x ``FileClient`` backends.

mmcv's ``FileClient.register_backend`` takes subclasses of its ``BaseStorageBackend``; the core's clients are plain
classes with the same methods (``get``, ``get_text``, ``get_local_path``, ``exists``, ``join_path``, ...), so they are
registered as virtual subclasses of that ABC rather than made to inherit from mmcv.
"""

from __future__ import annotations

from typing import Any

from mmcv.fileio import FileClient
from mmcv.fileio.file_client import BaseStorageBackend

from model_hub_mmdet import storage


def _client(file_client_args: dict[str, Any]) -> Any:
    return FileClient(**file_client_args).client


def register() -> None:
    """Register ``s3``, ``gcs`` and ``fake`` with mmcv (idempotent: re-registering replaces them and drops cached
    instances); ``s3://`` replaces mmcv's internal Petrel client."""
    for name, (cls, prefixes) in storage.BACKENDS.items():
        BaseStorageBackend.register(cls)
        FileClient.register_backend(name, cls, force=True, prefixes=list(prefixes) or None)
    storage.use_client_lookup(_client)
