"""Dotted ``override_mmdet_config`` keys applied to an MMDetection config.

Rules (each tested in ``tests/config/test_overrides.py``):

* ``a.b.c: v`` sets ``c`` inside ``a.b``; keys the config lacks are created, as mmcv's ``merge_from_dict`` creates
  them, with one INFO line naming the first new one. A missing parent is refused only when a key beside it is a
  close spelling (a likely typo), naming the key and the closest existing keys.
* Numeric segments index lists: ``data.train.pipeline.2.img_scale``; an out-of-range index names the length.
* ``X._delete_: true`` empties ``X`` first (applied before the other keys), so keys below ``X`` start afresh:
  ``optimizer_config._delete_: true`` + ``optimizer_config.grad_clip.max_norm: 35``.
* A dict value is merged into an existing dict with mmcv's rules (so ``{_delete_: true, ...}`` replaces it, at
  any depth); a dict of numeric keys merged into a list changes those elements. Anything else replaces.
  One exception: a ``file_client_args`` dict naming another ``backend`` replaces the old args whole.
* YAML has no tuples: a list replacing a tuple becomes a tuple (at any depth, e.g. inside a replaced pipeline
  step of the same ``type``), one scale replacing a list of scales becomes a tuple and several scales replacing
  one become a list of tuples; a value replacing a float/int takes that type when the conversion is exact
  (``1e-4``, read by YAML as a string, becomes ``0.0001``; ``2`` replacing ``2.0`` becomes ``2.0``).
* The caller's ``overrides`` are never modified.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcv import Config, ConfigDict

from model_hub_mmdet.config_tree import DELETE, DottedOverrides, coerce_like, strip_delete

__all__ = ["DELETE", "RESERVED_TOP_LEVEL", "apply_overrides", "coerce_like", "strip_delete"]

RESERVED_TOP_LEVEL = ("filename", "text", "pretty_text")  # mmcv.Config refuses these as top-level keys
# The rules are the generation-neutral engine's (model_hub_mmdet.config_tree), with mmcv's ConfigDict.
_OVERRIDES = DottedOverrides(make_dict=ConfigDict, reserved=RESERVED_TOP_LEVEL, system="mmcv", example="optimizer.lr")


def apply_overrides(cfg: Config, overrides: Mapping[str, Any] | None, announce: bool = True) -> set[tuple[str, ...]]:
    """Apply ``overrides`` to ``cfg`` in place. Returns every path written (a written dict's inner keys too).
    ``announce=False`` leaves out the INFO line about keys the config lacked (for trials on a scratch copy)."""
    return _OVERRIDES.apply(cfg._cfg_dict, overrides, announce)
