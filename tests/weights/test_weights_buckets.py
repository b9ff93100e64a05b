"""``s3://`` and ``gs://`` weights through the cache, against real S3 (moto) and GCS (fake-gcs-server) servers."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from servers import Server, make_bucket, start_fake_gcs, start_moto
from weights_helpers import build_tiny, tiny_detector_cfg

from model_hub_mmdet.errors import WeightsError
from model_hub_mmdet.weights import fetch, warm_start


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[Server]:
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gcs() -> Iterator[Server]:
    server = start_fake_gcs()
    yield server
    server.stop()


@pytest.fixture
def s3_env(moto_s3: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Server:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_s3


def _put_s3(endpoint: str, bucket: str, key: str, body: bytes) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").put_object(Bucket=bucket, Key=key, Body=body)


def test_s3_weights_warm_start_and_refetch_when_overwritten(s3_env: Server, coco_checkpoint: bytes):
    make_bucket("s3", s3_env.endpoint, "weights-a")
    _put_s3(s3_env.endpoint, "weights-a", "runs/1/model.pth", coco_checkpoint)
    cfg = tiny_detector_cfg(num_classes=80)
    model = build_tiny(cfg)
    report = warm_start(model, cfg, {"pretrained_weights": "s3://weights-a/runs/1/model.pth"})
    assert (report["matched"], report["mismatched"]) == (len(model.state_dict()), 0)
    first = Path(report["path"])
    assert fetch("s3://weights-a/runs/1/model.pth") == first  # cached under the object's ETag

    other = io.BytesIO()
    torch.save({"state_dict": build_tiny(cfg, seed=5).state_dict()}, other)
    _put_s3(s3_env.endpoint, "weights-a", "runs/1/model.pth", other.getvalue())
    second = fetch("s3://weights-a/runs/1/model.pth")
    assert second != first and second.read_bytes() == other.getvalue()

    with pytest.raises(WeightsError, match="s3://weights-a/runs/2/model.pth does not exist"):
        fetch("s3://weights-a/runs/2/model.pth")


def test_gcs_weights(gcs: Server, monkeypatch: pytest.MonkeyPatch, coco_checkpoint: bytes):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.endpoint)
    make_bucket("gcs", gcs.endpoint, "weights-g")
    client = storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs.endpoint}
    )
    client.bucket("weights-g").blob("model.pth").upload_from_string(coco_checkpoint)

    cfg = tiny_detector_cfg(num_classes=80)
    report = warm_start(build_tiny(cfg), cfg, {"pretrained_weights": "gs://weights-g/model.pth"})
    assert report["matched"] == len(torch.load(io.BytesIO(coco_checkpoint), weights_only=True)["state_dict"])
    with pytest.raises(WeightsError, match="gs://weights-g/missing.pth does not exist"):
        fetch("gs://weights-g/missing.pth")
