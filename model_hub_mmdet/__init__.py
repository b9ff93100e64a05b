"""model_hub_mmdet: train MMDetection models on Determined with MMDetection's own config system.

The package is a generation-neutral core (this folder) plus one adapter per MMDetection generation
(``mmdet2/`` for MMDetection 2.28, ``mmdet3/`` for 3.3); :mod:`model_hub_mmdet.generation` finds the installed one
without importing it. ``MMDetTrial`` is the core trial (:mod:`model_hub_mmdet.trial`), which runs the installed
generation's engine; ``build_mmdet_config`` is the installed generation's.

Importing the package patches no third-party code. Where a generation is installed it registers the ``s3``,
``gcs`` and ``fake`` storage backends with that generation's file I/O; the trial, the CLI and the runners apply
the generation's patches explicitly (``generation.setup()``).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from model_hub_mmdet import _moved, generation
from model_hub_mmdet.errors import ConfigError, DataError, SetupError, UserError, WeightsError

__version__ = "0.2.0"
__all__ = [
    "MMDetTrial",
    "MMDetTrialCallback",
    "build_mmdet_config",
    "generation",
    "storage",
    "weights",
    "ConfigError",
    "DataError",
    "SetupError",
    "UserError",
    "WeightsError",
    "__version__",
]

_moved.install()


def _register_backends() -> None:
    name = generation.installed()
    if name is None:
        return
    # mmcv's import-time noise (its v2.0 banner; torch's CUDA notice when mmcv imports cpp_extension) is kept out
    # for the duration of this import only: nothing process-wide is changed here.
    notice = logging.getLogger("torch.utils.cpp_extension")
    level = notice.level
    notice.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="On January 1, 2023, MMCV will release v2.0.0")
            generation.adapter("fileio").register()
    except (ImportError, SetupError):  # a broken or half-installed generation: its first use says so in one line
        return
    finally:
        notice.setLevel(level)


_register_backends()


def build_mmdet_config(hparams: Any, data_config: Any = None, context_dir: Any = ".") -> Any:
    """The final MMDetection config of experiment ``hyperparameters`` and ``data``, for the installed generation
    (an ``mmcv.Config`` for 2.x, an ``mmengine.Config`` for 3.x). See ``model_hub_mmdet.mmdet2.config``."""
    return generation.adapter("config").build_mmdet_config(hparams, data_config, context_dir)


def __getattr__(name: str) -> Any:
    # The trial imports determined, torch and the generation's mmdet: load it only when asked for, so the CLI
    # and the config tools start fast.
    if name in ("MMDetTrial", "MMDetTrialCallback"):
        from model_hub_mmdet import trial

        return getattr(trial, name)
    if name in ("storage", "weights"):
        import importlib

        return importlib.import_module(f"model_hub_mmdet.{name}")
    raise AttributeError(f"module 'model_hub_mmdet' has no attribute {name!r}")
