"""Samplers and loaders: aspect-ratio grouping, sharding across slots, determinism, resume, validation cover."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from mmcv.parallel import DataContainer

from model_hub_mmdet.mmdet2.data import (
    GroupBatchSampler,
    IndexedDataset,
    ResumableBatchSampler,
    SeededDataset,
    build_val_loader,
    unwrap_batch,
)

FLAGS = np.array([0] * 11 + [1] * 6)  # two aspect-ratio groups of uneven size


def test_every_batch_comes_from_one_group() -> None:
    sampler = GroupBatchSampler(FLAGS, batch_size=4, num_replicas=2, seed=3)
    for pass_idx in range(3):
        for batch in sampler.batches_for_pass(pass_idx):
            assert len(batch) == 4
            assert len({int(FLAGS[i]) for i in batch}) == 1


def test_each_pass_covers_every_index_and_pads_within_groups() -> None:
    sampler = GroupBatchSampler(FLAGS, batch_size=4, num_replicas=2, seed=0)
    batches = sampler.batches_for_pass(0)
    seen = Counter(i for b in batches for i in b)
    assert set(seen) == set(range(len(FLAGS)))
    # group 0: 11 -> padded to 16; group 1: 6 -> padded to 8: 24 samples, 6 batches, 3 per slot
    assert len(batches) == len(sampler) == 6
    assert sum(seen.values()) == 24


def test_passes_reshuffle_deterministically() -> None:
    a = GroupBatchSampler(FLAGS, batch_size=2, seed=1)
    b = GroupBatchSampler(FLAGS, batch_size=2, seed=1)
    assert a.batches_for_pass(0) == b.batches_for_pass(0)
    assert a.batches_for_pass(0) != a.batches_for_pass(1)
    assert a.batches_for_pass(0) != GroupBatchSampler(FLAGS, batch_size=2, seed=2).batches_for_pass(0)


def test_no_shuffle_is_sequential_within_groups() -> None:
    sampler = GroupBatchSampler(np.zeros(6, int), batch_size=2, shuffle=False)
    assert sampler.batches_for_pass(0) == [[0, 1], [2, 3], [4, 5]]


def test_slots_get_disjoint_equal_shares_of_each_pass() -> None:
    groups = GroupBatchSampler(FLAGS, batch_size=2, num_replicas=2, seed=5)
    n = len(FLAGS)
    shares = []
    for rank in range(2):
        it = iter(ResumableBatchSampler(groups, n, rank=rank))
        shares.append([next(it) for _ in range(len(groups) // 2)])
    assert len(shares[0]) == len(shares[1])
    flat = [k for share in shares for b in share for k in b]
    assert sorted(Counter(k % n for k in flat)) == list(range(n))
    assert sorted(flat) == sorted(i for b in groups.batches_for_pass(0) for i in b)


def test_resumed_sampler_continues_the_same_sequence() -> None:
    groups = GroupBatchSampler(FLAGS, batch_size=3, num_replicas=1, seed=9)
    full = list(itertools.islice(iter(ResumableBatchSampler(groups, len(FLAGS))), 20))
    resumed = ResumableBatchSampler(groups, len(FLAGS), position=7)
    assert list(itertools.islice(iter(resumed), 13)) == full[7:]
    assert resumed.position == 20
    # keys encode the pass: the second pass's keys are offset by the dataset length
    per_pass = len(resumed)
    assert all(k >= len(FLAGS) for k in full[per_pass])


class _RandomDataset(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 5

    def __getitem__(self, idx: int) -> tuple[int, float]:
        return idx, float(np.random.rand())


def test_seeded_dataset_augmentation_depends_only_on_seed_and_key() -> None:
    ds = SeededDataset(_RandomDataset(), seed=4)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = [ds[k] for k in (0, 7, 3)]
    assert np.array_equal(np.random.get_state()[1], before)  # the caller's RNG is untouched
    assert [ds[k] for k in (3, 0, 7)] == [first[2], first[0], first[1]]
    assert first[1][0] == 2 and first[1][1] != ds[2][1]  # key 7 = sample 2 of the second pass, new draw
    assert SeededDataset(_RandomDataset(), seed=5)[0] != first[0]


def test_validation_loader_covers_each_image_once_across_slots() -> None:
    class Plain(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 7

        def __getitem__(self, idx: int) -> dict:
            return {"img": DataContainer(torch.zeros(3, 4, 4), stack=True)}

    loader = build_val_loader(Plain(), batch_size=2, num_workers=0)
    seen = []
    for rank in range(3):
        for batch in loader.get_data_loader(repeat=False, num_replicas=3, rank=rank):
            seen += unwrap_batch(batch, torch.device("cpu"))["sample_idx"]
    assert sorted(seen) == list(range(7))


def test_unwrap_batch_moves_data_containers() -> None:
    batch = {
        "img": DataContainer([torch.ones(2, 3)], stack=True),
        "img_metas": DataContainer([[{"a": 1}, {"a": 2}]], cpu_only=True),
        "gt_bboxes": DataContainer([[torch.zeros(1, 4), torch.zeros(2, 4)]]),
        "plain": [DataContainer([torch.ones(1)], stack=True)],
    }
    out = unwrap_batch(batch, torch.device("cpu"))
    assert out["img"].shape == (2, 3)
    assert out["img_metas"] == [{"a": 1}, {"a": 2}]
    assert [t.shape[0] for t in out["gt_bboxes"]] == [1, 2]
    assert isinstance(out["plain"], list) and out["plain"][0].shape == (1,)


def test_indexed_dataset_forwards_attributes() -> None:
    class WithClasses(_RandomDataset):
        CLASSES = ("a", "b")

        def __getitem__(self, idx: int) -> dict:
            return {"x": idx}

    ds = IndexedDataset(WithClasses())
    assert ds.CLASSES == ("a", "b")
    assert ds[3]["sample_idx"].data == 3


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        GroupBatchSampler(FLAGS, batch_size=0)
