"""Weights in and out: model zoo warm starts, cached downloads, safe loading, export to native mmdet checkpoints.

The installed generation's adapter registers cached, safe loaders for its remote checkpoint schemes
(``http(s)://``, ``s3://``, ``gs://``, ``torchvision://``, ``open-mmlab://``, ``mmcls://``), so ``init_cfg``
backbones use them too (``model_hub_mmdet.mmdet2.checkpoint_schemes``).

* :func:`warm_start` -- called by the trial after ``init_weights()``: ``pretrained_weights`` / ``use_pretrained`` /
  ``load_from`` into the model, with a report of matched, missing, unexpected and shape-mismatched tensors.
* ``export_checkpoint`` -- a trial checkpoint (dir or UUID) -> native mmdet ``.pth`` + config ``.py`` (the
  installed generation's ``export`` module; still importable from here).
* :func:`fetch`, :func:`zoo_index`, :func:`resolve_weights`, :func:`load_checkpoint_file` -- the parts.
"""

from model_hub_mmdet.weights.download import cache_dir, fetch
from model_hub_mmdet.weights.loading import (
    extract_state_dict,
    load_checkpoint_file,
    load_state_dict_report,
    resolve_weights,
    warm_start,
)
from model_hub_mmdet.weights.zoo import ZooEntry, zoo_entry_for_config, zoo_index

__all__ = [
    "ZooEntry",
    "cache_dir",
    "export_checkpoint",
    "extract_state_dict",
    "fetch",
    "load_checkpoint_file",
    "load_state_dict_report",
    "resolve_weights",
    "warm_start",
    "zoo_entry_for_config",
    "zoo_index",
]


def __getattr__(name: str):
    # The export needs the installed generation's config and model code: load it only when asked for.
    if name == "export_checkpoint":
        from model_hub_mmdet import generation

        return generation.adapter("export").export_checkpoint
    raise AttributeError(f"module 'model_hub_mmdet.weights' has no attribute {name!r}")
