"""Real S3 (moto) and GCS (fake-gcs-server) servers on 127.0.0.1 for the storage-backend tests."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import FaultProxy, Server, isolate_cloud_env, make_bucket

import model_hub_mmdet  # noqa: F401  (registers s3/gcs with the installed generation's file I/O)

_names = itertools.count()


def unique_bucket(tag: str) -> str:
    """A fresh, valid bucket name (S3 and GCS rules: lowercase, 3-63 chars)."""
    return f"{tag}-{os.getpid()}-{next(_names)}"


@pytest.fixture(autouse=True)
def storage_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials through the standard environment chain, and no stray user config or proxies."""
    isolate_cloud_env(monkeypatch, tmp_path)


class Store:
    """One bucket on one server, reached through a counting, fault-injecting proxy."""

    def __init__(self, kind: str, server: Server, bucket: str, cache_dir: Path) -> None:
        self.kind, self.server, self.bucket = kind, server, bucket
        self.proxy = FaultProxy(server.endpoint)
        endpoint_key = "endpoint_url" if kind == "s3" else "emulator_host"
        self.args = {"backend": "s3" if kind == "s3" else "gcs", "bucket_name": bucket,
                     endpoint_key: self.proxy.endpoint, "cache_dir": str(cache_dir), "retry_backoff": 0.01}
        self.scheme = "s3" if kind == "s3" else "gs"

    def uri(self, key: str) -> str:
        return f"{self.scheme}://{self.bucket}/{key}"

    def backend(self, **changes):
        """The backend mmcv's FileClient builds for these args (with ``changes``)."""
        from mmcv import FileClient

        return FileClient(**{**self.args, **changes}).client


@pytest.fixture(params=["s3", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh bucket with a fresh cache, on each of the two servers."""
    server = request.getfixturevalue("moto" if request.param == "s3" else "fake_gcs")
    bucket = unique_bucket(request.param)
    make_bucket(request.param, server.endpoint, bucket)
    st = Store(request.param, server, bucket, tmp_path / "cache")
    yield st
    st.proxy.close()
