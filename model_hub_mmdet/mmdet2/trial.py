"""Deprecated: ``MMDetTrial`` is the core trial now (:mod:`model_hub_mmdet.trial`), the same class in both
generations, with the 2.x engine (:mod:`model_hub_mmdet.mmdet2.engine`) beneath it. Import it as
``from model_hub_mmdet import MMDetTrial``; this path gives the very same class, with a DeprecationWarning."""

from __future__ import annotations

import warnings

from model_hub_mmdet.mmdet2.engine import quiet_stdout, registered_types
from model_hub_mmdet.trial import MMDetTrial, MMDetTrialCallback

__all__ = ["MMDetTrial", "MMDetTrialCallback", "quiet_stdout", "registered_types"]

warnings.warn("model_hub_mmdet.mmdet2.trial is deprecated: import MMDetTrial from model_hub_mmdet (the same class)",
              DeprecationWarning, stacklevel=2)
