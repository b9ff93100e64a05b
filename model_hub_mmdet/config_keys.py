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


def key_table(text: str) -> dict[str, tuple[str, str]]:
    """A generation's table of keys, written as rows ``key | how | what does its job``; a row whose key and how
    are blank continues the row above (its text joined with a space). Returns {key: (how, what)} in row order."""
    table: dict[str, tuple[str, str]] = {}
    key = ""
    for line in text.strip().splitlines():
        name, how, what = (part.strip() for part in line.split("|", 2))
        if name:
            if how not in (HONOURED, REPLACED, REFUSED, VARIABLE):
                raise ValueError(f"key table row {name}: {how!r} is not one of honoured, replaced, refused, variable")
            key, table[name] = name, (how, what)
        else:
            table[key] = (table[key][0], f"{table[key][1]} {what}")
    return table


def is_set(value: Any) -> bool:
    """Whether a config value asks for something (None, False and empty containers do not)."""
    return value is not None and value is not False and value != {} and value != []


def variables(names: list[str], reader: str) -> dict[str, tuple[str, str]]:
    """Table rows for the zoo's config variables: read inside the config files, by no tool of ``reader``'s."""
    return {name: (VARIABLE, f"a variable of the config file; {reader} nowhere, nor does the trial") for name in names}


def resume_refusal(key: str, value: Any, instead: str) -> str:
    """The one line refusing a runner's own resume setting (``resume_from``, ``resume``), and what to set
    ``instead``."""
    return (f"{key}={value!r}: Determined resumes from its own checkpoints (train --local --resume DIR or"
            f" --auto-resume; on a cluster, the experiment's checkpoints); {instead}")


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
