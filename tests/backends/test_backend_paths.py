"""Registration with mmcv, path rules, options and per-process clients (no server needed)."""

from __future__ import annotations

import multiprocessing
import pickle

import pytest
from mmcv import FileClient

from model_hub_mmdet.errors import ConfigError, DataError
from model_hub_mmdet.storage import GCSBackend, S3Backend, normalize_file_client_args, parse_size


def test_registered_by_name_and_uri_prefix(tmp_path):
    assert isinstance(FileClient(backend="s3", cache_dir=str(tmp_path)).client, S3Backend)
    assert isinstance(FileClient(backend="gcs", cache_dir=str(tmp_path)).client, GCSBackend)
    assert isinstance(FileClient.infer_client(uri="s3://bucket/coco/x.jpg").client, S3Backend)
    assert isinstance(FileClient.infer_client(uri="gs://bucket/coco/x.jpg").client, GCSBackend)


def test_plain_paths_go_under_bucket_and_prefix(tmp_path):
    b = S3Backend(bucket_name="data", key_prefix="/datasets/v2/", cache_dir=str(tmp_path))
    assert b.resolve("data/coco/train2017/x.jpg") == ("data", "datasets/v2/data/coco/train2017/x.jpg")
    assert b.resolve("./data//coco/./x.jpg") == ("data", "datasets/v2/data/coco/x.jpg")
    assert b.resolve("/abs/coco/x.jpg") == ("data", "datasets/v2/abs/coco/x.jpg")
    assert S3Backend(bucket_name="data", cache_dir=str(tmp_path)).resolve("a/b.png") == ("data", "a/b.png")


def test_uris_name_the_object_fully(tmp_path):
    b = GCSBackend(bucket_name="other", key_prefix="ignored", cache_dir=str(tmp_path))
    assert b.resolve("gs://bkt/coco//train/x.jpg") == ("bkt", "coco/train/x.jpg")
    assert b.resolve("gcs://bkt/k") == ("bkt", "k")
    with pytest.raises(DataError, match=r"s3://bkt/k.*gs:// URIs"):
        b.resolve("s3://bkt/k")
    with pytest.raises(DataError, match="BUCKET/KEY"):
        b.resolve("gs://bkt/")


def test_plain_path_without_bucket_name_says_what_to_set(tmp_path):
    with pytest.raises(ConfigError, match=r"data/x.jpg.*bucket_name.*s3://my-bucket/coco/"):
        S3Backend(cache_dir=str(tmp_path)).resolve("data/x.jpg")


def test_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*bucket\\b.*known keys.*bucket_name"):
        FileClient(backend="s3", bucket="b", cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="bare bucket name"):
        S3Backend(bucket_name="s3://b/x")
    with pytest.raises(ConfigError, match="retries"):
        GCSBackend(bucket_name="b", retries=0, cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="cache_size"):
        S3Backend(bucket_name="b", cache_size="lots", cache_dir=str(tmp_path))


def test_prefix_option_reaches_the_backend_as_key_prefix(tmp_path):
    args = normalize_file_client_args({"backend": "s3", "bucket_name": "b", "prefix": "ds", "cache_dir": str(tmp_path)})
    assert args["key_prefix"] == "ds" and "prefix" not in args
    assert FileClient(**args).client.resolve("x.png") == ("b", "ds/x.png")
    assert normalize_file_client_args({"backend": "disk", "prefix": "s3"}) == {"backend": "disk", "prefix": "s3"}
    with pytest.raises(ConfigError, match="prefix or key_prefix"):
        normalize_file_client_args({"backend": "gcs", "prefix": "a", "key_prefix": "b"})


def test_parse_size():
    assert parse_size(1234) == 1234
    assert parse_size("500MB") == 500 * 10**6
    assert parse_size("1.5 GiB") == int(1.5 * 2**30)
    assert parse_size("20g") == 20 * 10**9
    assert parse_size("0") == 0


def test_join_path_keeps_the_scheme(tmp_path):
    b = S3Backend(cache_dir=str(tmp_path))
    assert b.join_path("s3://bkt/coco/", "train", "x.jpg") == "s3://bkt/coco/train/x.jpg"


def test_cache_can_be_turned_off(tmp_path):
    assert S3Backend(bucket_name="b", cache=False).cache is None
    assert S3Backend(bucket_name="b", cache_size=0, cache_dir=str(tmp_path)).cache is None


def _child_client_id(backend: S3Backend, queue) -> None:
    queue.put((id(backend.client), backend.client is backend.client))


def test_one_client_per_process_made_after_fork(tmp_path):
    backend = S3Backend(bucket_name="b", endpoint_url="http://127.0.0.1:9", cache_dir=str(tmp_path))
    parent = backend.client
    assert backend.client is parent  # reused within a process
    queue = multiprocessing.get_context("fork").Queue()
    proc = multiprocessing.get_context("fork").Process(target=_child_client_id, args=(backend, queue))
    proc.start()
    child_id, reused = queue.get(timeout=60)
    proc.join(60)
    assert reused and child_id != id(parent)
    clone = pickle.loads(pickle.dumps(backend))  # spawned workers receive a pickled backend
    assert clone._client is None and clone.client is not parent
