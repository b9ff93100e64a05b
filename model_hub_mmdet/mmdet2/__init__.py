"""The MMDetection 2.x adapter (mmdet 2.28, mmcv-full 1.7): config, trial, data, schedules, evaluation, export.

Imported only where mmdet 2.x is installed (``model_hub_mmdet.generation``). Importing it patches nothing;
:func:`setup` does, explicitly.
"""

from __future__ import annotations

from typing import Any

REQUIRES = ("mmcv", "mmdet")  # what must import for this adapter to work (checked by generation.adapter)
_ready = False


def setup() -> None:
    """Check and apply this generation's patches (:mod:`.patches`), and register the storage backends and the
    cached checkpoint loaders with mmcv (idempotent)."""
    global _ready
    if _ready:
        return
    from model_hub_mmdet.mmdet2 import checkpoint_schemes, fileio, patches

    patches.apply()
    fileio.register()
    checkpoint_schemes.register_checkpoint_schemes()
    _ready = True


def __getattr__(name: str) -> Any:
    if name == "MMDetTrial":
        from model_hub_mmdet.mmdet2.trial import MMDetTrial

        return MMDetTrial
    if name == "build_mmdet_config":
        from model_hub_mmdet.mmdet2.config import build_mmdet_config

        return build_mmdet_config
    raise AttributeError(f"module 'model_hub_mmdet.mmdet2' has no attribute {name!r}")
