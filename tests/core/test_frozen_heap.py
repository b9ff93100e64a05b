"""Loader workers fork with the parent's heap frozen (copy-on-write friendly); the parent unfreezes at once."""

from __future__ import annotations

import gc

import pytest
from torch.utils.data import DataLoader, Dataset

from model_hub_mmdet.loaders import forked_with_frozen_heap


class _FreezeCounts(Dataset):
    """Each sample is the number of frozen objects in the process that loads it."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, idx: int) -> int:
        return gc.get_freeze_count()


def _counts() -> list[int]:
    loader = DataLoader(_FreezeCounts(), batch_size=None, num_workers=1, multiprocessing_context="fork")
    return [int(c) for c in forked_with_frozen_heap(loader.__iter__)]


def test_workers_see_the_heap_frozen_and_the_parent_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    assert min(_counts()) > 0
    assert gc.get_freeze_count() == 0
    monkeypatch.setenv("MODEL_HUB_MMDET_GC_FREEZE", "0")
    assert _counts() == [0, 0]
