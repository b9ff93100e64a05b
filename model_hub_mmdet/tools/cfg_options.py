"""``--cfg-options KEY=VALUE ...``: MMDetection's command-line overrides, parsed here without mmcv.

The values are read as mmcv's ``DictAction`` reads them (``tools/train.py --cfg-options`` in both MMDetection
generations):

* ``a.b=1`` -> int, ``a=0.5`` / ``a=1e-4`` -> float, ``true``/``false`` (any case) -> bool, ``None`` -> None,
  anything else -> the string itself;
* ``a=[1,2]`` -> list, ``a=(1,2)`` -> tuple, ``a=1,2`` -> list, nested at any depth (``a=[(1,2),(3,4)]``);
* quotes around a value or an element are dropped and so are all spaces (``a="(1, 2)"`` -> ``(1, 2)``);
* a key given twice keeps its last value.

Unlike mmcv, brackets must balance and a value is only split at its own outermost brackets (``a=[1],[2]`` is the
list ``[[1], [2]]``, not mmcv's garbled string); an unbalanced value is a one-line error naming the option.

The options are applied as the last keys of ``hyperparameters.override_mmdet_config``, so the same dotted-key
rules, typo suggestions and type coercion apply (:func:`with_cfg_options`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

from model_hub_mmdet.errors import ConfigError

OPTION = "--cfg-options"
_CLOSING = {"[": "]", "(": ")"}


def parse_cfg_options(items: Iterable[str] | None) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` -> ``{"a.b": 1, "c": [1, 2]}`` (insertion order; a repeated key keeps its last
    value). A malformed item is a :class:`ConfigError` naming it."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{OPTION} {item!r}: expected KEY=VALUE, e.g. optimizer.lr=0.01")
        if not re.fullmatch(r"[^.\s=]+(\.[^.\s=]+)*", key):
            raise ConfigError(f"{OPTION} {item!r}: {key!r} is not a dotted key like optimizer.lr")
        options.pop(key, None)  # the last occurrence is also the last applied
        try:
            options[key] = parse_value(text)
        except ValueError as err:
            raise ConfigError(f"{OPTION} {item!r}: {err}") from err
    return options


def parse_value(text: str) -> Any:
    """One ``--cfg-options`` value (the part after ``=``), as described in the module docstring."""
    text = text.strip("'\"").replace(" ", "")
    if text[:1] in _CLOSING and _group_end(text, 0) == len(text) - 1:
        items = [parse_value(part) for part in _split(text[1:-1])] if text[1:-1] else []
        return tuple(items) if text[0] == "(" else items
    parts = _split(text)
    if len(parts) > 1:
        return [parse_value(part) for part in parts]
    return _scalar(text)


def _scalar(text: str) -> Any:
    if any(c in text for c in "[]()"):
        raise ValueError(f"unbalanced brackets in {text!r}")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return None if text == "None" else text


def _group_end(text: str, start: int) -> int:
    """Index of the bracket closing the one at ``start``; a ValueError when brackets do not balance."""
    stack = []
    for i in range(start, len(text)):
        char = text[i]
        if char in _CLOSING:
            stack.append(_CLOSING[char])
        elif char in _CLOSING.values():
            if not stack or stack.pop() != char:
                raise ValueError(f"unbalanced brackets in {text!r}")
            if not stack:
                return i
    raise ValueError(f"unbalanced brackets in {text!r}")


def _split(text: str) -> list[str]:
    """``text`` cut at its commas outside brackets (a trailing comma ends the last element, as in Python)."""
    parts, start, i = [], 0, 0
    while i < len(text):
        if text[i] in _CLOSING:
            i = _group_end(text, i)
        elif text[i] == ",":
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if start < len(text):
        parts.append(text[start:])
    return parts


def with_cfg_options(conf: Mapping[str, Any], options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of the experiment ``conf`` whose ``hyperparameters.override_mmdet_config`` ends with ``options``
    (a key already there moves to the end with the new value, so the options are applied after it)."""
    out = copy.deepcopy(dict(conf))
    if not options:
        return out
    hparams = out.get("hyperparameters")
    if hparams is None:
        hparams = out["hyperparameters"] = {}
    if not isinstance(hparams, dict):
        raise ConfigError(f"{OPTION} needs hyperparameters to be a mapping, got {hparams!r}")
    overrides = hparams.get("override_mmdet_config")
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, Mapping) or "type" in overrides:
        # a hyperparameter spec ({type: const, val: ...}) is chosen by Determined: there is no list to append to
        raise ConfigError(
            f"{OPTION} needs hyperparameters.override_mmdet_config to be a mapping of dotted keys, got {overrides!r}"
        )
    overrides = dict(overrides)
    for key, value in options.items():
        overrides.pop(key, None)
        overrides[key] = copy.deepcopy(value)
    hparams["override_mmdet_config"] = overrides
    return out


def as_option_message(message: str, options: Mapping[str, Any] | None) -> str:
    """An override error about a key that came from ``--cfg-options`` names the option, not the experiment key."""
    for key in options or {}:
        message = message.replace(f"override_mmdet_config.{key}:", f"{OPTION} {key}:")
    return message
