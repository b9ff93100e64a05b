"""Which MMDetection generation is installed, found without importing it, and its adapter.

MMDetection 2.x (mmcv-full 1.x) and 3.x (mmengine + mmcv 2.x) cannot share an environment: both install the
``mmcv`` package. So each environment has one generation, and everything generation-specific is looked up here,
from the installed ``mmdet`` distribution's version (package metadata; importing mmdet would import mmcv):

* ``model_hub_mmdet.mmdet2`` for mmdet 2.x,
* ``model_hub_mmdet.mmdet3`` for mmdet 3.x.

The core (this package outside those two folders) never imports mmcv, mmengine or mmdet.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from model_hub_mmdet.errors import SetupError

GENERATIONS = {"2": "mmdet2", "3": "mmdet3"}
SUPPORTED = {"mmdet2": "mmdet==2.28.2 (mmcv-full 1.7)", "mmdet3": "mmdet==3.3.0 (mmengine 0.10.7, mmcv 2.1)"}


def mmdet_version() -> str | None:
    """The installed mmdet's version, or None when mmdet is not installed."""
    try:
        return importlib.metadata.version("mmdet")
    except importlib.metadata.PackageNotFoundError:
        return None


def installed() -> str | None:
    """``"mmdet2"`` or ``"mmdet3"``: the adapter of the installed mmdet; None when none (or another) is."""
    version = mmdet_version()
    return GENERATIONS.get(version.split(".")[0]) if version else None


def require() -> str:
    """The installed generation's adapter name, or a one-line :class:`SetupError` saying how to install one."""
    name = installed()
    if name is None:
        version = mmdet_version()
        found = f"mmdet {version} is installed, which" if version else "MMDetection is not installed; it"
        raise SetupError(
            f"{found} is not a supported generation: install MMDetection 2.28 (make install) or 3.3"
            " (make install MMDET=3)"
        )
    return name


def adapter(module: str = "") -> ModuleType:
    """The installed generation's adapter package, or one of its modules (``adapter("trial")``). A generation
    whose packages are installed but do not import (a broken mmcv build, say) is a one-line SetupError."""
    package = f"model_hub_mmdet.{require()}"
    name = package + (f".{module}" if module else "")
    try:
        for dependency in getattr(importlib.import_module(package), "REQUIRES", ()):
            importlib.import_module(dependency)  # the stack itself, before any adapter module relies on it
        return importlib.import_module(name)
    except ImportError as err:
        if err.name and err.name.startswith("model_hub_mmdet"):
            raise
        command = "make install MMDET=3" if name.startswith("model_hub_mmdet.mmdet3") else "make install"
        raise SetupError(
            f"mmdet {mmdet_version()} is installed but {name} does not import ({type(err).__name__}: {err});"
            f" reinstall the stack ({command})"
        ) from err


def bundled_config_dir() -> Path | None:
    """The configs shipped in the installed mmdet wheel (``mmdet/.mim/configs``), found without importing mmdet."""
    try:
        spec = importlib.util.find_spec("mmdet")
    except ImportError:  # an import hook (or a broken install) that refuses mmdet
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve() / ".mim" / "configs"


def relative_after_configs(path: str | os.PathLike) -> str | None:
    """``/mmdetection/configs/mask_rcnn/x.py`` -> ``mask_rcnn/x.py``: the part after the last ``configs/``
    directory (how MMDetection checkouts and model zoo metafiles name configs), or None."""
    parts = Path(path).parts
    if "configs" not in parts:
        return None
    idx = len(parts) - 1 - parts[::-1].index("configs")
    rest = parts[idx + 1 :]
    return str(Path(*rest)) if rest else None


def config_search_dirs(context_dir: str | os.PathLike = ".") -> list[Path]:
    """Directories a relative ``config_file`` is looked up in, in order: the context, ``$MMDETECTION_CONFIG_DIR``,
    the installed mmdet's bundled configs (both generations look in the same places)."""
    dirs = [Path(context_dir)]
    env_dir = os.environ.get("MMDETECTION_CONFIG_DIR")
    if env_dir:
        dirs.append(Path(env_dir))
    bundled = bundled_config_dir()
    if bundled is not None:
        dirs.append(bundled)
    return dirs


def context_on_sys_path(context_dir: str | os.PathLike = ".") -> None:
    """Make modules in the context directory importable (``custom_imports``, custom datasets, trial classes),
    as Determined does on a cluster by starting the entrypoint there."""
    path = str(Path(context_dir).resolve())
    if path not in sys.path:
        sys.path.insert(0, path)


def setup() -> ModuleType:
    """Check and apply the Determined patches and the installed generation's patches, and register the storage
    backends with its file I/O (idempotent). The trial, the CLI and the runners call this before they train."""
    from model_hub_mmdet import determined_patches

    determined_patches.apply()
    module = adapter()
    module.setup()
    return module


def adapter_getattr(package: str) -> Callable[[str], Any]:
    """The module ``__getattr__`` of an adapter package (``model_hub_mmdet.mmdet2``, ``.mmdet3``): ``MMDetTrial`` is
    the core trial (the same class in both generations), ``build_mmdet_config`` the adapter's own; both are
    imported when first asked for."""

    def __getattr__(name: str) -> Any:
        if name == "MMDetTrial":
            from model_hub_mmdet.trial import MMDetTrial

            return MMDetTrial
        if name == "build_mmdet_config":
            return importlib.import_module(f"{package}.config").build_mmdet_config
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
