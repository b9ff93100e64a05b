"""The MMDetection 3.x adapter (mmdet 3.3, mmengine 0.10.7, mmcv 2.1): config, engine, data, schedules,
evaluation, export.

Imported only where mmdet 3.x is installed (``model_hub_mmdet.generation``). Importing it patches nothing;
:func:`setup` does, explicitly. Same module names as ``model_hub_mmdet.mmdet2``, with mmengine inside.
"""

from __future__ import annotations

from model_hub_mmdet import generation

REQUIRES = ("mmengine", "mmcv", "mmdet")  # what must import for this adapter to work (checked by generation.adapter)
_ready = False


def setup() -> None:
    """Check and apply this generation's patches (:mod:`.patches`), register MMDetection's modules in mmengine's
    registries (``mmdet.utils.register_all_modules``) and the storage backends with mmengine's file I/O
    (idempotent). The checkpoint loaders are a patch entry."""
    global _ready
    if _ready:
        return
    from model_hub_mmdet.mmdet3 import fileio, patches

    patches.apply()
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    fileio.register()
    _ready = True


__getattr__ = generation.adapter_getattr(__name__)
