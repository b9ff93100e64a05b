"""Dotted ``override_mmdet_config`` keys applied to an MMDetection config.

Rules (each tested in ``tests/config/test_overrides.py``):

* ``a.b.c: v`` sets ``c`` inside the existing dict ``a.b``; a new leaf under an existing dict is allowed, a
  missing parent is an error naming the key and the closest existing keys.
* Numeric segments index lists: ``data.train.pipeline.2.img_scale``; an out-of-range index names the length.
* ``X._delete_: true`` empties ``X`` first (applied before the other keys), so keys below ``X`` start afresh:
  ``optimizer_config._delete_: true`` + ``optimizer_config.grad_clip.max_norm: 35``.
* A dict value is merged into an existing dict with mmcv's rules (so ``{_delete_: true, ...}`` replaces it, at
  any depth); a dict of numeric keys merged into a list changes those elements. Anything else replaces.
  One exception: a ``file_client_args`` dict naming another ``backend`` replaces the old args whole.
* YAML has no tuples: a list replacing a tuple becomes a tuple (at any depth, e.g. inside a replaced pipeline
  step of the same ``type``), one scale replacing a list of scales becomes a tuple and several scales replacing
  one become a list of tuples; a value replacing a float/int takes that type when the conversion is exact
  (``1e-4``, read by YAML as a string, becomes ``0.0001``; ``2`` replacing ``2.0`` becomes ``2.0``).
* The caller's ``overrides`` are never modified.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from mmcv import Config, ConfigDict

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.mmdet2.config.walk import key_paths

DELETE = "_delete_"
RESERVED_TOP_LEVEL = ("filename", "text", "pretty_text")  # mmcv.Config refuses these as top-level keys
_MISSING = object()


# --------------------------------------------------------------------------------------------- type coercion
def _is_seq(x: Any) -> bool:
    return isinstance(x, (list, tuple))


def _same_kind(value: Mapping, existing: Any) -> bool:
    """A dict value may borrow types from ``existing`` if it is a dict of the same ``type`` (or untyped)."""
    return isinstance(existing, Mapping) and value.get("type", existing.get("type")) == existing.get("type")


def _template(existing: list | tuple, i: int, value: Any) -> Any:
    """The element of ``existing`` that ``value`` (element ``i`` of the new list) replaces, if any."""
    if isinstance(value, Mapping) and "type" in value:
        # Pipelines: match steps by type, so a whole replaced pipeline keeps Resize.img_scale a tuple.
        if i < len(existing) and _same_kind(value, existing[i]):
            return existing[i]
        return next((e for e in existing if _same_kind(value, e)), _MISSING)
    if i < len(existing):
        return existing[i]
    return existing[0] if existing else _MISSING  # extra elements of a homogeneous list (more scales)


def _coerce_sequence(value: list | tuple, existing: list | tuple) -> list | tuple:
    flat = bool(existing) and not any(_is_seq(e) for e in existing)
    if flat and value and all(_is_seq(v) for v in value):  # one scale (w, h) -> several scales
        return [coerce_like(v, existing) for v in value]
    nested = bool(existing) and all(_is_seq(e) for e in existing)
    if nested and value and not any(_is_seq(v) or isinstance(v, Mapping) for v in value):  # several -> one
        return coerce_like(value, existing[0])
    items = [coerce_like(v, _template(existing, i, v)) for i, v in enumerate(value)]
    return tuple(items) if isinstance(existing, tuple) else items


def coerce_like(value: Any, existing: Any) -> Any:
    """Convert a YAML ``value`` to the type of the ``existing`` config value where that is unambiguous."""
    if existing is _MISSING or existing is None or value is None:
        return value
    if _is_seq(existing) and _is_seq(value):
        return _coerce_sequence(value, existing)
    if isinstance(value, Mapping):
        if not _same_kind(value, existing):
            return value
        return {k: coerce_like(v, existing.get(k, _MISSING)) for k, v in value.items()}
    if isinstance(existing, bool) or isinstance(value, bool):
        return value
    if isinstance(existing, float) and isinstance(value, (int, str)):
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


def _to_config(value: Any) -> Any:
    """Dicts (also inside lists/tuples) become ConfigDicts, so attribute access works on overridden parts."""
    if isinstance(value, Mapping):
        return ConfigDict({k: _to_config(v) for k, v in value.items()})
    if _is_seq(value):
        return type(value)(_to_config(v) for v in value)
    return value


def strip_delete(value: Any) -> Any:
    """``value`` without ``_delete_`` keys, at any depth (they only mean something when merging over an existing
    dict; one left with nothing below it to replace would reach mmcv's ``build_from_cfg``)."""
    if isinstance(value, Mapping):
        return {k: strip_delete(v) for k, v in value.items() if k != DELETE}
    if _is_seq(value):
        return type(value)(strip_delete(v) for v in value)
    return value


# ------------------------------------------------------------------------------------------------ path walking
def _segments(key: Any) -> list[str]:
    if not isinstance(key, str) or not key or any(s == "" for s in key.split(".")):
        raise ConfigError(f"override_mmdet_config key {key!r} is not a dotted path like 'optimizer.lr'")
    return key.split(".")


def _suggest(root: Mapping, node: Mapping, path: list[str], seg: str) -> str:
    """Closest keys next to ``seg`` plus same-named keys elsewhere in the config (a key at the wrong level)."""
    keys = [str(k) for k in node.keys()]
    close = [".".join(path + [c]) for c in difflib.get_close_matches(seg, keys, n=3, cutoff=0.5)]
    elsewhere = [".".join(p) for p in key_paths(root) if p[-1] == seg and list(p) != path + [seg]]
    found = list(dict.fromkeys(close + elsewhere[:3]))
    if found:
        return f"; closest: {', '.join(found)}"
    where = ".".join(path) or "the top level"
    return f"; keys at {where}: {', '.join(keys[:12])}{', ...' if len(keys) > 12 else ''}"


def _index(node: list, seg: str, key: str, path: list[str]) -> int:
    where = ".".join(path) or "<config>"
    if not seg.lstrip("-").isdigit():
        raise ConfigError(f"override_mmdet_config.{key}: {where} is a list; use a numeric index, not {seg!r}")
    idx = int(seg)
    if not -len(node) <= idx < len(node):
        raise ConfigError(
            f"override_mmdet_config.{key}: index {idx} out of range for {where} (a list of length {len(node)})"
        )
    return idx


def _child(root: Mapping, node: Any, seg: str, key: str, path: list[str]) -> Any:
    """Step from ``node`` into ``seg`` or raise a ConfigError that explains why it cannot."""
    if isinstance(node, list):
        return node[_index(node, seg, key, path)]
    if isinstance(node, Mapping):
        if seg in node:
            return node[seg]
        missing = ".".join(path + [seg])
        raise ConfigError(
            f"override_mmdet_config.{key}: {missing} does not exist in the config{_suggest(root, node, path, seg)}"
        )
    where = ".".join(path) or "<config>"
    raise ConfigError(
        f"override_mmdet_config.{key}: {where} is {type(node).__name__} ({node!r}), not a dict or list;"
        f" set {where} itself or delete it first with {where}._delete_: true"
    )


def _set(parent: Any, seg: str, value: Any, key: str, path: list[str]) -> None:
    if isinstance(parent, list):
        parent[_index(parent, seg, key, path)] = value
    elif isinstance(parent, Mapping):
        parent[seg] = value
    else:
        _child({}, parent, seg, key, path)  # raises the "not a dict or list" error


# ----------------------------------------------------------------------------------------------- merging values
def _merged(value: Any, existing: Any, key: str, path: list[str]) -> Any:
    """What to store at ``path``: dicts merge into dicts (mmcv rules, ``_delete_`` replaces), a dict of numeric
    keys merges into a list, anything else replaces ``existing`` with types borrowed from it."""
    if isinstance(value, Mapping):
        value = dict(value)
        replace = bool(value.pop(DELETE, False)) or _other_backend(value, existing, path)
        if isinstance(existing, Mapping) and not replace:
            out = ConfigDict(existing)
            for k, v in value.items():
                out[k] = _merged(v, existing.get(k, _MISSING), key, path + [str(k)])
            return out
        if isinstance(existing, list) and not replace and value and all(str(k).lstrip("-").isdigit() for k in value):
            out = list(existing)
            for k, v in value.items():
                idx = _index(existing, str(k), key, path)
                out[idx] = _merged(v, existing[idx], key, path + [str(k)])
            return out
        return _to_config(coerce_like(strip_delete(value), existing))
    return _to_config(coerce_like(strip_delete(value), existing))


def _other_backend(value: Mapping, existing: Any, path: list[str]) -> bool:
    """``file_client_args`` of another backend replace the old ones: one backend's options mean nothing to
    another (``{backend: disk}`` over ``{backend: s3, bucket_name: b}`` must not keep ``bucket_name``)."""
    return (
        bool(path)
        and path[-1] == "file_client_args"
        and isinstance(existing, Mapping)
        and "backend" in value
        and value["backend"] != existing.get("backend")
    )


def _written_paths(value: Any, prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """``prefix`` and every path inside ``value``: what an override wrote (file_client substitution honours it)."""
    yield prefix
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k != DELETE:
                yield from _written_paths(v, prefix + (str(k),))
    elif _is_seq(value):
        for i, v in enumerate(value):
            yield from _written_paths(v, prefix + (str(i),))


def _lookup(node: Any, segs: list[str] | tuple[str, ...]) -> Any:
    """The value at ``segs`` below ``node`` or ``_MISSING`` (no errors: used for coercion templates only)."""
    for seg in segs:
        if isinstance(node, Mapping) and seg in node:
            node = node[seg]
        elif isinstance(node, list) and seg.lstrip("-").isdigit() and -len(node) <= int(seg) < len(node):
            node = node[int(seg)]
        else:
            return _MISSING
    return node


# ------------------------------------------------------------------------------------------------------- public
def apply_overrides(cfg: Config, overrides: Mapping[str, Any] | None) -> set[tuple[str, ...]]:
    """Apply ``overrides`` to ``cfg`` in place. Returns every path written (a written dict's inner keys too)."""
    if not overrides:
        return set()
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            "hyperparameters.override_mmdet_config must be a mapping of dotted keys to values,"
            f" got {type(overrides).__name__}"
        )
    overrides = copy.deepcopy(dict(overrides))  # mmcv-style merging pops _delete_: never touch the caller's
    for key in overrides:
        if _segments(key)[0] in RESERVED_TOP_LEVEL:
            raise ConfigError(f"override_mmdet_config.{key}: mmcv reserves the top-level key {_segments(key)[0]!r}")
    root = cfg._cfg_dict  # the ConfigDict; Config itself forwards item access to it
    written: set[tuple[str, ...]] = set()
    deleted = _apply_deletes(root, overrides, written)
    for key, value in overrides.items():
        if _segments(key)[-1] != DELETE:
            _apply_one(root, key, value, deleted)
            written.update(_written_paths(value, tuple(_segments(key))))
    return written


def _apply_one(root: Mapping, key: str, value: Any, deleted: Mapping[tuple[str, ...], Any]) -> None:
    """Set one dotted ``key`` to ``value`` (merged/coerced against what is there)."""
    segs = _segments(key)
    node = root
    for i, seg in enumerate(segs[:-1]):
        below_deleted = any(i >= len(f) and tuple(segs[: len(f)]) == f for f in deleted)
        if below_deleted and isinstance(node, Mapping) and not isinstance(node.get(seg), (Mapping, list)):
            node[seg] = ConfigDict()  # a _delete_d subtree is rebuilt from its keys
        node = _child(root, node, seg, key, segs[:i])
    leaf = segs[-1]
    if isinstance(node, list):
        existing = node[_index(node, leaf, key, segs[:-1])]
    elif isinstance(node, Mapping):
        existing = node.get(leaf, _MISSING)
    else:
        existing = _child(root, node, leaf, key, segs[:-1])  # raises the "not a dict or list" error
    if existing is _MISSING:  # below a _delete_d subtree the old value still tells the expected types
        new = _to_config(coerce_like(strip_delete(value), _deleted_template(deleted, segs)))
    else:
        new = _merged(value, existing, key, segs)
    _set(node, leaf, new, key, segs[:-1])


def _deleted_template(deleted: Mapping[tuple[str, ...], Any], segs: list[str]) -> Any:
    """The value ``segs`` had before a ``_delete_`` of one of its ancestors, or ``_MISSING``."""
    for path, old in sorted(deleted.items(), key=lambda item: -len(item[0])):
        if tuple(segs[: len(path)]) == path:
            found = _lookup(old, segs[len(path) :])
            if found is not _MISSING:
                return found
    return _MISSING


def _apply_deletes(root: Mapping, overrides: Mapping[str, Any], written: set) -> dict[tuple[str, ...], Any]:
    """Empty every ``X`` of an ``X._delete_: true`` key (shallowest first). Returns {path: old value}."""
    deletes = sorted((k for k, v in overrides.items() if _segments(k)[-1] == DELETE and v), key=lambda k: k.count("."))
    deleted: dict[tuple[str, ...], Any] = {}
    for key in deletes:
        segs = _segments(key)[:-1]
        if not segs:
            raise ConfigError(f"override_mmdet_config.{key}: _delete_ needs a key to delete, e.g. optimizer._delete_")
        node = root
        for i, seg in enumerate(segs[:-1]):
            node = _child(root, node, seg, key, segs[:i])
        old = _lookup(node, segs[-1:])
        _set(node, segs[-1], ConfigDict(), key, segs[:-1])
        deleted[tuple(segs)] = old
        written.add(tuple(segs))
    return deleted
