"""The 3.x config pipeline: experiment hyperparameters -> the final MMDetection 3.x ``mmengine.Config``.

``build_mmdet_config`` is the core's (:mod:`model_hub_mmdet.config_pipeline`): resolve and load ``config_file`` ->
merge ``merge_config`` -> substitute ``data.file_client_args`` as ``backend_args`` -> apply
``override_mmdet_config`` -> substitute the storage into the loading steps the overrides added -> finalize (scope,
test mode, ``global_batch_size`` per slot). :data:`SYSTEM` gives it mmengine's ``Config`` and this generation's
steps; a config name or file of MMDetection 2.x is refused in one line.
"""

from __future__ import annotations

from model_hub_mmdet.config_pipeline import ConfigSystem, build_mmdet_config, merge_config_file
from model_hub_mmdet.mmdet3.config.dump import config_text, dump_config, redact
from model_hub_mmdet.mmdet3.config.file_client import backend_args_of, backend_from_uris, substitute_backend_args
from model_hub_mmdet.mmdet3.config.finalize import finalize, per_slot_batch_size
from model_hub_mmdet.mmdet3.config.overrides import apply_overrides, coerce_like
from model_hub_mmdet.mmdet3.config.resolve import (
    bundled_config_dir,
    check_loaded,
    context_on_sys_path,
    counterpart,
    fromfile,
    load_config,
    refused_name,
    resolve_config_path,
    unknown_type,
)

__all__ = [
    "apply_overrides",
    "backend_args_of",
    "build_mmdet_config",
    "bundled_config_dir",
    "coerce_like",
    "config_text",
    "context_on_sys_path",
    "counterpart",
    "dump_config",
    "finalize",
    "load_config",
    "merge_config_file",
    "per_slot_batch_size",
    "redact",
    "resolve_config_path",
    "substitute_backend_args",
    "unknown_type",
]


SYSTEM = ConfigSystem(
    name="mmengine", example="rtmdet/rtmdet_tiny_8xb32-300e_coco.py", fromfile=fromfile,
    apply_overrides=apply_overrides, substitute_storage=substitute_backend_args, storage_of_uris=backend_from_uris,
    finalize=lambda cfg, hparams, slots: finalize(cfg, per_slot_batch_size(hparams, slots)),
    scope_prefix="mmdet::", refused_name=refused_name, check_loaded=check_loaded,
)
