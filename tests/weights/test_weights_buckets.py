"""``s3://`` and ``gs://`` weights through the cache, against real S3 (moto) and GCS (fake-gcs-server) servers."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from servers import Server, isolate_cloud_env, make_bucket
from weights_helpers import build_tiny, tiny_detector_cfg

from model_hub_mmdet.errors import WeightsError
from model_hub_mmdet.weights import fetch, warm_start


@pytest.fixture
def s3_env(moto: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Server:
    isolate_cloud_env(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto.endpoint)
    return moto


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


def test_gcs_weights(fake_gcs: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                     coco_checkpoint: bytes):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    isolate_cloud_env(monkeypatch, tmp_path)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.endpoint)
    make_bucket("gcs", fake_gcs.endpoint, "weights-g")
    client = storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": fake_gcs.endpoint}
    )
    client.bucket("weights-g").blob("model.pth").upload_from_string(coco_checkpoint)

    cfg = tiny_detector_cfg(num_classes=80)
    report = warm_start(build_tiny(cfg), cfg, {"pretrained_weights": "gs://weights-g/model.pth"})
    assert report["matched"] == len(torch.load(io.BytesIO(coco_checkpoint), weights_only=True)["state_dict"])
    with pytest.raises(WeightsError, match="gs://weights-g/missing.pth does not exist"):
        fetch("gs://weights-g/missing.pth")
