"""Dotted ``override_mmdet_config`` keys applied to an mmengine ``Config``.

The rules are the core's (:mod:`model_hub_mmdet.config_tree`), the same for both generations, with mmengine's
``ConfigDict`` for overridden parts and mmengine's reserved top-level keys: ``optim_wrapper.optimizer.lr``,
``train_dataloader.dataset.pipeline.2.scale`` (list indices), ``optim_wrapper._delete_: true``, a dict value with
``_delete_`` at any depth, typo suggestions and YAML values coerced to the config's types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmengine.config import Config, ConfigDict
from mmengine.config.config import RESERVED_KEYS

from model_hub_mmdet.config_tree import DELETE, DottedOverrides, coerce_like, strip_delete

__all__ = ["DELETE", "apply_overrides", "coerce_like", "strip_delete"]

_OVERRIDES = DottedOverrides(make_dict=ConfigDict, reserved=RESERVED_KEYS, system="mmengine")


def apply_overrides(cfg: Config, overrides: Mapping[str, Any] | None, announce: bool = True) -> set[tuple[str, ...]]:
    """Apply ``overrides`` to ``cfg`` in place. Returns every path written (a written dict's inner keys too).
    ``announce=False`` leaves out the INFO line about keys the config lacked (for trials on a scratch copy)."""
    return _OVERRIDES.apply(cfg._cfg_dict, overrides, announce)
