"""Config trees and dotted ``override_mmdet_config`` keys, for both MMDetection generations (no mmcv/mmengine).

A config is dicts, lists and tuples. Paths are tuples of strings: dict keys, and list/tuple indices as numeric
strings (``("train_dataloader", "dataset", "pipeline", "2")``), the form override keys are written in.

:class:`DottedOverrides` applies ``override_mmdet_config`` with these rules (the generation's adapter gives it the
dict class its config uses, mmcv's or mmengine's ``ConfigDict``, and the top-level keys its ``Config`` reserves):

* ``a.b.c: v`` sets ``c`` inside ``a.b``. Keys the config lacks are created as the generation's own
  ``Config.merge_from_dict`` creates them (``train_dataloader.dataset.metainfo.classes`` on a config without
  ``metainfo``), with one INFO line naming the first new key. A missing parent is refused only when a key beside
  it is a close spelling (a likely typo: :data:`TYPO_CUTOFF`); the error names the key and the closest keys.
* Numeric segments index lists (``train_dataloader.dataset.pipeline.2.scale``); an out-of-range index names the
  length.
* ``X._delete_: true`` empties ``X`` first (applied before the other keys), so keys below ``X`` start afresh.
* A dict value is merged into an existing dict with the config system's rules (``{_delete_: true, ...}``
  replaces it, at any depth); a dict of numeric keys merged into a list changes those elements. Anything else
  replaces. One exception: storage arguments (``file_client_args``/``backend_args``) naming another ``backend``
  replace the old ones whole.
* YAML has no tuples: a list replacing a tuple becomes a tuple (at any depth, also inside a replaced pipeline
  step of the same ``type``), one scale replacing a list of scales becomes a tuple and several scales replacing
  one become a list of tuples; a value replacing a float/int takes that type when the conversion is exact.
* The caller's ``overrides`` are never modified.
"""

from __future__ import annotations

import copy
import difflib
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import PurePath
from typing import Any

from model_hub_mmdet.errors import ConfigError

logger = logging.getLogger("model_hub_mmdet")

Path = tuple[str, ...]
DELETE = "_delete_"
# How alike (difflib's ratio) a missing parent and a key beside it must be for the override to be refused as a
# typo: `optimiser`/`optimizer` 0.89 and `bbox_haed`/`bbox_head` 0.89 are refused, `init_cfg`/`norm_cfg` 0.63 and
# `metainfo` beside a dataset's keys (< 0.4) are created.
TYPO_CUTOFF = 0.7
STORAGE_ARGS = ("file_client_args", "backend_args")
MISSING: Any = object()


# ------------------------------------------------------------------------------------------------ tree walking
def children(node: Any) -> Iterable[tuple[str, Any]]:
    """The (segment, value) pairs directly below ``node``: a dict's items, a list's or tuple's elements."""
    if isinstance(node, Mapping):
        return ((str(k), v) for k, v in node.items())
    if isinstance(node, (list, tuple)):
        return ((str(i), v) for i, v in enumerate(node))
    return ()


def dicts(tree: Any, path: Path = ()) -> Iterator[tuple[Path, Mapping]]:
    """Every dict in ``tree`` (``tree`` itself first) with its path, parents before children."""
    if isinstance(tree, Mapping):
        yield path, tree
    for seg, value in children(tree):
        yield from dicts(value, path + (seg,))


def key_paths(tree: Any, max_depth: int = 10, path: Path = ()) -> Iterator[Path]:
    """The path of every dict key in ``tree``, depth first; paths longer than ``max_depth`` are not visited."""
    if len(path) >= max_depth:
        return
    for seg, value in children(tree):
        if isinstance(tree, Mapping):
            yield path + (seg,)
        yield from key_paths(value, max_depth, path + (seg,))


def dataset_configs(ds: Any) -> Iterator[Mapping]:
    """``ds`` (a dataset config, or a list of them) and every dataset config wrapped inside it, outermost first:
    ``RepeatDataset``, ``ClassBalancedDataset`` and ``MultiImageMixDataset`` hold one ``dataset``, ``ConcatDataset``
    a list of ``datasets`` (in both generations)."""
    if isinstance(ds, (list, tuple)):
        for item in ds:
            yield from dataset_configs(item)
    elif isinstance(ds, Mapping):
        yield ds
        for key in ("dataset", "datasets"):
            if key in ds:
                yield from dataset_configs(ds[key])


def annotated_dataset(ds: Any) -> Mapping:
    """The dataset config inside ``ds`` that reads the annotations (the first with an ``ann_file``, which is where
    the class names go), or else the innermost one ({} when there is none)."""
    last: Mapping = ds if isinstance(ds, Mapping) else {}
    for last in dataset_configs(ds):
        if "ann_file" in last:
            break
    return last


def mark_test_mode(datasets: Any) -> None:
    """``test_mode=True`` on every dataset config in ``datasets`` that reads annotations, as mmdet's test tools set
    it (wrappers such as ``RepeatDataset`` take no such argument)."""
    for ds in dataset_configs(datasets):
        if "ann_file" in ds:
            ds["test_mode"] = True  # type: ignore[index]


def lookup(node: Any, segs: Iterable[str]) -> Any:
    """The value at ``segs`` below ``node``, or :data:`MISSING`."""
    for seg in segs:
        if isinstance(node, Mapping) and seg in node:
            node = node[seg]
        elif isinstance(node, (list, tuple)) and seg.lstrip("-").isdigit() and -len(node) <= int(seg) < len(node):
            node = node[int(seg)]
        else:
            return MISSING
    return node


# --------------------------------------------------------------------------------------------- type coercion
def _is_seq(x: Any) -> bool:
    return isinstance(x, (list, tuple))


def _same_kind(value: Mapping, existing: Any) -> bool:
    """A dict value may borrow types from ``existing`` if it is a dict of the same ``type`` (or untyped)."""
    return isinstance(existing, Mapping) and value.get("type", existing.get("type")) == existing.get("type")


def _template(existing: list | tuple, i: int, value: Any) -> Any:
    """The element of ``existing`` that ``value`` (element ``i`` of the new list) replaces, if any."""
    if isinstance(value, Mapping) and "type" in value:
        # Pipelines: match steps by type, so a whole replaced pipeline keeps Resize.scale a tuple.
        if i < len(existing) and _same_kind(value, existing[i]):
            return existing[i]
        return next((e for e in existing if _same_kind(value, e)), MISSING)
    if i < len(existing):
        return existing[i]
    return existing[0] if existing else MISSING  # extra elements of a homogeneous list (more scales)


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
    if existing is MISSING or existing is None or value is None:
        return value
    if _is_seq(existing) and _is_seq(value):
        return _coerce_sequence(value, existing)
    if isinstance(value, Mapping):
        if not _same_kind(value, existing):
            return value
        return {k: coerce_like(v, existing.get(k, MISSING)) for k, v in value.items()}
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


def strip_delete(value: Any) -> Any:
    """``value`` without ``_delete_`` keys, at any depth (one left with nothing below it to replace would reach
    the registry's build as an unknown argument)."""
    if isinstance(value, Mapping):
        return {k: strip_delete(v) for k, v in value.items() if k != DELETE}
    if _is_seq(value):
        return type(value)(strip_delete(v) for v in value)
    return value


def written_paths(value: Any, prefix: Path) -> Iterator[Path]:
    """``prefix`` and every path inside ``value``: what an override wrote."""
    yield prefix
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k != DELETE:
                yield from written_paths(v, prefix + (str(k),))
    elif _is_seq(value):
        for i, v in enumerate(value):
            yield from written_paths(v, prefix + (str(i),))


# ------------------------------------------------------------------------------------------------ the overrides
class DottedOverrides:
    """Applies ``override_mmdet_config`` to a config's root dict (see the module docstring for the rules).

    Args:
        make_dict: the config system's dict class (``ConfigDict``), so overridden parts keep attribute access.
        reserved: top-level keys the generation's ``Config`` refuses.
        system: the config system's name, for the message about a reserved key.
        example: a dotted key of the generation's configs, for messages.
        setting: how messages name the setting.
    """

    def __init__(
        self,
        make_dict: Callable[..., Mapping] = dict,
        reserved: Iterable[str] = (),
        system: str = "the config system",
        example: str = "optim_wrapper.optimizer.lr",
        setting: str = "override_mmdet_config",
    ) -> None:
        self.make_dict = make_dict
        self.reserved = tuple(reserved)
        self.system = system
        self.example = example
        self.setting = setting

    # -- public
    def apply(self, root: Any, overrides: Mapping[str, Any] | None, announce: bool = True) -> set[Path]:
        """Apply ``overrides`` to ``root`` (a config's dict) in place. Returns every path written. ``announce``:
        log the INFO line of each key the config lacked (a caller that tries keys on a scratch copy says False)."""
        if not overrides:
            return set()
        if not isinstance(overrides, Mapping):
            raise ConfigError(
                f"hyperparameters.{self.setting} must be a mapping of dotted keys to values,"
                f" got {type(overrides).__name__}"
            )
        overrides = copy.deepcopy(dict(overrides))  # merging pops _delete_: never touch the caller's
        for key in overrides:
            first = self.segments(key)[0]
            if first in self.reserved:
                raise ConfigError(f"{self.setting}.{key}: {self.system} reserves the top-level key {first!r}")
        written: set[Path] = set()
        deleted = self._apply_deletes(root, overrides, written)
        for key, value in overrides.items():
            if self.segments(key)[-1] != DELETE:
                self._apply_one(root, key, value, deleted, announce)
                written.update(written_paths(value, tuple(self.segments(key))))
        return written

    def to_config(self, value: Any) -> Any:
        """Dicts (also inside lists/tuples) become the config's dict class."""
        if isinstance(value, Mapping):
            return self.make_dict({k: self.to_config(v) for k, v in value.items()})
        if _is_seq(value):
            return type(value)(self.to_config(v) for v in value)
        return value

    def segments(self, key: Any) -> list[str]:
        """``a.b.0`` -> ``['a', 'b', '0']``; a malformed key is a ConfigError."""
        if not isinstance(key, str) or not key or any(s == "" for s in key.split(".")):
            raise ConfigError(f"{self.setting} key {key!r} is not a dotted path like {self.example!r}")
        return key.split(".")

    # -- walking
    def _suggest(self, root: Mapping, node: Mapping, path: list[str], seg: str) -> str:
        """Closest keys next to ``seg`` plus same-named keys elsewhere in the config (a key at the wrong level)."""
        keys = [str(k) for k in node.keys()]
        close = [".".join(path + [c]) for c in difflib.get_close_matches(seg, keys, n=3, cutoff=0.5)]
        elsewhere = [".".join(p) for p in key_paths(root) if p[-1] == seg and list(p) != path + [seg]]
        found = list(dict.fromkeys(close + elsewhere[:3]))
        if found:
            return f"; closest: {', '.join(found)}"
        where = ".".join(path) or "the top level"
        return f"; keys at {where}: {', '.join(keys[:12])}{', ...' if len(keys) > 12 else ''}"

    def _index(self, node: list | tuple, seg: str, key: str, path: list[str]) -> int:
        where = ".".join(path) or "<config>"
        if not seg.lstrip("-").isdigit():
            raise ConfigError(f"{self.setting}.{key}: {where} is a list; use a numeric index, not {seg!r}")
        idx = int(seg)
        if not -len(node) <= idx < len(node):
            raise ConfigError(
                f"{self.setting}.{key}: index {idx} out of range for {where} (a list of length {len(node)})"
            )
        return idx

    def _child(self, root: Mapping, node: Any, seg: str, key: str, path: list[str]) -> Any:
        """Step from ``node`` into ``seg`` or raise a ConfigError that explains why it cannot."""
        if isinstance(node, (list, tuple)):
            return node[self._index(node, seg, key, path)]
        if isinstance(node, Mapping):
            if seg in node:
                return node[seg]
            missing = ".".join(path + [seg])
            raise ConfigError(
                f"{self.setting}.{key}: {missing} does not exist in the config{self._suggest(root, node, path, seg)}"
            )
        where = ".".join(path) or "<config>"
        raise ConfigError(
            f"{self.setting}.{key}: {where} is {type(node).__name__} ({node!r}), not a dict or list;"
            f" set {where} itself or delete it first with {where}._delete_: true"
        )

    def _set(self, parent: Any, seg: str, value: Any, key: str, path: list[str]) -> None:
        if isinstance(parent, list):
            parent[self._index(parent, seg, key, path)] = value
        elif isinstance(parent, Mapping):
            parent[seg] = value
        elif isinstance(parent, tuple):
            raise ConfigError(
                f"{self.setting}.{key}: {'.'.join(path)} is a tuple; replace it whole"
                f" ({'.'.join(path)}: [...])"
            )
        else:
            self._child({}, parent, seg, key, path)  # raises the "not a dict or list" error

    # -- merging values
    def _merged(self, value: Any, existing: Any, key: str, path: list[str]) -> Any:
        """What to store at ``path``: dicts merge into dicts (``_delete_`` replaces), a dict of numeric keys merges
        into a list, anything else replaces ``existing`` with types borrowed from it."""
        if isinstance(value, Mapping):
            value = dict(value)
            replace = bool(value.pop(DELETE, False)) or _other_backend(value, existing, path)
            if isinstance(existing, Mapping) and not replace:
                out = self.make_dict(existing)
                for k, v in value.items():
                    out[k] = self._merged(v, existing.get(k, MISSING), key, path + [str(k)])
                return out
            numeric = value and all(str(k).lstrip("-").isdigit() for k in value)
            if isinstance(existing, list) and not replace and numeric:
                out_list = list(existing)
                for k, v in value.items():
                    idx = self._index(existing, str(k), key, path)
                    out_list[idx] = self._merged(v, existing[idx], key, path + [str(k)])
                return out_list
        return self.to_config(coerce_like(strip_delete(value), existing))

    def _apply_one(self, root: Mapping, key: str, value: Any, deleted: Mapping[Path, Any], announce: bool) -> None:
        """Set one dotted ``key`` to ``value`` (merged/coerced against what is there), creating missing dicts on
        the way as ``merge_from_dict`` does unless the missing key looks like a typo of the key beside it."""
        segs = self.segments(key)
        node: Any = root
        created: list[str] | None = None  # the first key this override adds to the config
        for i, seg in enumerate(segs[:-1]):
            below_deleted = any(i >= len(f) and tuple(segs[: len(f)]) == f for f in deleted)
            if isinstance(node, Mapping) and not isinstance(node.get(seg), (Mapping, list)) and (
                below_deleted or (seg not in node and not self._likely_typo(node, seg))
            ):
                if not below_deleted:
                    created = created or segs[: i + 1]
                node[seg] = self.make_dict()  # a _delete_d subtree is rebuilt from its keys; a new one is made
            node = self._child(root, node, seg, key, segs[:i])
        leaf = segs[-1]
        if isinstance(node, (list, tuple)):
            existing = node[self._index(node, leaf, key, segs[:-1])]
        elif isinstance(node, Mapping):
            existing = node.get(leaf, MISSING)
        else:
            existing = self._child(root, node, leaf, key, segs[:-1])  # raises the "not a dict or list" error
        if existing is MISSING:  # below a _delete_d subtree the old value still tells the expected types
            template = _deleted_template(deleted, segs)
            if template is MISSING and not any(tuple(segs[: len(f)]) == f for f in deleted):
                created = created or segs
            new = self.to_config(coerce_like(strip_delete(value), template))
        else:
            new = self._merged(value, existing, key, segs)
        self._set(node, leaf, new, key, segs[:-1])
        if created is not None and announce:
            self._log_new(root, key, created)

    def _likely_typo(self, node: Mapping, seg: str) -> bool:
        """Whether a key beside the missing ``seg`` is a close spelling of it."""
        return bool(difflib.get_close_matches(seg, [str(k) for k in node], n=1, cutoff=TYPO_CUTOFF))

    def _log_new(self, root: Mapping, key: str, created: list[str]) -> None:
        """The one INFO line for an override that adds ``created`` (and what is below it) to the config."""
        new = ".".join(created)
        elsewhere = [".".join(p) for p in key_paths(root) if p[-1] == created[-1] and list(p) != created][:3]
        also = f"; the config has {created[-1]} at {', '.join(elsewhere)}" if elsewhere else ""
        logger.info("%s.%s: %s is new (the config has no such key); created as %s's merge_from_dict creates it%s",
                    self.setting, key, new, self.system, also)

    def _apply_deletes(self, root: Mapping, overrides: Mapping[str, Any], written: set) -> dict[Path, Any]:
        """Empty every ``X`` of an ``X._delete_: true`` key (shallowest first). Returns {path: old value}."""
        deletes = sorted((k for k, v in overrides.items() if self.segments(k)[-1] == DELETE and v),
                         key=lambda k: k.count("."))
        deleted: dict[Path, Any] = {}
        for key in deletes:
            segs = self.segments(key)[:-1]
            if not segs:
                raise ConfigError(f"{self.setting}.{key}: _delete_ needs a key to delete, e.g."
                                  f" {self.example.split('.')[0]}._delete_")
            node: Any = root
            for i, seg in enumerate(segs[:-1]):
                node = self._child(root, node, seg, key, segs[:i])
            old = lookup(node, segs[-1:])
            self._set(node, segs[-1], self.make_dict(), key, segs[:-1])
            deleted[tuple(segs)] = old
            written.add(tuple(segs))
        return deleted


def _other_backend(value: Mapping, existing: Any, path: list[str]) -> bool:
    """Storage arguments of another backend replace the old ones: one backend's options mean nothing to another
    (``{backend: disk}`` over ``{backend: s3, bucket_name: b}`` must not keep ``bucket_name``)."""
    return (
        bool(path)
        and path[-1] in STORAGE_ARGS
        and isinstance(existing, Mapping)
        and "backend" in value
        and value["backend"] != existing.get("backend")
    )


def _deleted_template(deleted: Mapping[Path, Any], segs: list[str]) -> Any:
    """The value ``segs`` had before a ``_delete_`` of one of its ancestors, or :data:`MISSING`."""
    for path, old in sorted(deleted.items(), key=lambda item: -len(item[0])):
        if tuple(segs[: len(path)]) == path:
            found = lookup(old, segs[len(path) :])
            if found is not MISSING:
                return found
    return MISSING


# --------------------------------------------------------------------- config names across the generations
def normalized_config_name(name: str) -> str:
    """A config file name without the spelling MMDetection 3.x changed from 2.x: separators (``faster_rcnn_`` vs
    ``faster-rcnn_``), ``8x8`` vs ``8xb8``, ``mstrain`` vs ``ms``."""
    base = PurePath(name).name.lower()
    base = re.sub(r"(\d+)xb(\d+)", r"\1x\2", base).replace("mstrain", "ms")
    return re.sub(r"[-_]", "", base)


def counterpart_name(name: str, candidates: Sequence[str], fuzzy: bool = True) -> str | None:
    """The config among ``candidates`` (paths relative to a ``configs/`` dir) of the model the other generation's
    config ``name`` describes: the same name but for the spelling that changed (same folder first), else
    (``fuzzy``) the closest name in the same folder; None when there is none."""
    target = normalized_config_name(name)
    folder = PurePath(name).parent.name
    exact = [c for c in candidates if normalized_config_name(c) == target]
    if exact:
        return next((c for c in exact if PurePath(c).parent.name == folder), exact[0])
    if not fuzzy:
        return None
    same_folder = [c for c in candidates if PurePath(c).parent.name == folder]
    close = difflib.get_close_matches(target, [normalized_config_name(c) for c in same_folder], n=1, cutoff=0.85)
    return next((c for c in same_folder if normalized_config_name(c) == close[0]), None) if close else None
