"""Errors that say more than the library's, and are still the library's type.

A wrapper that turns a library's error into one of ours (one line naming the file and what to do) must not change
what code around it catches: mmdet's own tests expect ``AssertionError`` for duplicate annotation ids, mmcv's
loaders ``FileNotFoundError`` for a missing image. :func:`keeping_type` gives a class that is both ours and the
library's; its instances pickle (data-loader workers send them to the main process) although the class is made at
run time.
"""

from __future__ import annotations

import functools
import types
from typing import Any, TypeVar

E = TypeVar("E", bound=BaseException)


def _rebuild(base: type, originals: tuple[type[BaseException], ...], args: tuple, state: dict) -> BaseException:
    err = keeping_type(base, *originals)(*args)  # ours take their args back (cls.__new__ would pick ValueError's)
    err.args = args
    err.__dict__.update(state)
    return err


def _reduce(self: BaseException) -> tuple:
    cls = type(self)
    return _rebuild, (cls.__model_hub_mmdet_base__, cls.__model_hub_mmdet_originals__, self.args, dict(self.__dict__))


def _plain_init(cls: type) -> bool:
    """Whether ``cls`` and its bases construct from any arguments (no ``__init__`` written in Python, which would
    demand its own, as ``json.JSONDecodeError(msg, doc, pos)`` does)."""
    return all(not isinstance(vars(k).get("__init__"), types.FunctionType) for k in cls.__mro__)


def _mixable(original: type) -> type:
    """``original``, or its nearest base that can share an instance with ours (see :func:`_plain_init`)."""
    return next(k for k in original.__mro__ if _plain_init(k))


@functools.cache
def keeping_type(base: type[E], *originals: type[BaseException]) -> type[E]:
    """A subclass of ``base`` that is also each of ``originals`` (those ``base`` is not already; one whose
    ``__init__`` wants arguments of its own stands in by its nearest base that does not), cached per combination;
    ``base`` itself when there is nothing to add or Python cannot combine the types (two exception types with
    different C layouts). ``str()`` is ``base``'s, so ``KeyError`` or ``OSError`` formatting does not
    creep into the one-line message."""
    flat: list[type[BaseException]] = []
    for o in originals:  # one of ours already: its parts (a class made here does not pickle by reference)
        flat += [o.__model_hub_mmdet_base__, *o.__model_hub_mmdet_originals__] if hasattr(
            o, "__model_hub_mmdet_originals__") else [o]
    mixable = (_mixable(o) for o in flat if isinstance(o, type) and issubclass(o, Exception))
    extra = tuple(o for o in dict.fromkeys(mixable) if not issubclass(base, o))
    if not extra:
        return base
    namespace: dict[str, Any] = {
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "__str__": lambda self: base.__str__(self),
        "__reduce__": _reduce,
        "__model_hub_mmdet_base__": base,
        "__model_hub_mmdet_originals__": extra,
    }
    try:
        return type(base.__name__, (base, *extra), namespace)
    except TypeError:  # e.g. "multiple bases have instance lay-out conflict"
        return base


def keeping(base: type[E], original: BaseException, *args: Any) -> E:
    """``base(*args)``, made an instance of :func:`keeping_type` ``(base, type(original))``: what to raise (``from
    original``) in place of ``original``."""
    return keeping_type(base, type(original))(*args)
