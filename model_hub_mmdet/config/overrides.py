"""Dotted ``override_mmdet_config`` keys applied to an MMDetection config.

Rules (each tested in ``tests/config/test_overrides.py``):

* ``a.b.c: v`` sets ``c`` inside the existing dict ``a.b``; a new leaf under an existing dict is allowed, a
  missing parent is an error naming the key and the closest existing keys.
* Numeric segments index lists: ``data.train.pipeline.2.img_scale``; an out-of-range index names the length.
* ``X._delete_: true`` empties ``X`` first (applied before the other keys), so keys below ``X`` start afresh:
  ``optimizer_config._delete_: true`` + ``optimizer_config.grad_clip.max_norm: 35``.
* A dict value is merged into an existing dict with mmcv's rules (so ``{_delete_: true, ...}`` replaces it).
* YAML has no tuples: a list replacing a tuple becomes a tuple (recursively, e.g. lists of scales), and a value
  replacing a float/int/bool takes that type when the conversion is exact (``1e-4`` read by YAML as a string
  becomes ``0.0001``; ``2`` replacing ``2.0`` becomes ``2.0``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from mmcv import Config, ConfigDict

from model_hub_mmdet.errors import ConfigError

DELETE = "_delete_"
_MISSING = object()


def coerce_like(value: Any, existing: Any) -> Any:
    """Convert a YAML ``value`` to the type of the ``existing`` config value where that is unambiguous."""
    if existing is _MISSING or existing is None or value is None:
        return value
    if isinstance(existing, (tuple, list)) and isinstance(value, (list, tuple)):
        items = [
            coerce_like(v, existing[i] if i < len(existing) else (existing[0] if existing else _MISSING))
            for i, v in enumerate(value)
        ]
        return tuple(items) if isinstance(existing, tuple) else items
    if isinstance(existing, bool):
        return value
    if isinstance(existing, float) and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(existing, int) and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _segments(key: str) -> list[str]:
    if not isinstance(key, str) or not key or any(s == "" for s in key.split(".")):
        raise ConfigError(f"override_mmdet_config key {key!r} is not a dotted path like 'optimizer.lr'")
    return key.split(".")


def _child(node: Any, seg: str, key: str, path: list[str]) -> Any:
    """Step from ``node`` into ``seg`` or raise a ConfigError that explains why it cannot."""
    where = ".".join(path) or "<config>"
    if isinstance(node, list):
        if not seg.lstrip("-").isdigit():
            raise ConfigError(f"override_mmdet_config.{key}: {where} is a list; use a numeric index, not {seg!r}")
        idx = int(seg)
        if not -len(node) <= idx < len(node):
            raise ConfigError(
                f"override_mmdet_config.{key}: index {idx} out of range for {where} (a list of length {len(node)})"
            )
        return node[idx]
    if isinstance(node, Mapping):
        if seg in node:
            return node[seg]
        close = difflib.get_close_matches(seg, [str(k) for k in node.keys()], n=3, cutoff=0.5)
        hint = f"; closest: {', '.join('.'.join(path + [c]) for c in close)}" if close else ""
        raise ConfigError(f"override_mmdet_config.{key}: {'.'.join(path + [seg])} does not exist in the config{hint}")
    raise ConfigError(
        f"override_mmdet_config.{key}: {where} is {type(node).__name__} ({node!r}), not a dict or list;"
        f" set {where} itself or delete it first with {where}._delete_: true"
    )


def _set(parent: Any, seg: str, value: Any) -> None:
    if isinstance(parent, list):
        parent[int(seg)] = value
    else:
        parent[seg] = value


def _to_config(value: Any) -> Any:
    if isinstance(value, Mapping) and not isinstance(value, ConfigDict):
        return ConfigDict(value)
    return value


def apply_overrides(cfg: Config, overrides: Mapping[str, Any] | None) -> set[tuple[str, ...]]:
    """Apply ``overrides`` to ``cfg`` in place. Returns the set of paths that were written."""
    if not overrides:
        return set()
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            f"hyperparameters.override_mmdet_config must be a mapping of dotted keys to values, got {type(overrides).__name__}"
        )
    root = cfg._cfg_dict  # the ConfigDict; Config itself forwards item access to it
    written: set[tuple[str, ...]] = set()
    deletes = sorted(
        (k for k, v in overrides.items() if _segments(k)[-1] == DELETE and v), key=lambda k: k.count(".")
    )
    fresh: list[tuple[str, ...]] = []  # subtrees emptied by _delete_: anything below them is new
    for key in deletes:
        segs = _segments(key)[:-1]
        node = root
        for i, seg in enumerate(segs[:-1]):
            node = _child(node, seg, key, segs[:i])
        if segs:
            _set(node, segs[-1], ConfigDict())
            fresh.append(tuple(segs))
            written.add(tuple(segs))

    for key, value in overrides.items():
        segs = _segments(key)
        if segs[-1] == DELETE:
            continue
        node = root
        for i, seg in enumerate(segs[:-1]):
            below_fresh = any(i >= len(f) and tuple(segs[: len(f)]) == f for f in fresh)
            if below_fresh and isinstance(node, Mapping) and not isinstance(node.get(seg), (Mapping, list)):
                node[seg] = ConfigDict()
            node = _child(node, seg, key, segs[:i])
        leaf = segs[-1]
        if isinstance(node, list):
            existing = _child(node, leaf, key, segs[:-1])
        elif isinstance(node, Mapping):
            existing = node.get(leaf, _MISSING)
        else:
            _child(node, leaf, key, segs[:-1])  # raises the "not a dict or list" error
        if isinstance(value, Mapping) and value.get(DELETE):
            new = ConfigDict({k: v for k, v in value.items() if k != DELETE})
        elif isinstance(value, Mapping) and isinstance(existing, Mapping):
            new = Config._merge_a_into_b(dict(value), existing, allow_list_keys=True)
        else:
            new = _to_config(coerce_like(value, existing))
        _set(node, leaf, new)
        written.add(tuple(segs))
    return written
