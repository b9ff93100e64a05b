"""The 2.x config pipeline: experiment hyperparameters -> the final MMDetection ``mmcv.Config``.

``build_mmdet_config`` is the core's (:mod:`model_hub_mmdet.config_pipeline`): resolve and load ``config_file`` ->
merge ``merge_config`` -> substitute ``data.file_client_args`` -> apply ``override_mmdet_config`` -> substitute
``file_client_args`` into the loading steps the overrides added -> finalize. :data:`SYSTEM` gives it mmcv 1.x's
``Config`` and this generation's steps.
"""

from __future__ import annotations

from model_hub_mmdet.config_pipeline import ConfigSystem, build_mmdet_config, merge_config_file
from model_hub_mmdet.mmdet2.config.dump import config_text, dump_config, redact
from model_hub_mmdet.mmdet2.config.file_client import backend_from_uris, substitute_file_client_args
from model_hub_mmdet.mmdet2.config.finalize import evaluate_kwargs, finalize, split_evaluation_cfg
from model_hub_mmdet.mmdet2.config.overrides import apply_overrides, coerce_like
from model_hub_mmdet.mmdet2.config.resolve import (
    bundled_config_dir,
    context_on_sys_path,
    fromfile,
    load_config,
    resolve_config_path,
)

__all__ = [
    "build_mmdet_config",
    "merge_config_file",
    "apply_overrides",
    "coerce_like",
    "substitute_file_client_args",
    "finalize",
    "split_evaluation_cfg",
    "evaluate_kwargs",
    "resolve_config_path",
    "bundled_config_dir",
    "context_on_sys_path",
    "load_config",
    "config_text",
    "dump_config",
    "redact",
]


SYSTEM = ConfigSystem(
    name="mmcv", example="mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py", fromfile=fromfile, apply_overrides=apply_overrides,
    substitute_storage=substitute_file_client_args, storage_of_uris=backend_from_uris,
    finalize=lambda cfg, hparams, slots: finalize(cfg),  # samples_per_gpu is the trial's (global batch / slots)
)
