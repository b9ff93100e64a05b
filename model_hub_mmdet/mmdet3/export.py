"""The native MMDetection 3 checkpoint of a Determined checkpoint of the 3.x ``MMDetTrial`` (the core's
:mod:`model_hub_mmdet.export_meta` finds, reads and writes it).

The trial's ``state_dict.pth`` (Determined's format, laid out in :mod:`model_hub_mmdet.checkpoints`) holds
``models_state_dict[0]`` (the detector, ``module.``-prefixed under DDP), ``mmdet_meta`` (final config text,
``dataset_meta``, versions) and, in the trial's callback state, what hooks added to the checkpoint. With an
``EMAHook`` that is the averaged weights, which replace the raw ones in the exported ``state_dict`` exactly as
mmengine's ``EMAHook.before_save_checkpoint`` does in a runner checkpoint (and the raw ones go to
``ema_state_dict``). :func:`export_checkpoint` writes ``{"meta": {"cfg", "dataset_meta", ...}, "state_dict"}``, the
format mmengine's runner writes, so ``mmdet.apis.init_detector(OUT.py, OUT.pth)``, ``DetInferencer`` and mmdet's
``tools/test.py`` use it unchanged; and the config ``OUT.py`` beside it.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

from model_hub_mmdet import export_meta
from model_hub_mmdet.export_meta import config_path_for

__all__ = ["config_path_for", "export_checkpoint", "native_checkpoint"]

logger = logging.getLogger("model_hub_mmdet")


def native_checkpoint(state: OrderedDict, meta: dict[str, Any], hooks: dict[str, Any], exported_from: str) -> dict:
    """``{"meta": {cfg, dataset_meta, versions}, "state_dict", what hooks added}``, as mmengine's runner saves it;
    the EMA weights a hook recorded replace the raw ones, as ``EMAHook.before_save_checkpoint`` does."""
    import mmdet
    import mmengine

    state = export_meta.cpu_state(state)
    changes = hooks.get("state_dict_changes") or {}
    state.update(export_meta.cpu_state({k: v for k, v in changes.items() if k in state}))
    dataset_meta = meta.get("dataset_meta") or ({"classes": meta["CLASSES"]} if meta.get("CLASSES") else None)
    versions = {"mmdet_version": mmdet.__version__, "mmengine_version": mmengine.__version__}
    native: dict[str, Any] = {
        "meta": export_meta.native_meta(meta, exported_from, "cfg", versions,
                                        ("dataset_meta", dataset_meta) if dataset_meta else None),
        "state_dict": state,
    }
    native.update((k, v) for k, v in (hooks.get("added") or {}).items() if k not in native)
    if changes:
        logger.info("exported the EMA weights (%d tensors) as the model's weights", len(changes))
    return native


def export_checkpoint(checkpoint: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """:func:`model_hub_mmdet.export_meta.export_checkpoint` with this generation's :func:`native_checkpoint`."""
    return export_meta.export_checkpoint(checkpoint, out_path, native_checkpoint)
