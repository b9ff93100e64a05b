"""model_hub_mmdet: train MMDetection 2.x models on Determined with MMDetection's own config system."""

from model_hub_mmdet import compat

compat.apply()  # before mmcv/mmdet are imported anywhere

# Importing these registers the s3/gcs FileClient backends and cached, safe remote-checkpoint loaders.
from model_hub_mmdet import backends, weights  # noqa: E402
from model_hub_mmdet.config import build_mmdet_config  # noqa: E402
from model_hub_mmdet.errors import ConfigError, DataError, UserError, WeightsError  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "MMDetTrial",
    "build_mmdet_config",
    "backends",
    "weights",
    "ConfigError",
    "DataError",
    "UserError",
    "WeightsError",
    "__version__",
]


def __getattr__(name: str):
    # MMDetTrial imports determined and torch; load it only when asked for, so the CLI and config tools
    # start fast and work where determined is not importable.
    if name == "MMDetTrial":
        from model_hub_mmdet.trial import MMDetTrial

        return MMDetTrial
    raise AttributeError(f"module 'model_hub_mmdet' has no attribute {name!r}")
