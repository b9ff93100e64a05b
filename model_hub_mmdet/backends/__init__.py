"""Object-storage backends for mmcv's ``FileClient``: ``s3`` (Amazon S3 and S3-compatible) and ``gcs``.

Importing this package (``import model_hub_mmdet`` does) registers them under the backend names ``s3`` and ``gcs``
and the URI prefixes ``s3://``, ``gs://`` and ``gcs://`` (``s3://`` replaces mmcv's internal Petrel client).
Then ``data.file_client_args: {backend: s3, bucket_name: ...}`` in an experiment, or an ``s3://bucket/...``
``data_root`` with ``backend: s3``, reads images and annotation files from the bucket through a local cache.
It also registers ``fake`` (:mod:`.fake`): one image for every image read, annotation files from disk.

The SDKs (boto3, google-cloud-storage) are imported only when a backend makes its first client, so this import
is cheap. See :mod:`.base` for path rules, :mod:`.cache` for the cache, :mod:`.retry` for retries and
:mod:`.prefetch` for warming the cache ahead of the data loader.
"""

from __future__ import annotations

from mmcv.fileio import FileClient

from model_hub_mmdet.backends.base import ObjectStoreBackend, normalize_file_client_args
from model_hub_mmdet.backends.cache import ObjectCache, default_cache_dir, parse_size
from model_hub_mmdet.backends.fake import FakeBackend
from model_hub_mmdet.backends.gcs import GCSBackend
from model_hub_mmdet.backends.retry import RetryPolicy
from model_hub_mmdet.backends.s3 import S3Backend

__all__ = [
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
]


def register() -> None:
    """Register the backends with mmcv (idempotent: re-registering replaces them and drops cached instances)."""
    FileClient.register_backend("s3", S3Backend, force=True, prefixes=["s3"])
    FileClient.register_backend("gcs", GCSBackend, force=True, prefixes=["gs", "gcs"])
    FileClient.register_backend("fake", FakeBackend, force=True)  # images faked, annotations from disk: fake.py


def object_backend(file_client_args: dict | None) -> ObjectStoreBackend | None:
    """The (shared, mmcv-cached) object-store backend that ``file_client_args`` selects, or None for other
    backends (disk, http, ...)."""
    if not file_client_args:
        return None
    client = FileClient(**normalize_file_client_args(file_client_args)).client
    return client if isinstance(client, ObjectStoreBackend) else None


register()
