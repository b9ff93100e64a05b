"""The 3.x loaders: aspect-ratio groups as mmdet's AspectRatioBatchSampler makes them, batches from worker processes
equal to the in-process ones (transport), each validation image once across slots."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from mm3_helpers import experiment

from model_hub_mmdet.mmdet3.config import build_mmdet_config
from model_hub_mmdet.mmdet3.data import build_train_loader
from model_hub_mmdet.mmdet3.datasets import aspect_ratio_flags
from model_hub_mmdet.sampling import GroupBatchSampler


class _Sizes:
    def __init__(self, sizes: list[tuple[int, int]]) -> None:
        self.sizes = sizes

    def __len__(self) -> int:
        return len(self.sizes)

    def get_data_info(self, i: int) -> dict:
        return {"width": self.sizes[i][0], "height": self.sizes[i][1]}


def test_batches_hold_one_aspect_ratio_group_as_mmdet_groups_them() -> None:
    sizes = [(640, 480), (480, 640), (500, 500), (300, 600), (800, 600), (600, 900), (640, 640), (100, 200)]
    dataset = _Sizes(sizes)
    flags = aspect_ratio_flags(dataset)
    assert flags.tolist() == [1, 0, 1, 0, 1, 0, 1, 0]  # mmdet: width < height is group 0, else group 1
    sampler = GroupBatchSampler(flags, batch_size=2, num_replicas=2, seed=3)
    for pass_idx in range(3):
        for batch in sampler.batches_for_pass(pass_idx):
            assert len({int(flags[i]) for i in batch}) == 1


def _dataset(shapes_dir: Path, model: str = "mask_rcnn"):
    from mmdet.registry import DATASETS

    cfg = build_mmdet_config(experiment(shapes_dir, model)["hyperparameters"])
    return DATASETS.build(cfg.train_dataloader.dataset)


def test_batches_from_workers_equal_the_in_process_batches(shapes_dir: Path) -> None:
    from model_hub_mmdet.mmdet3 import transport

    dataset = _dataset(shapes_dir)
    in_process = iter(build_train_loader(dataset, 4, num_workers=0, seed=1))
    workers = iter(build_train_loader(dataset, 4, num_workers=1, seed=1))
    for _ in range(3):
        a, b = next(in_process), next(workers)
        assert all(torch.equal(x, y) for x, y in zip(a["inputs"], b["inputs"]))
        for sa, sb in zip(a["data_samples"], b["data_samples"]):
            assert sa.img_path == sb.img_path
            assert torch.equal(sa.gt_instances.bboxes.tensor, sb.gt_instances.bboxes.tensor)
            assert torch.equal(sa.gt_instances.labels, sb.gt_instances.labels)
            assert np.array_equal(sa.gt_instances.masks.masks, sb.gt_instances.masks.masks)
    # What a worker sends: small tensors by value, masks as bits.
    packed = transport._pack(copy.deepcopy(a))
    sample = packed["data_samples"][0]
    assert isinstance(sample.gt_instances.labels, transport.InlineTensor)
    assert isinstance(sample.gt_instances.masks.masks, transport.PackedMasks)
    restored = transport.unpack_batch(packed)["data_samples"][0]
    assert np.array_equal(restored.gt_instances.masks.masks, a["data_samples"][0].gt_instances.masks.masks)


def test_two_slots_share_each_pass_without_overlap(shapes_dir: Path) -> None:
    dataset = _dataset(shapes_dir, "rtmdet")
    seen = []
    for rank in (0, 1):
        loader = build_train_loader(dataset, 2, num_workers=0, seed=5, rank=rank, num_replicas=2)
        batches = iter(loader)
        seen += [s.img_id for _ in range(len(loader)) for s in next(batches)["data_samples"]]
    assert sorted(seen) == sorted(dataset.get_data_info(i)["img_id"] for i in range(len(dataset)))
