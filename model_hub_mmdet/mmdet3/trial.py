"""Deprecated: ``MMDetTrial`` is the core trial now (:mod:`model_hub_mmdet.trial`), the same class in both
generations, with the 3.x engine (:mod:`model_hub_mmdet.mmdet3.engine`) beneath it. Import it as
``from model_hub_mmdet import MMDetTrial``; this path gives the very same class, with a DeprecationWarning."""

from __future__ import annotations

import warnings

from model_hub_mmdet.mmdet3.engine import (
    NONFINITE_ADVICE,
    _without_shared_parameter_notes,
    quiet_mmengine,
    raise_open_files_limit,
    registered_types,
)
from model_hub_mmdet.trial import MMDetTrial, MMDetTrialCallback

__all__ = ["NONFINITE_ADVICE", "MMDetTrial", "MMDetTrialCallback", "_without_shared_parameter_notes",
           "quiet_mmengine", "raise_open_files_limit", "registered_types"]

warnings.warn("model_hub_mmdet.mmdet3.trial is deprecated: import MMDetTrial from model_hub_mmdet (the same class)",
              DeprecationWarning, stacklevel=2)
