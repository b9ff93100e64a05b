"""Old import paths of modules that moved when the package split into a core and one adapter per generation.

``import model_hub_mmdet.data`` (say) still works for one release: the import gives the module at its new path
(the very same module object) and a ``DeprecationWarning`` naming that path. Submodules follow their package
(``model_hub_mmdet.config.overrides`` -> ``model_hub_mmdet.mmdet2.config.overrides``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

# old prefix -> new prefix (longest match wins). The generation-specific ones point at the 2.x adapter: the only
# generation those paths ever had.
MOVED = {
    "model_hub_mmdet.backends": "model_hub_mmdet.storage",
    "model_hub_mmdet.cli": "model_hub_mmdet.tools.cli",
    "model_hub_mmdet.check": "model_hub_mmdet.tools.check",
    "model_hub_mmdet.migrate": "model_hub_mmdet.tools.migrate",
    "model_hub_mmdet.report": "model_hub_mmdet.tools.report",
    "model_hub_mmdet.datasets.shapes": "model_hub_mmdet.tools.shapes",
    "model_hub_mmdet.datasets": "model_hub_mmdet.mmdet2.datasets",
    "model_hub_mmdet.compat": "model_hub_mmdet.mmdet2.patches",
    "model_hub_mmdet.config": "model_hub_mmdet.mmdet2.config",
    "model_hub_mmdet.data": "model_hub_mmdet.mmdet2.data",
    "model_hub_mmdet.transport": "model_hub_mmdet.mmdet2.transport",
    "model_hub_mmdet.schedules": "model_hub_mmdet.mmdet2.schedules",
    "model_hub_mmdet.evaluation": "model_hub_mmdet.mmdet2.evaluation",
    "model_hub_mmdet.weights.export": "model_hub_mmdet.mmdet2.export",
    "model_hub_mmdet.weights.schemes": "model_hub_mmdet.mmdet2.checkpoint_schemes",
}


def new_name(old: str) -> str | None:
    """The current path of a module that was importable as ``old``, or None when ``old`` did not move."""
    for prefix in sorted(MOVED, key=len, reverse=True):
        if old == prefix or old.startswith(prefix + "."):
            return MOVED[prefix] + old[len(prefix) :]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.new}; the old path will be removed in the next release",
            DeprecationWarning,
            stacklevel=4,
        )
        module = importlib.import_module(self.new)
        sys.modules[spec.name] = module
        return module

    def exec_module(self, module: ModuleType) -> None:
        return None  # already executed under its new name


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED` modules (installed by ``import model_hub_mmdet``)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = new_name(fullname)
        if new is None:
            return None
        if path is not None and importlib.machinery.PathFinder.find_spec(fullname, path) is not None:
            return None  # a module of the core lives at this path again (model_hub_mmdet.transport, say): it wins
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
