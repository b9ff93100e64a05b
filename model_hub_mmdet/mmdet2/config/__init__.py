"""The config pipeline: experiment hyperparameters -> the final MMDetection ``mmcv.Config``.

``build_mmdet_config`` runs, in order: resolve and load ``config_file`` -> merge ``merge_config`` ->
substitute ``data.file_client_args`` -> apply ``override_mmdet_config`` -> substitute ``file_client_args`` into
the loading steps the overrides added -> finalize.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mmcv import Config

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.mmdet2.config.dump import config_text, dump_config, redact
from model_hub_mmdet.mmdet2.config.file_client import backend_from_uris, substitute_file_client_args
from model_hub_mmdet.mmdet2.config.finalize import evaluate_kwargs, finalize, split_evaluation_cfg
from model_hub_mmdet.mmdet2.config.overrides import apply_overrides, coerce_like, strip_delete
from model_hub_mmdet.mmdet2.config.resolve import (
    bundled_config_dir,
    context_on_sys_path,
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


def merge_config_file(cfg: Config, merge_path: str | os.PathLike) -> Config:
    """Merge an mmdet-format ``.py`` file over ``cfg`` with mmcv's rules: dicts merge key by key, a dict with
    ``_delete_=True`` replaces the base's, and lists (pipelines, scales) replace the base's list whole."""
    other = load_config(merge_path, key="merge_config")
    try:
        merged = Config._merge_a_into_b(other._cfg_dict.to_dict(), cfg._cfg_dict, allow_list_keys=False)
    except (TypeError, KeyError) as err:
        raise ConfigError(f"merge_config {merge_path}: {err}") from err
    merged = strip_delete(merged)  # a _delete_ with nothing below it to replace would reach build_from_cfg
    return Config(merged, cfg_text=cfg.text + f"\n# merged from {merge_path}\n" + other.text, filename=cfg.filename)


def build_mmdet_config(
    hparams: Mapping[str, Any], data_config: Mapping[str, Any] | None = None, context_dir: str | os.PathLike = "."
) -> Config:
    """Build the final MMDetection config from experiment ``hyperparameters`` and the experiment's ``data``
    section. Raises :class:`~model_hub_mmdet.errors.ConfigError` with a one-line message on any user mistake."""
    if not isinstance(hparams, Mapping):
        raise ConfigError(f"hyperparameters must be a mapping, got {type(hparams).__name__}")
    if "config_file" not in hparams:
        raise ConfigError(
            "hyperparameters.config_file is required: an MMDetection config such as"
            " mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py"
        )
    context_on_sys_path(context_dir)
    cfg = load_config(resolve_config_path(hparams["config_file"], context_dir))
    if hparams.get("merge_config"):
        cfg = merge_config_file(cfg, resolve_config_path(hparams["merge_config"], context_dir, key="merge_config"))
    data_config = data_config or {}
    if not isinstance(data_config, Mapping):
        raise ConfigError(f"the experiment's data section must be a mapping, got {type(data_config).__name__}")
    file_client_args = data_config.get("file_client_args")
    # Before the overrides, so that they can refine the args in place (`...file_client_args.bucket_name: x`),
    # and after them for the loading steps they added, leaving alone any args they wrote.
    substitute_file_client_args(cfg, file_client_args)
    written = apply_overrides(cfg, hparams.get("override_mmdet_config"))
    substitute_file_client_args(cfg, file_client_args or backend_from_uris(cfg), keep=written)
    return finalize(cfg)
