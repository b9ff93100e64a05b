"""Wrap a method of an mmdet class once, keeping the original reachable (the checks of this package)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MARK = "model_hub_mmdet_original"  # set on each wrapper: the method it wraps


def wrap_method(cls: type, name: str, make_wrapper: Callable[[Any], Any]) -> None:
    """Replace ``cls.name`` by ``make_wrapper(original)``; a second call does nothing (idempotent)."""
    original = getattr(cls, name)
    if hasattr(original, MARK):
        return
    wrapper = make_wrapper(original)
    wrapper.__doc__ = original.__doc__
    setattr(wrapper, MARK, original)
    setattr(cls, name, wrapper)
