"""The backends against real servers (moto S3, fake-gcs-server) on 127.0.0.1, each behind a counting,
fault-injecting proxy."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
from pathlib import Path

import pytest
import torch
from mmcv import FileClient
from servers import CUT_BODY, make_bucket, moto_iam_user, start_fake_gcs, start_moto

from model_hub_mmdet.errors import DataError
from model_hub_mmdet.storage import ObjectCache, normalize_file_client_args


def test_get_text_uri_and_local_path(store):
    fc = FileClient(**store.args)
    fc.put(b"\x89PNG bytes", "data/img/a.png")
    fc.put_text('{"images": []}', "data/annotations/train.json")
    assert fc.get("data/img/a.png") == b"\x89PNG bytes"
    assert fc.get(store.uri("data/img/a.png")) == b"\x89PNG bytes"
    assert fc.get_text("./data//annotations/train.json") == '{"images": []}'
    with fc.get_local_path(store.uri("data/annotations/train.json")) as path:
        assert Path(path).read_text() == '{"images": []}' and path.endswith("train.json")
    assert fc.exists("data/img/a.png") and not fc.exists("data/img/missing.png")


def test_local_copy_is_made_once_and_versioned_copies_follow_overwrites(store):
    backend = store.backend()
    backend.put(b"version one", "w/model.pth")
    plain = backend.local_copy("w/model.pth")
    versioned = backend.local_copy(store.uri("w/model.pth"), versioned=True)
    assert plain.read_bytes() == versioned.read_bytes() == b"version one" and plain != versioned
    assert plain.is_relative_to(backend.cache.root / "files") and versioned.name == "model.pth"
    before = len(store.proxy.paths)
    assert backend.local_copy(store.uri("w/model.pth"), versioned=True) == versioned
    # Asked for the version only (google-cloud-storage may look up bucket metadata on a thread: not counted).
    assert len([r for r in store.proxy.paths[before:] if "model.pth" in r]) == 1
    backend.put(b"version two", "w/model.pth")
    again = backend.local_copy("w/model.pth", versioned=True)
    assert again != versioned and again.read_bytes() == b"version two"
    assert versioned.read_bytes() == b"version one"  # a reader of the old copy is not disturbed
    assert backend.local_copy("w/model.pth") == plain and plain.read_bytes() == b"version one"  # kept as it was
    with pytest.raises(DataError, match=rf"{store.uri('w/none.pth')} does not exist"):
        backend.local_copy("w/none.pth", versioned=True)


def test_messages_name_what_to_check(store, monkeypatch):
    backend = store.backend(retries=2)  # mmcv shares one instance per set of args: this one is the test's own
    with pytest.raises(DataError, match=r"does not exist.*; check data_root, ann_file and img_prefix$"):
        backend.get("no/such.png")
    monkeypatch.setattr(backend, "missing_key_hint", "check the weights URI")  # what weights set
    with pytest.raises(DataError, match=r"does not exist.*; check the weights URI$"):
        backend.get("no/such.png")
    assert store.backend().missing_key_hint == "check data_root, ann_file and img_prefix"  # per instance


def test_prefix_applies_to_plain_paths_only(store):
    fc = FileClient(**normalize_file_client_args({**store.args, "prefix": "datasets/v2"}))
    fc.put(b"x", "coco/a.png")
    assert store.backend().get("datasets/v2/coco/a.png") == b"x"
    assert fc.get(store.uri("datasets/v2/coco/a.png")) == b"x"


def test_second_read_comes_from_the_cache(store):
    backend = store.backend()
    backend.put(b"abc" * 1000, "k/obj.bin")
    before = store.proxy.requests
    assert backend.get("k/obj.bin") == b"abc" * 1000
    fetched = store.proxy.requests
    assert fetched > before
    for _ in range(3):
        assert backend.get("k/obj.bin") == b"abc" * 1000
    assert store.proxy.requests == fetched


def test_truncated_cache_file_is_fetched_again(store):
    backend = store.backend()
    payload = os.urandom(20000)
    backend.put(payload, "k/img.png")
    backend.get("k/img.png")
    entry = backend.cache.object_path(backend._entry(store.bucket, "k/img.png"))
    entry.write_bytes(entry.read_bytes()[:7000])  # a partial file, as a crash or full disk would leave
    before = store.proxy.requests
    assert backend.get("k/img.png") == payload
    assert store.proxy.requests > before
    assert backend.get("k/img.png") == payload  # repaired: served from the cache again


def test_missing_key_is_a_clear_error_and_not_retried(store):
    backend = store.backend()
    with pytest.raises(DataError, match=rf"{store.uri('no/such.png')} does not exist"):
        backend.get("no/such.png")
    assert len([p for p in store.proxy.paths if "such.png" in p]) == 1  # one GET, no retries


def test_missing_bucket_names_the_bucket(store):
    backend = store.backend()
    missing = store.uri("x").replace(store.bucket, "no-such-bucket-here")
    with pytest.raises(DataError, match=r"bucket 'no-such-bucket-here' does not exist"):
        backend.get(missing.replace("/x", "/k.png"))


@pytest.mark.parametrize("fault", [503, 500, 0], ids=["throttled", "server-error", "dropped"])
def test_transient_failures_are_retried(store, fault):
    backend = store.backend()
    backend.put(b"payload", "k/obj")
    store.proxy.fail(3, fault)
    before = store.proxy.requests
    assert backend.get("k/obj") == b"payload"
    assert store.proxy.requests - before == 4


def test_a_body_cut_short_is_fetched_again_not_cached(store):
    """A connection lost mid-body must not hand a prefix of the image to the decoder, or to the cache."""
    payload = os.urandom(50_000)
    backend = store.backend()
    backend.put(payload, "k/img.png")
    store.proxy.fail(1, CUT_BODY)
    before = store.proxy.requests
    assert backend.get("k/img.png") == payload
    assert store.proxy.requests - before == 2
    assert backend.cache.read(backend._entry(store.bucket, "k/img.png")) == payload


def test_retries_give_up_with_a_clear_error(store):
    backend = store.backend(retries=3)
    backend.put(b"payload", "k/obj")
    store.proxy.fail(10, 503)
    with pytest.raises(DataError, match=rf"{store.uri('k/obj')}: still failing after 3 attempts"):
        backend.get("k/obj")


def test_connections_are_reused_across_samples(store):
    backend = store.backend(cache=False)
    for i in range(10):
        backend.put(b"x", f"k/{i}")
    before = store.proxy.connections
    for i in range(10):
        assert backend.get(f"k/{i}") == b"x"
    assert store.proxy.connections - before <= 1


class _ReadDataset(torch.utils.data.Dataset):
    def __init__(self, args: dict) -> None:
        self.args = args
        FileClient(**args).get("k/0")  # the parent makes (and caches) the backend and its client first

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int):
        backend = FileClient(**self.args).client
        assert backend.get(f"k/{i % 4}") == b"v"
        return os.getpid(), id(backend.client)


def test_each_loader_worker_has_one_client_of_its_own(store):
    args = dict(store.args, cache=False)
    for i in range(4):
        FileClient(**args).put(b"v", f"k/{i}")
    parent = id(FileClient(**args).client.client)
    loader = torch.utils.data.DataLoader(_ReadDataset(args), batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")
    clients: dict[int, set[int]] = {}
    for pid, client in loader:
        clients.setdefault(int(pid), set()).add(int(client))
    assert len(clients) == 2 and all(len(ids) == 1 for ids in clients.values())
    assert os.getpid() not in clients and parent not in set().union(*clients.values())


def _fetch_annotation(args: dict, uri: str, start, out) -> None:
    start.wait(60)
    with FileClient(**args).get_local_path(uri) as path:
        out.put((path, hashlib.sha256(Path(path).read_bytes()).hexdigest()))


def test_two_processes_fetch_an_annotation_file_once(store):
    backend = store.backend()
    blob = os.urandom(3 << 20)
    backend.put(blob, "ann/reference.json")
    backend.put(blob, "ann/train.json")
    with backend.get_local_path("ann/reference.json"):
        pass
    one_download = len([p for p in store.proxy.paths if "reference.json" in p])
    assert one_download >= 1

    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_fetch_annotation, args=(store.args, store.uri("ann/train.json"), start, out))
             for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert results[0] == results[1] and results[0][1] == hashlib.sha256(blob).hexdigest()
    assert len([p for p in store.proxy.paths if "train.json" in p]) == one_download


def test_eviction_keeps_the_cache_under_its_size(store):
    backend = store.backend(cache_size=6 * 2000)
    backend.cache.flush_bytes = 1
    for i in range(12):
        backend.put(bytes([i]) * 2000, f"k/{i}")
    for i in range(12):
        assert backend.get(f"k/{i}") == bytes([i]) * 2000
    on_disk = sum(p.stat().st_size for p in (backend.cache.root / "objects").rglob("*") if p.is_file())
    assert 0 < on_disk <= 6 * 2000
    assert backend.get("k/0") == bytes([0]) * 2000  # evicted early, fetched again


def test_known_entries_are_forgotten_when_another_process_evicts(store, monkeypatch):
    """The prefetcher asks ``cached`` for every sample of every epoch; the answer is remembered until an
    eviction anywhere in the cache."""
    from model_hub_mmdet.storage import base

    monkeypatch.setattr(base, "_RECHECK_EVICTIONS", 0.0)  # look at the eviction count on every call
    backend = store.backend()
    for i in range(3):
        backend.put(bytes([i]) * 1000, f"k/{i}")
    assert not backend.cached("k/0")
    assert backend.warm("k/0") and not backend.warm("k/0")  # fetched once
    backend.get("k/1")
    assert backend.cached("k/0") and backend.cached("k/1") and not backend.cached("k/2")
    entry = backend.cache.object_path(backend._entry(store.bucket, "k/1"))
    entry.unlink()  # removed behind the cache's back: still believed cached (no stat per sample) ...
    assert backend.cached("k/1")
    assert backend.get("k/1") == bytes([1]) * 1000 and entry.exists()  # ... and the loader's own read refetches it
    other = ObjectCache(backend.cache.root, max_bytes=10**6)  # another process sharing the cache directory
    other.evict(target_bytes=0)
    assert not backend.cached("k/0") and not backend.cached("k/1")
    before = store.proxy.requests
    assert backend.warm("k/0") and store.proxy.requests > before  # prefetched again


def _claimed_by_another_process(store):
    """A backend, an object ``k/img.png`` in the bucket, its cache entry name, and the cache as another process
    sees it, holding the claim on that entry (as the prefetcher does while fetching)."""
    backend = store.backend()
    backend.put(b"image bytes", "k/img.png")
    name = backend._entry(store.bucket, "k/img.png")
    other = ObjectCache(backend.cache.root, max_bytes=10**6)
    assert other.claim(name)
    return backend, name, other


def test_a_read_waits_for_a_fetch_in_flight_instead_of_fetching_again(store):
    """A loader worker that catches up with the prefetcher (another process) waits for the image on its way."""
    backend, name, prefetcher = _claimed_by_another_process(store)

    def image_requests() -> int:  # google-cloud-storage may also ask for bucket metadata on its own thread
        return len([p for p in store.proxy.paths if "img.png" in p])

    before = image_requests()
    done = threading.Timer(0.3, lambda: (prefetcher.write(name, b"image bytes"), prefetcher.release(name)))
    done.start()
    assert backend.get("k/img.png") == b"image bytes"
    done.join()
    assert image_requests() == before  # one request in all (the prefetcher's, simulated here)
    assert not backend.warm("k/img.png")


def test_a_read_fetches_itself_when_the_fetch_in_flight_fails(store):
    backend, name, other = _claimed_by_another_process(store)
    threading.Timer(0.2, other.release, args=[name]).start()  # gave up without writing
    before = store.proxy.requests
    assert backend.get("k/img.png") == b"image bytes"
    assert store.proxy.requests > before
    assert not list(backend.cache.root.rglob(".claim-*"))  # no claim left behind


def test_s3_bad_credentials_are_denied_with_a_clear_error(tmp_path, monkeypatch):
    server = start_moto(auth_actions=3)
    try:
        key_id, secret = moto_iam_user(server.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        args = dict(backend="s3", bucket_name="secured", endpoint_url=server.endpoint, cache_dir=str(tmp_path))
        import boto3

        boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=key_id,
                     aws_secret_access_key=secret).create_bucket(Bucket="secured")
        FileClient(**args).put(b"ok", "k/obj")
        assert FileClient(**args).get("k/obj") == b"ok"  # the right credentials work through the env chain

        for bad_id, bad_secret, code in ((key_id, "wrong-secret", "SignatureDoesNotMatch"),
                                         ("AKIAUNKNOWN0000000", secret, "InvalidAccessKeyId")):
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", bad_id)
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", bad_secret)
            fresh = dict(args, cache_dir=str(tmp_path / code))  # a new backend, so a new client reads the env
            with pytest.raises(DataError, match=rf"s3://secured/k/obj: access denied \({code}\)"):
                FileClient(**fresh).get("k/obj")
    finally:
        server.stop()


def test_gcs_without_credentials_is_a_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "adc.json"
    bad.write_text("{}")  # not a credentials file
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(bad))
    fc = FileClient(backend="gcs", bucket_name="b", cache_dir=str(tmp_path), retries=2)
    with pytest.raises(DataError, match=r"gs://b/k.png: no usable Google credentials.*GOOGLE_APPLICATION_CREDENTIALS"):
        fc.get("k.png")


def test_gcs_anonymous_reads_need_no_credentials(tmp_path, monkeypatch):
    from google.auth.credentials import AnonymousCredentials

    from model_hub_mmdet.errors import ConfigError
    from model_hub_mmdet.storage import GCSBackend

    bad = tmp_path / "adc.json"
    bad.write_text("{}")  # not a credentials file: no Application Default Credentials
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(bad))
    for anonymous in (True, "auto"):  # auto: anonymous because no credentials are found (gs:// weights)
        client = GCSBackend(bucket_name="b", cache_dir=str(tmp_path), anonymous=anonymous).client
        assert isinstance(client._credentials, AnonymousCredentials), anonymous
    with pytest.raises(DataError, match="no usable Google credentials"):
        GCSBackend(bucket_name="b", cache_dir=str(tmp_path), retries=1).get("k.png")
    with pytest.raises(ConfigError, match="anonymous must be true, false or auto"):
        GCSBackend(bucket_name="b", cache_dir=str(tmp_path), anonymous="yes")


@pytest.mark.parametrize("kind", ["s3", "gcs"])
def test_server_down_then_back(kind, tmp_path):
    start = start_moto if kind == "s3" else start_fake_gcs
    server = start()
    key = "endpoint_url" if kind == "s3" else "emulator_host"
    args = {"backend": "s3" if kind == "s3" else "gcs", "bucket_name": "flaky", key: server.endpoint,
            "cache_dir": str(tmp_path), "retries": 8, "retry_backoff": 0.05}
    try:
        make_bucket(kind, server.endpoint, "flaky")
        backend = FileClient(**args).client
        backend.put(b"still here", "k/obj")
        server.stop()  # both servers keep objects in memory: the restart below re-uploads
        failures = []

        def restart_after_two(attempt, err, delay):
            failures.append(type(err).__name__)
            if len(failures) == 2:
                server.start()
                make_bucket(kind, server.endpoint, "flaky")
                backend.put(b"still here", "k/obj")

        backend.retry.on_retry = restart_after_two
        assert backend.get("k/obj") == b"still here"
        assert len(failures) == 2  # refused twice, then served
    finally:
        server.stop()


def test_an_unwritable_cache_costs_speed_not_the_run(store):
    backend = store.backend()
    backend.put(b"payload", "k/obj")
    name = backend._entry(store.bucket, "k/obj")
    backend.cache.object_path(name).parent.write_bytes(b"")  # a file where the entry's directory must go
    assert backend.get("k/obj") == b"payload"
    assert backend.get("k/obj") == b"payload" and not backend.cache.contains(name)
