"""Storage clients for datasets and weights: ``s3`` (Amazon S3 and S3-compatible), ``gcs`` and ``fake``.

Plain Python clients with a local read-through cache (:mod:`.cache`), retries (:mod:`.retry`) and prefetching
(:mod:`.prefetch`); they import neither mmcv nor mmengine. Each MMDetection adapter registers them with its
generation's file I/O (``model_hub_mmdet.mmdet2.fileio``), under the backend names ``s3``, ``gcs`` and ``fake``
and the URI prefixes ``s3://``, ``gs://`` and ``gcs://``, when ``import model_hub_mmdet`` finds that generation
installed. Then ``data.file_client_args: {backend: s3, bucket_name: ...}`` in an experiment, or an
``s3://bucket/...`` ``data_root`` with ``backend: s3``, reads images and annotation files from the bucket.

The SDKs (boto3, google-cloud-storage) are imported only when a backend makes its first client, so this import
is cheap. See :mod:`.base` for path rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from model_hub_mmdet.storage.base import ObjectStoreBackend, normalize_file_client_args
from model_hub_mmdet.storage.cache import ObjectCache, default_cache_dir, parse_size
from model_hub_mmdet.storage.fake import FakeBackend
from model_hub_mmdet.storage.gcs import GCSBackend
from model_hub_mmdet.storage.retry import RetryPolicy
from model_hub_mmdet.storage.s3 import S3Backend

__all__ = [
    "BACKENDS",
    "FakeBackend",
    "GCSBackend",
    "ObjectCache",
    "ObjectStoreBackend",
    "RetryPolicy",
    "S3Backend",
    "default_cache_dir",
    "normalize_file_client_args",
    "object_backend",
    "parse_size",
    "register",
    "use_client_lookup",
]

# backend name -> (class, URI prefixes it serves); what each adapter registers with its generation's file I/O.
BACKENDS: dict[str, tuple[type, tuple[str, ...]]] = {
    "s3": (S3Backend, ("s3",)),
    "gcs": (GCSBackend, ("gs", "gcs")),
    "fake": (FakeBackend, ()),  # images faked, annotations from disk: fake.py
}

_lookup: Callable[[dict[str, Any]], Any] | None = None
_instances: dict[str, Any] = {}


def register() -> None:
    """Deprecated (use ``model_hub_mmdet.generation.setup()``, or the adapter's ``fileio.register``): register the
    backends with the installed generation's file I/O."""
    import warnings

    from model_hub_mmdet import generation

    warnings.warn("model_hub_mmdet.storage.register() is deprecated: the installed generation's adapter registers"
                  " the backends (model_hub_mmdet.generation.setup())", DeprecationWarning, stacklevel=2)
    generation.adapter("fileio").register()


def use_client_lookup(lookup: Callable[[dict[str, Any]], Any] | None) -> None:
    """Make :func:`object_backend` return the file I/O's own (cached) instance for a ``file_client_args``, so the
    prefetcher and the datasets share one client. Set by the adapter that registered the backends."""
    global _lookup
    _lookup = lookup


def object_backend(file_client_args: dict | None) -> ObjectStoreBackend | None:
    """The (shared) object-store backend that ``file_client_args`` selects, or None for other backends (disk,
    http, ...)."""
    if not file_client_args:
        return None
    args = normalize_file_client_args(file_client_args)
    if _lookup is not None:
        client = _lookup(args)
    else:
        entry = BACKENDS.get(args.get("backend"))
        if entry is None:
            return None
        key = repr(sorted(args.items()))
        if key not in _instances:
            _instances[key] = entry[0](**{k: v for k, v in args.items() if k != "backend"})
        client = _instances[key]
    return client if isinstance(client, ObjectStoreBackend) else None
