"""Locate and load MMDetection 3.x config files (``config_file``, ``merge_config``) with mmengine's ``Config``.

A relative ``config_file`` is looked up in the context directory, in ``$MMDETECTION_CONFIG_DIR`` and in the
configs bundled in the mmdet wheel (``mmdet/.mim/configs``); ``_base_ = 'mmdet::faster_rcnn/...'`` bases are
mmengine's own and work as in MMDetection. A name or file of the other generation (MMDetection 2.x) is refused
in one line that names the generation and, where the same model exists in 3.x, its 3.x config.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from mmengine.config import Config

from model_hub_mmdet.config_tree import counterpart_name
from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.generation import (  # noqa: F401  (context_on_sys_path: part of this module's API)
    config_search_dirs,
    context_on_sys_path,
    relative_after_configs,
)

logger = logging.getLogger("model_hub_mmdet")

# Top-level keys only a 2.x config has (3.x renamed them: train_dataloader, optim_wrapper, param_scheduler, ...).
GEN2_KEYS = ("data", "optimizer", "optimizer_config", "lr_config", "runner", "evaluation")
GEN3_KEYS = ("train_dataloader", "val_dataloader", "optim_wrapper", "param_scheduler", "train_cfg", "val_evaluator")


def bundled_config_dir() -> Path:
    """The configs shipped inside the installed mmdet package (``mmdet/.mim/configs``)."""
    import mmdet

    return Path(mmdet.__file__).resolve().parent / ".mim" / "configs"


# ------------------------------------------------------------------------------- the other generation's names
@functools.lru_cache(maxsize=1)
def _bundled_names() -> tuple[str, ...]:
    root = bundled_config_dir()
    return tuple(sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if "_base_" not in p.parts))


def counterpart(name: str, fuzzy: bool = True) -> str | None:
    """The bundled 3.x config of the model a 2.x config name (``faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py``)
    names (``faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py``), or None (:func:`~model_hub_mmdet.config_tree.
    counterpart_name`)."""
    return counterpart_name(relative_after_configs(name) or name, _bundled_names(), fuzzy=fuzzy)


def generation_line(what: str, counterpart_name: str | None) -> str:
    """The one line for a config of MMDetection 2.x met in this 3.x environment."""
    import mmdet

    hint = f": its 3.x config is {counterpart_name}" if counterpart_name else ""
    return (
        f"{what} is an MMDetection 2.x config and this environment has MMDetection {mmdet.__version__}{hint}"
        " (or train it with MMDetection 2.28: make install, .venv)"
    )


def is_gen2_config(cfg: Mapping) -> bool:
    """Whether a loaded config is written for MMDetection 2.x (its keys, and none of 3.x's)."""
    return any(k in cfg for k in GEN2_KEYS) and not any(k in cfg for k in GEN3_KEYS)


# ------------------------------------------------------------------------------------------------- resolving
def resolve_config_path(name: str, context_dir: str | os.PathLike = ".", key: str = "config_file") -> Path:
    """Find ``name``: absolute path; relative to ``context_dir``; to ``$MMDETECTION_CONFIG_DIR``; to mmdet's
    bundled configs. A missing path with a ``configs/`` segment falls back to the bundled copy of what follows
    ``configs/``; a 2.x config name is refused in one line naming its 3.x config."""
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        raise ConfigError(f"hyperparameters.{key} must be a path to an MMDetection config .py file, got {name!r}")
    text = str(name)
    if text.startswith("mmdet::"):  # mmengine's package-scoped name
        text = text[len("mmdet::") :]
        path = Path(text)
    else:
        path = Path(os.path.expanduser(text))
    if path.is_absolute():
        if path.is_file():
            return path
    else:
        for base in config_search_dirs(context_dir):
            if (base / path).is_file():
                return (base / path).resolve()
    rel = relative_after_configs(path)
    if rel is not None and (bundled_config_dir() / rel).is_file():
        found = bundled_config_dir() / rel
        logger.info("%s %s does not exist; using mmdet's bundled copy %s", key, name, found)
        return found
    other = counterpart(text, fuzzy=False)
    if other is not None and Path(other).name != path.name:
        raise ConfigError(f"hyperparameters.{key}: {generation_line(str(name), other)}")
    raise ConfigError(_not_found_message(str(name), key, context_dir))


def _not_found_message(name: str, key: str, context_dir: str | os.PathLike) -> str:
    target = relative_after_configs(name) or name
    close = difflib.get_close_matches(target, list(_bundled_names()), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    where = ", ".join(str(d) for d in config_search_dirs(context_dir))
    return f"hyperparameters.{key}: {name} not found (looked in {where}){hint}"


# -------------------------------------------------------------------------------------------------- loading
def load_config(path: str | os.PathLike, key: str = "config_file") -> Config:
    """``Config.fromfile`` with one-line errors naming the file (and the line or module at fault); a 2.x config
    is refused in one line naming the generation."""
    path = str(path)
    _check_syntax(path, key, path)  # report a syntax error's line in the file the user wrote
    source = Path(path).read_text(encoding="utf-8", errors="replace") if path.endswith(".py") else ""
    # A new-style (pure Python) config imports its bases inside `with read_base():`; mmengine's own detection can
    # take a classic config that imports `os` for one under Python 3.11.
    lazy = "read_base" in source
    sys_path = list(sys.path)
    try:
        cfg = Config.fromfile(path, import_custom_modules=False, lazy_import=lazy)
    except Exception as err:
        sys.path[:] = sys_path  # mmengine leaves its temporary directory on sys.path when a config fails
        raise _load_error(err, path, key) from err
    if not lazy and is_gen2_config(cfg):
        sibling = Path(path).with_name(f"{Path(path).stem}_mmdet3.py")  # this repository's naming of 3.x twins
        raise ConfigError(f"{key} {generation_line(path, str(sibling) if sibling.is_file() else counterpart(path))}")
    import_custom_modules(cfg, path, key)
    return cfg


def _load_error(err: Exception, path: str, key: str) -> ConfigError:
    if isinstance(err, SyntaxError):
        return ConfigError(f"{key} {path}: {err.msg or err}")
    if isinstance(err, ImportError):
        name = getattr(err, "name", None) or err
        return ConfigError(f"{key} {path}: cannot import {name} (a module the config imports); install it or fix it")
    if isinstance(err, FileNotFoundError):  # mmengine raises it for a missing _base_ file
        return ConfigError(f"{key} {path}: {err.filename or err}; fix the _base_ path")
    if isinstance(err, OSError):
        return ConfigError(f"{key} {path}: {err}; use an MMDetection .py config")
    text = " ".join(str(err).split())
    return ConfigError(f"{key} {path}: cannot be loaded: {type(err).__name__}: {text}")


def _check_syntax(path: str, key: str, top: str, depth: int = 0) -> None:
    """Parse ``path`` and the ``_base_`` files it names literally, reporting the first syntax error's line."""
    if not path.endswith(".py") or not os.path.isfile(path) or depth > 20:
        return
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    except UnicodeDecodeError as err:
        where = "" if path == top else f" (its _base_ {path})"
        raise ConfigError(f"{key} {top}{where}: not UTF-8 text (byte {err.start}); save it as UTF-8") from err
    except SyntaxError as err:
        where = "" if path == top else f" (in its _base_ {path})"
        raise ConfigError(f"{key} {top}: syntax error at line {err.lineno}{where}: {err.msg}") from err
    for base in _literal_bases(tree):
        if "::" not in base:
            _check_syntax(os.path.join(os.path.dirname(path), base), key, top, depth + 1)


def _literal_bases(tree: ast.Module) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            value = [value] if isinstance(value, str) else value
            return [v for v in value if isinstance(v, str)] if isinstance(value, (list, tuple)) else []
    return []


def import_custom_modules(cfg: Config, path: str, key: str = "config_file") -> None:
    """Import ``custom_imports`` as ``Config.fromfile`` would, but name the module that fails."""
    spec = cfg.get("custom_imports")
    if not spec:
        return
    names = spec.get("imports") or []
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{key} {path}: custom_imports.imports must be a list of module names, got {names!r}")
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            if spec.get("allow_failed_imports", False):
                logger.warning("%s %s: custom_imports %s failed to import and is ignored: %s", key, path, name, err)
                continue
            raise ConfigError(
                f"{key} {path}: custom_imports cannot import {name} ({err}); pip install the package that"
                " provides it or remove it from custom_imports"
            ) from err


def unknown_type(err: KeyError) -> str:
    """mmengine's unknown-type ``KeyError`` as one sentence, with the closest names of that registry."""
    text = " ".join(str(err).strip(chr(34) + chr(39)).split())
    found = re.match(r"(\S+) is not in the (\w+)::(\w+) registry", text)
    if not found:
        return f"{text}; import the module that registers it with custom_imports = dict(imports=[...])"
    name, scope, registry_name = found.groups()
    names: list[str] = []
    try:
        import mmdet.registry as registries

        registry = getattr(registries, f"{registry_name.upper()}S", None)  # "model" -> MODELS, "hook" -> HOOKS
        while registry is not None:
            names += list(registry.module_dict)
            registry = registry.parent
    except ImportError:
        pass
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return (f"{name} is not in the {scope}::{registry_name} registry{hint} (or import the module that registers it"
            " with custom_imports = dict(imports=[...]))")
