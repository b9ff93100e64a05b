"""Last touches on a merged 3.x config: what mmengine's runner and mmdet's tools would set, and the batch size."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mmengine.config import Config

from model_hub_mmdet.config_tree import mark_test_mode
from model_hub_mmdet.errors import ConfigError

logger = logging.getLogger("model_hub_mmdet")


def per_slot_batch_size(hparams: Mapping[str, Any], slots: int) -> int | None:
    """``global_batch_size`` divided over ``slots`` (None when no global batch size is given)."""
    gbs = hparams.get("global_batch_size")
    if gbs is None:
        return None
    if isinstance(gbs, bool) or not isinstance(gbs, int) or gbs < 1:
        raise ConfigError(f"hyperparameters.global_batch_size must be a positive integer, got {gbs!r}")
    if slots < 1 or gbs % slots:
        raise ConfigError(f"hyperparameters.global_batch_size={gbs} is not divisible by {slots} slot(s)")
    return gbs // slots


def finalize(cfg: Config, batch_size: int | None = None) -> Config:
    """Set the registry scope (``default_scope='mmdet'``), ``test_mode=True`` on the val/test datasets, and
    ``train_dataloader.batch_size`` to the per-slot ``batch_size`` when given."""
    cfg.setdefault("default_scope", "mmdet")
    for split in ("val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        if isinstance(loader, Mapping):
            mark_test_mode(loader.get("dataset"))
    if batch_size is not None and isinstance(cfg.get("train_dataloader"), Mapping):
        cfg.train_dataloader.batch_size = batch_size
    return cfg
