"""Write the final config for the user to read or reuse, with secrets redacted (the core's
:mod:`model_hub_mmdet.config_pipeline`; mmcv's ``Config`` writes the text)."""

from model_hub_mmdet.config_pipeline import config_text, dump_config, redacted_config
from model_hub_mmdet.redact import REDACTED, SECRET_KEY, redact

__all__ = ["REDACTED", "SECRET_KEY", "config_text", "dump_config", "redact", "redacted_config"]
