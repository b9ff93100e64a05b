"""The config pipeline: experiment hyperparameters -> the final MMDetection 3.x ``mmengine.Config``.

``build_mmdet_config`` runs, in order: resolve and load ``config_file`` -> merge ``merge_config`` -> substitute
``data.file_client_args`` as ``backend_args`` -> apply ``override_mmdet_config`` -> substitute the storage into the
loading steps the overrides added -> finalize (scope, test mode, ``global_batch_size`` per slot).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mmengine.config import Config

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.mmdet3.config.dump import config_text, dump_config, redact
from model_hub_mmdet.mmdet3.config.file_client import backend_args_of, backend_from_uris, substitute_backend_args
from model_hub_mmdet.mmdet3.config.finalize import finalize, per_slot_batch_size
from model_hub_mmdet.mmdet3.config.overrides import apply_overrides, coerce_like, strip_delete
from model_hub_mmdet.mmdet3.config.resolve import (
    bundled_config_dir,
    context_on_sys_path,
    counterpart,
    import_custom_modules,
    load_config,
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


def merge_config_file(cfg: Config, merge_path: str | os.PathLike) -> Config:
    """Merge an mmdet-format ``.py`` file over ``cfg`` with mmengine's rules: dicts merge key by key, a dict with
    ``_delete_=True`` replaces the base's, and lists (pipelines, scales) replace the base's list whole."""
    other = load_config(merge_path, key="merge_config")
    try:
        merged = Config._merge_a_into_b(other.to_dict(), cfg.to_dict(), allow_list_keys=False)
    except (TypeError, KeyError) as err:
        raise ConfigError(f"merge_config {merge_path}: {err}") from err
    merged = strip_delete(merged)  # a _delete_ with nothing below it to replace would reach the registry's build
    return Config(merged, filename=cfg.filename)


def build_mmdet_config(
    hparams: Mapping[str, Any],
    data_config: Mapping[str, Any] | None = None,
    context_dir: str | os.PathLike = ".",
    slots: int = 1,
) -> Config:
    """Build the final MMDetection 3.x config from experiment ``hyperparameters`` and the experiment's ``data``
    section; ``global_batch_size`` over ``slots`` becomes ``train_dataloader.batch_size``. Raises
    :class:`~model_hub_mmdet.errors.ConfigError` with a one-line message on any user mistake."""
    if not isinstance(hparams, Mapping):
        raise ConfigError(f"hyperparameters must be a mapping, got {type(hparams).__name__}")
    if "config_file" not in hparams:
        raise ConfigError(
            "hyperparameters.config_file is required: an MMDetection config such as"
            " rtmdet/rtmdet_tiny_8xb32-300e_coco.py"
        )
    context_on_sys_path(context_dir)
    cfg = load_config(resolve_config_path(hparams["config_file"], context_dir))
    if hparams.get("merge_config"):
        cfg = merge_config_file(cfg, resolve_config_path(hparams["merge_config"], context_dir, key="merge_config"))
    data_config = data_config or {}
    if not isinstance(data_config, Mapping):
        raise ConfigError(f"the experiment's data section must be a mapping, got {type(data_config).__name__}")
    file_client_args = data_config.get("file_client_args")
    # Before the overrides, so that they can refine the args in place (`...backend_args.bucket_name: x`), and
    # after them for the loading steps they added, leaving alone any args they wrote.
    substitute_backend_args(cfg, file_client_args)
    written = apply_overrides(cfg, hparams.get("override_mmdet_config"))
    substitute_backend_args(cfg, file_client_args or backend_from_uris(cfg), keep=written)
    if any(path[0] == "custom_imports" for path in written):  # modules an override names
        import_custom_modules(cfg, str(cfg.filename), key="override_mmdet_config")
    return finalize(cfg, per_slot_batch_size(hparams, slots))
