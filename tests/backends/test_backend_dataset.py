"""Real mmdet datasets reading images and annotations from the buckets, compared with reading from disk."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from mmcv import FileClient
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from model_hub_mmdet.storage import normalize_file_client_args
from model_hub_mmdet.storage.prefetch import PrefetchBatchSampler, Prefetcher, sample_paths, with_prefetch
from model_hub_mmdet.tools.shapes import CLASSES


def coco_dataset(root: str, split: str, file_client_args: dict | None):
    """A CocoDataset on the shapes data under ``root`` (a directory, a key path or a URI)."""
    from mmdet.datasets import build_dataset

    fca = normalize_file_client_args(file_client_args) if file_client_args else {"backend": "disk"}
    pipeline = [
        dict(type="LoadImageFromFile", file_client_args=fca),
        dict(type="LoadAnnotations", with_bbox=True, with_mask=True, file_client_args=fca),
    ]
    return build_dataset(dict(type="CocoDataset", classes=CLASSES, data_root=root, ann_file=f"annotations/{split}.json",
                              img_prefix=f"{split}/", pipeline=pipeline, file_client_args=fca))


def assert_same_samples(a, b) -> None:
    assert len(a) == len(b) > 0
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert np.array_equal(x["img"], y["img"])
        assert np.array_equal(x["gt_bboxes"], y["gt_bboxes"]) and np.array_equal(x["gt_labels"], y["gt_labels"])
        assert x["gt_masks"].masks.shape == y["gt_masks"].masks.shape


def upload(store, shapes_dir, dest: str) -> None:
    n = store.backend().upload_dir(shapes_dir, dest)
    assert n == 8 + 4 + 2


def test_dataset_from_bucket_name_and_prefix_equals_disk(store, shapes_dir):
    upload(store, shapes_dir, "ds/data/shapes")
    args = dict(store.args, prefix="ds")
    remote = coco_dataset("data/shapes/", "train", args)  # a config's local-looking data_root maps onto keys
    assert_same_samples(remote, coco_dataset(str(shapes_dir) + "/", "train", None))


def test_dataset_from_uri_data_root_equals_disk(store, shapes_dir):
    upload(store, shapes_dir, store.uri("shapes"))
    args = {k: v for k, v in store.args.items() if k != "bucket_name"}  # the URI names the bucket
    remote = coco_dataset(store.uri("shapes") + "/", "val", args)
    assert_same_samples(remote, coco_dataset(str(shapes_dir) + "/", "val", None))


def test_prefetch_warms_the_cache_ahead_of_the_sampler(store, shapes_dir):
    upload(store, shapes_dir, "shapes")
    args = dict(store.args, prefetch=4, prefetch_threads=2)
    dataset = coco_dataset("shapes/", "train", args)
    backend = FileClient(**normalize_file_client_args(args)).client
    cached = lambda i: all(backend.cache.contains(backend._entry(*backend.resolve(p)))  # noqa: E731
                           for p in sample_paths(dataset, i))
    inner = BatchSampler(SequentialSampler(range(len(dataset))), batch_size=2, drop_last=False)
    batches = iter(PrefetchBatchSampler(inner, dataset, backend, depth=4, threads=2))
    assert next(batches) == [0, 1]
    deadline = time.monotonic() + 60  # a wait for background threads, not a timing assertion
    while not all(cached(i) for i in range(6)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(cached(i) for i in range(6))  # the batch handed out and the next 4 samples
    assert not any(cached(i) for i in range(6, 8))  # not further ahead than asked
    assert list(batches) == [[2, 3], [4, 5], [6, 7]]


def test_loader_with_prefetch_yields_the_same_data(store, shapes_dir):
    upload(store, shapes_dir, "shapes")
    args = dict(store.args, prefetch=4, prefetch_threads=2)
    dataset = coco_dataset("shapes/", "train", args)
    plain = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=list, multiprocessing_context="fork")
    loader = with_prefetch(plain, normalize_file_client_args(args))
    assert isinstance(loader.batch_sampler, PrefetchBatchSampler)
    got = [s["img"] for batch in loader for s in batch]
    want = [dataset[i]["img"] for i in range(len(dataset))]
    assert len(got) == len(want) == 8 and all(np.array_equal(a, b) for a, b in zip(got, want))
    assert with_prefetch(plain, normalize_file_client_args(dict(args, prefetch=0))) is plain


@pytest.mark.parametrize("wrapper", ["RepeatDataset", "ConcatDataset"])
def test_sample_paths_follow_dataset_wrappers(shapes_dir, wrapper):
    from mmdet.datasets import ConcatDataset, RepeatDataset

    base = coco_dataset(str(shapes_dir) + "/", "train", None)
    wrapped = RepeatDataset(base, 2) if wrapper == "RepeatDataset" else ConcatDataset([base, base])
    assert sample_paths(wrapped, 9) == sample_paths(base, 1) == [f"{shapes_dir}/train/000001.png"]


def test_queued_prefetches_are_claimed_waited_for_and_released_when_dropped(store):
    """An image queued for prefetch is claimed at once: a reader waits for the prefetcher's copy instead of
    requesting it again; closing the prefetcher gives the claims of fetches never started back."""
    backend = store.backend()
    for i in range(6):
        backend.put(bytes([i]) * 100, f"k/{i}")
    claims = lambda: list(backend.cache.root.rglob(".claim-*"))  # noqa: E731
    store.proxy.latency = 0.2  # one thread, slow requests: most of the queue waits
    prefetcher = Prefetcher(backend, threads=1)
    prefetcher.submit([f"k/{i}" for i in range(6)])
    assert len(claims()) == 6
    assert backend.get("k/1") == bytes([1]) * 100  # the second in the queue: waited for
    gets_of_k1 = [p for p in store.proxy.paths if p.startswith("GET") and re.search(r"/k(/|%2F)1(\?|$)", p)]
    assert len(gets_of_k1) == 1, store.proxy.paths  # the prefetcher's only
    prefetcher.close()
    deadline = time.monotonic() + 30  # the fetch running at close finishes in the background
    while claims() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert claims() == []
    assert backend.get("k/5") == bytes([5]) * 100  # a dropped fetch: the reader fetches it itself, no wait
