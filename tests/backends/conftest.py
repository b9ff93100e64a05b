"""Real S3 (moto) and GCS (fake-gcs-server) servers on 127.0.0.1 for the storage-backend tests."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import FaultProxy, Server, make_bucket, start_fake_gcs, start_moto

import model_hub_mmdet.backends  # noqa: F401  (registers s3/gcs with mmcv even before the package does)

_names = itertools.count()


def unique_bucket(tag: str) -> str:
    """A fresh, valid bucket name (S3 and GCS rules: lowercase, 3-63 chars)."""
    return f"{tag}-{os.getpid()}-{next(_names)}"


@pytest.fixture(autouse=True)
def storage_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials through the standard environment chain, and no stray user config or proxies."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "STORAGE_EMULATOR_HOST", "HTTP_PROXY",
                "HTTPS_PROXY", "http_proxy", "https_proxy", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def moto() -> Iterator[Server]:
    """moto's S3 server, shared by the session (tests use their own buckets)."""
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[Server]:
    """fake-gcs-server in memory, shared by the session."""
    server = start_fake_gcs()
    yield server
    server.stop()


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
