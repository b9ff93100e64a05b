"""The MMDetection 2.x adapter (mmdet 2.28, mmcv-full 1.7): config, engine, data, schedules, evaluation, export.

Imported only where mmdet 2.x is installed (``model_hub_mmdet.generation``). Importing it patches nothing;
:func:`setup` does, explicitly.
"""

from __future__ import annotations

from model_hub_mmdet import generation

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


__getattr__ = generation.adapter_getattr(__name__)
