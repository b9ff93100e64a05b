"""Write the final config for the user to read or reuse, with secrets redacted."""

from __future__ import annotations

import pprint
from collections.abc import Mapping
from pathlib import Path

from mmengine.config import Config

from model_hub_mmdet.redact import REDACTED, SECRET_KEY, redact

__all__ = ["REDACTED", "SECRET_KEY", "config_text", "dump_config", "redact", "redacted_config"]


def redacted_config(cfg: Config) -> Config:
    """A new Config equal to ``cfg`` but with secrets redacted."""
    return Config(redact(cfg.to_dict()), filename=cfg.filename)


def config_text(cfg: Config) -> str:
    """The final config as MMDetection ``.py`` text, secrets redacted."""
    redacted = redacted_config(cfg)
    try:
        return redacted.pretty_text
    except Exception:  # yapf rejects some values mmengine writes (e.g. strings holding quotes)
        return _plain_text(redacted.to_dict())


def _plain_text(cfg_dict: Mapping) -> str:
    """Python assignments (``key = repr``) that ``Config.fromfile`` reads back to the same dict."""
    return "".join(f"{key} = {pprint.pformat(value, sort_dicts=False)}\n" for key, value in cfg_dict.items())


def dump_config(cfg: Config, path: str | Path) -> Path:
    """Write the final config (``.py``, secrets redacted) to ``path`` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_text(cfg), encoding="utf-8")
    return path
