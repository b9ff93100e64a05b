"""The generation-neutral half of accounting for every top-level key of an MMDetection config.

Each generation's ``config/keys.py`` holds its table (key -> (how, what does its job)) and its refusals; this
module checks a config against them: refused values are one :class:`ConfigError` line, replaced keys and keys
outside the table one INFO line each. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from model_hub_mmdet.errors import ConfigError

logger = logging.getLogger("model_hub_mmdet")

HONOURED, REPLACED, REFUSED, VARIABLE = "honoured", "replaced", "refused", "variable"


def is_set(value: Any) -> bool:
    """Whether a config value asks for something (None, False and empty containers do not)."""
    return value is not None and value is not False and value != {} and value != []


def account(
    cfg: Mapping[str, Any],
    keys: Mapping[str, tuple[str, str]],
    refusals: Callable[[Mapping[str, Any]], list[str]],
    reader: str,
    subkeys: Mapping[tuple[str, str], str] | None = None,
) -> None:
    """Refuse what cannot be honoured; log the replaced keys (and ``subkeys``: parts of honoured keys) this config
    sets, and the keys outside ``keys``, which neither ``reader`` nor the trial read."""
    problems = refusals(cfg)
    if problems:
        raise ConfigError("; ".join(problems))
    replaced = [f"{k} -> {keys[k][1]}" for k in cfg if keys.get(k, ("",))[0] == REPLACED and is_set(cfg.get(k))]
    replaced += [f"{key}.{sub} -> {what}" for (key, sub), what in (subkeys or {}).items()
                 if isinstance(cfg.get(key), Mapping) and is_set(cfg[key].get(sub))]
    if replaced:
        logger.info("config keys replaced by Determined: %s", "; ".join(replaced))
    unknown = [k for k in cfg if k not in keys]
    if unknown:
        logger.info("config variables that neither %s nor the trial read: %s", reader, ", ".join(unknown))
