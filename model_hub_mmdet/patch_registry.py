"""The parts of a generation's patch registry that need neither mmcv nor mmengine: the :class:`Patch` record, its
source fingerprints and start-up check, and the fixes that touch only torch and numpy.

Each adapter keeps its own ``patches.py`` with its ``REGISTRY`` of :class:`Patch` entries (why, against which
versions, what it touches, how it is applied); :func:`check` runs every entry's check and stops the run in one line
naming the package and version when a patched function changed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from model_hub_mmdet.errors import SetupError

MARK = "model_hub_mmdet_original"  # set on each wrapper this package installs: the function it wraps


def wrap_method(cls: type, name: str, make_wrapper: Callable[[Any], Any]) -> None:
    """Replace ``cls.name`` by ``make_wrapper(original)``; a second call does nothing (idempotent)."""
    original = getattr(cls, name)
    if hasattr(original, MARK):
        return
    wrapper = make_wrapper(original)
    wrapper.__doc__ = original.__doc__
    setattr(wrapper, MARK, original)
    setattr(cls, name, wrapper)


def _source_of(dotted: str) -> str:
    module, _, attr = dotted.rpartition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    obj = inspect.unwrap(getattr(obj, MARK, obj), stop=lambda f: False)
    return inspect.getsource(obj)


def fingerprint(dotted: str) -> str:
    """A short hash of the source of ``module:qualname`` (the original when this package wrapped it)."""
    return hashlib.sha256(_source_of(dotted).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Patch:
    """One change to third-party code: why, against which versions, what it touches, and how it is applied.

    ``targets`` maps ``module:qualname`` of each patched function to the fingerprint of its source in the
    checked versions; ``requires`` is a check of its own (None when it still applies, else what changed)."""

    name: str
    reason: str
    checked: str
    package: str
    apply: Callable[[], Any]
    targets: Mapping[str, str] = field(default_factory=dict)
    requires: Callable[[], str | None] | None = None

    def problem(self) -> str | None:
        """None when the patch still fits the installed code, else one line saying what changed."""
        for target, expected in self.targets.items():
            try:
                found = fingerprint(target)
            except (ImportError, AttributeError, OSError, TypeError) as err:
                return f"{target} is gone ({type(err).__name__}: {err})"
            if found != expected:
                return f"{target} changed (source fingerprint {found}, patch written for {expected})"
        return self.requires() if self.requires is not None else None


def version(package: str) -> str:
    """The installed version of a distribution, or ``(not installed)``."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def check(registry: Iterable[Patch]) -> None:
    """Raise one :class:`~model_hub_mmdet.errors.SetupError` line for the first patch that no longer fits."""
    for patch in registry:
        problem = patch.problem()
        if problem:
            raise SetupError(
                f"{patch.package} {version(patch.package)}: {problem}; model_hub_mmdet's patch {patch.name!r} was"
                f" checked against {patch.checked} (install those versions, or a model_hub_mmdet release for yours)"
            )


_applied: set[int] = set()  # id() of each registry applied in this process


def apply(registry: tuple[Patch, ...], first: Iterable[Callable[[], Any]] = ()) -> None:
    """Run ``first`` (fixes for what the checks' own imports trigger), check every patch of ``registry``, then
    apply each; once per registry and process (idempotent)."""
    if id(registry) in _applied:
        return
    for fix in first:
        fix()
    check(registry)
    for patch in registry:
        patch.apply()
    _applied.add(id(registry))


# ------------------------------------------------------------------------------------ torch and numpy fixes
_NUMPY_ALIASES = {"int": int, "float": float, "bool": bool, "object": object, "str": str, "long": int}


def restore_numpy_aliases() -> list[str]:
    """Re-create numpy's removed builtin aliases (``np.int`` ...) that older OpenMMLab code still uses, only where
    missing. Returns what was added."""
    import numpy as np

    added = []
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)
            added.append(name)
    return added


def numpy_safe_globals() -> list:
    """The numpy reconstructors a plain-data pickle of arrays, dtypes and scalars needs."""
    import numpy as np

    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    found = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        found += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType") and n != "StringDType"]
    return found


def allow_numpy_in_weights_only_load() -> None:
    """Allow-list numpy plain data for ``torch.load(weights_only=True)`` (torch >= 2.4): Determined's checkpoints
    hold numpy RNG state, and mmdet checkpoints numpy scalars/arrays in ``meta``. Nothing executable is allowed."""
    import torch.serialization

    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:
        add(numpy_safe_globals())


def torch_has_safe_globals() -> str | None:
    """A :attr:`Patch.requires` check: None when torch can allow-list globals for ``weights_only`` loads."""
    import torch.serialization

    return None if hasattr(torch.serialization, "add_safe_globals") else "torch has no add_safe_globals"


def silence_cpp_extension_cuda_notice() -> None:
    """Keep ``torch.utils.cpp_extension``'s import-time CUDA_HOME notice (every CPU run of the CUDA torch build
    that imports mmcv's ops) out of the log."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


class RaggedArrayNumpy:
    """numpy, except that ``array`` of a ragged list of arrays gives a 1-D object array (numpy 1.x's result)."""

    def __getattr__(self, name: str) -> Any:
        import numpy as np

        return getattr(np, name)

    @staticmethod
    def array(obj: Any, *args: Any, **kwargs: Any) -> Any:
        import numpy as np

        try:
            return np.array(obj, *args, **kwargs)
        except ValueError:
            if args or kwargs or not isinstance(obj, list):
                raise
            out = np.empty(len(obj), dtype=object)
            for i, item in enumerate(obj):
                out[i] = item
            return out
