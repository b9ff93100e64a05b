"""The core's storage clients as mmengine file I/O backends.

mmengine's ``register_backend`` takes subclasses of its ``BaseStorageBackend``; the core's clients are plain classes
with the same methods (``get``, ``get_text``, ``get_local_path``, ``exists``, ``join_path``, ...), so they are
registered as virtual subclasses of that ABC rather than made to inherit from mmengine. The ``s3`` name and the
``s3://`` prefix already belong to mmengine's Petrel backend, hence ``force=True``.
"""

from __future__ import annotations

from typing import Any

from model_hub_mmdet import storage


def _client(backend_args: dict[str, Any]) -> Any:
    from mmengine.fileio import get_file_backend

    return get_file_backend(backend_args=backend_args)


def register() -> None:
    """Register ``s3``, ``gcs`` and ``fake`` with mmengine's file I/O (and its deprecated ``FileClient``), dropping
    cached instances of earlier registrations (idempotent)."""
    from mmengine.fileio import BaseStorageBackend, FileClient, io, register_backend

    for name, (cls, prefixes) in storage.BACKENDS.items():
        BaseStorageBackend.register(cls)
        register_backend(name, cls, force=True, prefixes=list(prefixes) or None)
        FileClient.register_backend(name, cls, force=True, prefixes=list(prefixes) or None)
        for key in [k for k in io.backend_instances if k.split(":", 1)[0] == name]:
            del io.backend_instances[key]
    storage.use_client_lookup(_client)
