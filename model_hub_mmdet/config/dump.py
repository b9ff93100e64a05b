"""Write the final config for the user to read or reuse, with secrets redacted."""

from __future__ import annotations

import copy
import pprint
import re
from collections.abc import Mapping
from pathlib import Path

from mmcv import Config

SECRET_KEY = re.compile(r"secret|token|passw|credential|private_key|aws_access_key_id|access_key", re.IGNORECASE)
REDACTED = "<redacted>"


def redact(obj):
    """A copy of ``obj`` with the value of every key that looks like a secret replaced by ``<redacted>``."""
    if isinstance(obj, Mapping):
        return {k: (REDACTED if SECRET_KEY.search(str(k)) and v is not None else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    return copy.deepcopy(obj)


def redacted_config(cfg: Config) -> Config:
    """A new Config equal to ``cfg`` but with secrets redacted."""
    return Config(redact(cfg._cfg_dict.to_dict()), filename=cfg.filename)


def config_text(cfg: Config) -> str:
    """The final config as MMDetection ``.py`` text, secrets redacted."""
    redacted = redacted_config(cfg)
    try:
        return redacted.pretty_text
    except Exception:  # mmcv quotes strings as '...' and yapf rejects the result when a value holds a quote
        return _plain_text(redacted._cfg_dict.to_dict())


def _plain_text(cfg_dict: Mapping) -> str:
    """Python assignments (``key = repr``) that ``Config.fromfile`` reads back to the same dict."""
    return "".join(f"{key} = {pprint.pformat(value, sort_dicts=False)}\n" for key, value in cfg_dict.items())


def dump_config(cfg: Config, path: str | Path) -> Path:
    """Write the final config (``.py``, secrets redacted) to ``path`` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_text(cfg), encoding="utf-8")
    return path
