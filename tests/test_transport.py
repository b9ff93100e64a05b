"""Batches from loader workers: small tensors and binary masks are packed for the trip, and the main process gets
back exactly the batch mmcv's collate made (real Mask R-CNN pipeline on the tiny shapes data)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from helpers import tiny_experiment
from mmcv.parallel import DataContainer
from mmdet.core import BitmapMasks
from mmdet.datasets import build_dataset
from torch.utils.data import DataLoader

from model_hub_mmdet import build_mmdet_config
from model_hub_mmdet.mmdet2.data import build_train_loader, build_val_loader, collate_fn
from model_hub_mmdet.mmdet2.transport import INLINE_BYTES, InlineTensor, PackedMasks, pack_batch, unpack_batch


def mask_rcnn_datasets(root: Path) -> tuple:
    exp = tiny_experiment(root, model="mask_rcnn")
    cfg = build_mmdet_config(exp["hyperparameters"], exp["data"], context_dir=".")
    return build_dataset(cfg.data.train), build_dataset(cfg.data.val, dict(test_mode=True))


def assert_same(a: Any, b: Any, where: str = "batch") -> None:
    """Equal values of equal types, all the way down (tensors: dtype, shape and values)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, BitmapMasks):
        assert (a.height, a.width) == (b.height, b.width), where
        assert_same(a.masks, b.masks, f"{where}.masks")
    elif isinstance(a, DataContainer):
        assert (a.cpu_only, a.stack, a.padding_value, a.pad_dims) == (b.cpu_only, b.stack, b.padding_value, b.pad_dims)
        assert_same(a.data, b.data, f"{where}.data")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_training_batches_from_a_worker_equal_those_made_in_the_main_process(shapes_dir: Path) -> None:
    train, _ = mask_rcnn_datasets(shapes_dir)
    in_main = iter(build_train_loader(train, batch_size=2, num_workers=0, seed=4))
    from_worker = iter(build_train_loader(train, batch_size=2, num_workers=1, seed=4))
    for _ in range(4):
        a, b = next(in_main), next(from_worker)
        assert isinstance(b["gt_masks"].data[0][0].masks, np.ndarray)  # what a trial sees: no packed stand-ins
        assert_same(a, b)


def test_validation_batches_from_a_worker_equal_those_made_in_the_main_process(shapes_dir: Path) -> None:
    _, val = mask_rcnn_datasets(shapes_dir)
    in_main = list(build_val_loader(val, batch_size=2, num_workers=0))
    from_workers = list(build_val_loader(val, batch_size=2, num_workers=2))
    assert len(in_main) == len(from_workers) == 2
    assert_same(in_main, from_workers)


def test_a_worker_packs_small_tensors_and_binary_masks_but_not_images(shapes_dir: Path) -> None:
    """What crosses the pipe: a user's own loader with ``collate_fn(..., pack=True)`` and no unpacking."""
    train, _ = mask_rcnn_datasets(shapes_dir)
    loader = DataLoader(train, batch_size=2, num_workers=1, collate_fn=collate_fn(2, pack=True))
    batch = next(iter(loader))
    assert isinstance(batch["img"].data[0], torch.Tensor)  # 2 x 3 x 64 x 64 float: still shared memory
    assert all(isinstance(t, InlineTensor) for t in batch["gt_bboxes"].data[0] + batch["gt_labels"].data[0])
    assert all(isinstance(m.masks, PackedMasks) for m in batch["gt_masks"].data[0])
    unpacked = unpack_batch(batch)
    assert all(isinstance(m.masks, np.ndarray) and m.masks.dtype == np.uint8 for m in unpacked["gt_masks"].data[0])
    assert all(t.dtype == torch.float32 and t.shape[-1] == 4 for t in unpacked["gt_bboxes"].data[0])


def test_the_shared_collate_does_not_pack_unless_asked(shapes_dir: Path) -> None:
    """``collate_fn`` is public (a subclass may build its own loader with it): it packs only when told to."""
    train, _ = mask_rcnn_datasets(shapes_dir)
    batch = next(iter(DataLoader(train, batch_size=2, num_workers=1, collate_fn=collate_fn(2))))
    assert all(isinstance(t, torch.Tensor) for t in batch["gt_bboxes"].data[0])
    assert all(isinstance(m.masks, np.ndarray) for m in batch["gt_masks"].data[0])


def _pack_in_worker(batch: Any) -> Any:
    """``pack_batch`` as a loader worker runs it, then the pickle round trip of the worker's queue."""
    loader = DataLoader(
        [0], batch_size=1, num_workers=1, collate_fn=lambda _: pack_batch(batch), multiprocessing_context="fork"
    )
    return next(iter(loader))


def test_round_trip_keeps_what_it_cannot_pack_as_it_was() -> None:
    """Non-binary masks, large tensors and dtypes numpy lacks keep torch's way; the rest round-trips exactly."""
    rng = np.random.default_rng(0)
    binary = BitmapMasks((rng.random((3, 40, 50)) > 0.5).astype(np.uint8), 40, 50)
    graded = BitmapMasks(rng.integers(0, 255, (2, 40, 50), dtype=np.uint8), 40, 50)
    boolean = BitmapMasks(rng.random((1, 70, 70)) > 0.5, 70, 70)
    batch = {
        "small": torch.arange(12, dtype=torch.int64).reshape(3, 4)[:, ::2],  # not contiguous
        "large": torch.zeros(INLINE_BYTES // 4 + 1),
        "bf16": torch.ones(3, dtype=torch.bfloat16),
        "masks": DataContainer([[binary, graded, boolean]], cpu_only=True),
        "meta": DataContainer([[{"scale_factor": np.array([0.5, 0.5, 0.5, 0.5], dtype=np.float32)}]], cpu_only=True),
    }
    expected = pickle.loads(pickle.dumps(batch))
    packed = _pack_in_worker(batch)
    assert isinstance(packed["small"], InlineTensor) and isinstance(packed["large"], torch.Tensor)
    assert isinstance(packed["bf16"], torch.Tensor)
    kinds = [type(m.masks) for m in packed["masks"].data[0]]
    assert kinds == [PackedMasks, np.ndarray, PackedMasks]
    assert_same(unpack_batch(packed), expected)


def test_outside_a_worker_nothing_is_packed() -> None:
    batch = {"boxes": torch.ones(2, 4)}
    assert pack_batch(batch)["boxes"] is batch["boxes"]
