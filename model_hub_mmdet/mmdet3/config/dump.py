"""The final 3.x config as text, secrets redacted: the core's (:mod:`model_hub_mmdet.config_pipeline`), where
mmengine's ``Config.pretty_text`` writes it."""

from model_hub_mmdet.config_pipeline import config_text, dump_config, redacted_config  # noqa: F401
from model_hub_mmdet.redact import REDACTED, SECRET_KEY, redact  # noqa: F401
