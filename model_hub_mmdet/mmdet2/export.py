"""The native MMDetection 2.x checkpoint of a Determined checkpoint of ``MMDetTrial`` (the core's
:mod:`model_hub_mmdet.export_meta` finds, reads and writes it).

The trial's ``state_dict.pth`` (Determined's format, laid out in :mod:`model_hub_mmdet.checkpoints`) holds
``models_state_dict[0]`` (the detector, ``module.``-prefixed under DDP) and ``mmdet_meta`` (final config text,
CLASSES, versions). :func:`export_checkpoint` writes
``{"meta": {...}, "state_dict": {...}}``, the format ``mmcv.runner.save_checkpoint`` writes, so
``mmdet.apis.init_detector(OUT.py, OUT.pth)`` and mmdet's ``tools/test.py`` use it unchanged; and the config
``OUT.py`` beside it. Such a file can seed a new experiment through ``load_from`` or ``pretrained_weights``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

from model_hub_mmdet import export_meta
from model_hub_mmdet.config_tree import dataset_configs
from model_hub_mmdet.export_meta import config_path_for

__all__ = ["config_path_for", "export_checkpoint", "native_checkpoint"]


def _classes_from_config(text: str) -> tuple[str, ...] | None:
    """``classes`` of the test/val/train dataset of a config text, the way mmdet's tools fall back to it."""
    from mmcv import Config

    try:
        cfg = Config.fromstring(text, ".py")
    except Exception:  # noqa: BLE001 - an unparsable config just has no classes to offer
        return None
    for split in ("test", "val", "train"):
        for ds in dataset_configs(cfg.get("data", {}).get(split, {})):
            if ds.get("classes"):
                return tuple(ds["classes"])
    return None


def native_checkpoint(state: OrderedDict, meta: dict[str, Any], hooks: dict[str, Any], exported_from: str) -> dict:
    """``{"meta": {config, CLASSES (a tuple, as mmdet stores it), versions}, "state_dict"}``, as
    ``mmcv.runner.save_checkpoint`` writes it; a run trained with an EMA hook exports the EMA weights, as mmdet
    saves them."""
    import mmcv
    import mmdet

    if meta.get("ema_swapped_in") is False:
        from model_hub_mmdet.mmdet2.hooks import ema_state_dict

        state = OrderedDict(ema_state_dict(state, swapped_in=False))
    classes = meta.get("CLASSES") or _classes_from_config(meta["config"])
    versions = {"mmdet_version": mmdet.__version__, "mmcv_version": mmcv.__version__}
    named = ("CLASSES", tuple(str(c) for c in classes)) if classes else None
    return {"meta": export_meta.native_meta(meta, exported_from, "config", versions, named),
            "state_dict": export_meta.cpu_state(state)}


def export_checkpoint(checkpoint: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write a native MMDetection checkpoint of a trial checkpoint (directory or UUID) to ``out_path`` and its final
    config beside it (``out.pth`` -> ``out.py``). Returns ``out_path``. Raises :class:`WeightsError`."""
    return export_meta.export_checkpoint(checkpoint, out_path, native_checkpoint)
