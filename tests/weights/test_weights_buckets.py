"""``s3://`` and ``gs://`` weights through the storage backends and their cache, against real S3 (moto) and GCS
(fake-gcs-server) servers."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from servers import FaultProxy, Server, isolate_cloud_env, make_bucket
from weights_helpers import build_tiny, tiny_detector_cfg

from model_hub_mmdet.errors import WeightsError
from model_hub_mmdet.weights import fetch, warm_start
from model_hub_mmdet.weights.download import store_args


@pytest.fixture
def s3_env(moto: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Server:
    isolate_cloud_env(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto.endpoint)
    return moto


def _put_s3(endpoint: str, bucket: str, key: str, body: bytes) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").put_object(Bucket=bucket, Key=key, Body=body)


def test_s3_weights_warm_start_and_refetch_when_overwritten(s3_env: Server, coco_checkpoint: bytes, weights_env: Path):
    make_bucket("s3", s3_env.endpoint, "weights-a")
    _put_s3(s3_env.endpoint, "weights-a", "runs/1/model.pth", coco_checkpoint)
    cfg = tiny_detector_cfg(num_classes=80)
    model = build_tiny(cfg)
    report = warm_start(model, cfg, {"pretrained_weights": "s3://weights-a/runs/1/model.pth"})
    assert (report["matched"], report["mismatched"]) == (len(model.state_dict()), 0)
    first = Path(report["path"])
    assert first.is_relative_to(weights_env / "storage")  # the data's cache, below the one cache root
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


def _gcs_put(endpoint: str, bucket: str, key: str, body: bytes) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": endpoint})
    client.bucket(bucket).blob(key).upload_from_string(body)


@pytest.mark.parametrize("kind", ["s3", "gcs"])
def test_weights_use_the_data_settings_of_the_same_store(kind: str, request: pytest.FixtureRequest,
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """With no endpoint in the environment, an s3:// or gs:// checkpoint is read with the experiment's
    data.file_client_args (endpoint, retries, cache_dir) when its backend matches: weights on MinIO behave like data
    on MinIO. The keys that only concern the data (bucket, prefix, prefetch, cache size) do not apply."""
    isolate_cloud_env(monkeypatch, tmp_path)
    server = request.getfixturevalue("moto" if kind == "s3" else "fake_gcs")
    scheme, bucket = ("s3" if kind == "s3" else "gs"), f"weights-{kind}-args"
    make_bucket(kind, server.endpoint, bucket)
    body = b"not really a checkpoint " * 1000
    if kind == "s3":
        _put_s3(server.endpoint, bucket, "w/model.pth", body)
    else:
        _gcs_put(server.endpoint, bucket, "w/model.pth", body)
    proxy = FaultProxy(server.endpoint)
    try:
        endpoint_key = "endpoint_url" if kind == "s3" else "emulator_host"
        data_args = {"backend": "s3" if kind == "s3" else "gcs", "bucket_name": "the-data-bucket", "prefix": "ds",
                     endpoint_key: proxy.endpoint, "retries": 4, "retry_backoff": 0.01, "prefetch": 8,
                     "cache_size": 0, "cache_dir": str(tmp_path / "data-cache")}
        proxy.fail(2, 503)  # throttled twice: retried under the data's retry settings
        path = fetch(f"{scheme}://{bucket}/w/model.pth", file_client_args=data_args)
        assert path.read_bytes() == body
        assert path.is_relative_to(tmp_path / "data-cache")  # cache_size 0 is the data's choice; weights are cached
        seen = len(proxy.paths)
        assert fetch(f"{scheme}://{bucket}/w/model.pth", file_client_args=data_args) == path
        # One metadata request (the version), no download. (google-cloud-storage may also look up the bucket's
        # metadata on a thread of its own, so only requests for the object are counted.)
        assert len([r for r in proxy.paths[seen:] if "model.pth" in r]) == 1
        missing = rf"{scheme}://{bucket}/w/other.pth does not exist.*check the weights URI"
        with pytest.raises(WeightsError, match=missing):
            fetch(f"{scheme}://{bucket}/w/other.pth", file_client_args=data_args)
        proxy.fail(10, 503)
        with pytest.raises(WeightsError, match=rf"{scheme}://{bucket}/w/model.pth: still failing after 4 attempts"):
            fetch(f"{scheme}://{bucket}/w/model.pth", file_client_args=data_args)
    finally:
        proxy.close()


def test_store_args_keep_the_settings_of_the_matching_backend_only():
    data = {"backend": "s3", "bucket_name": "b", "prefix": "p", "endpoint_url": "http://minio:9000",
            "profile_name": "train", "retries": 3, "cache_dir": "/ssd/cache", "cache_size": "1GB", "prefetch": 64}
    assert store_args("s3://w/x.pth", data) == {"endpoint_url": "http://minio:9000", "profile_name": "train",
                                                 "retries": 3, "cache_dir": "/ssd/cache"}
    assert store_args("gs://w/x.pth", data) == {"anonymous": "auto"}  # an s3 config says nothing about GCS
    assert store_args("s3://w/x.pth", {"backend": "disk"}) == store_args("s3://w/x.pth") == {}
    gcs = {"backend": "gcs", "emulator_host": "http://127.0.0.1:4443", "anonymous": False}
    assert store_args("gs://w/x.pth", gcs) == {"emulator_host": "http://127.0.0.1:4443", "anonymous": False}


def test_warm_start_reads_s3_weights_with_the_data_settings(moto: Server, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path, coco_checkpoint: bytes):
    """What the trial does: warm_start gets data.file_client_args, whose endpoint_url reaches the store."""
    isolate_cloud_env(monkeypatch, tmp_path)  # no AWS_ENDPOINT_URL_S3: only the data settings name the endpoint
    make_bucket("s3", moto.endpoint, "weights-warm")
    _put_s3(moto.endpoint, "weights-warm", "model.pth", coco_checkpoint)
    cfg = tiny_detector_cfg(num_classes=80)
    model = build_tiny(cfg)
    report = warm_start(model, cfg, {"pretrained_weights": "s3://weights-warm/model.pth"},
                        file_client_args={"backend": "s3", "bucket_name": "data", "endpoint_url": moto.endpoint})
    assert report["matched"] == len(model.state_dict())
