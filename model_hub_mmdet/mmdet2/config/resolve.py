"""Locate and load MMDetection 2.x config files: the core's lookup and one-line errors
(:mod:`model_hub_mmdet.config_pipeline`) with mmcv's ``Config.fromfile``."""

from __future__ import annotations

from mmcv import Config

from model_hub_mmdet.config_pipeline import (  # noqa: F401  (this module's API since before the core had them)
    bundled_config_dir,
    context_on_sys_path,
    load_config,
    resolve_config_path,
)


def fromfile(path: str) -> Config:
    """mmcv's ``Config.fromfile`` without importing ``custom_imports`` (the pipeline does, naming what fails)."""
    return Config.fromfile(path, import_custom_modules=False)
