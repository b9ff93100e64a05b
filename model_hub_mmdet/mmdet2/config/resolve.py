"""Locate and load MMDetection config files (``config_file``, ``merge_config``)."""

from __future__ import annotations

import ast
import difflib
import importlib
import logging
import os
import sys
from pathlib import Path

from mmcv import Config

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.generation import (  # noqa: F401  (context_on_sys_path: part of this module's API)
    config_search_dirs,
    context_on_sys_path,
    relative_after_configs,
)

logger = logging.getLogger("model_hub_mmdet")


def bundled_config_dir() -> Path:
    """The configs shipped inside the installed mmdet package (``mmdet/.mim/configs``)."""
    import mmdet

    return Path(mmdet.__file__).resolve().parent / ".mim" / "configs"


def resolve_config_path(name: str, context_dir: str | os.PathLike = ".", key: str = "config_file") -> Path:
    """Find ``name``: absolute path; relative to ``context_dir``; to ``$MMDETECTION_CONFIG_DIR``; to mmdet's
    bundled configs. A missing path with a ``configs/`` segment (the old docker layout) falls back to the
    bundled copy of what follows ``configs/``."""
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        raise ConfigError(f"hyperparameters.{key} must be a path to an MMDetection config .py file, got {name!r}")
    path = Path(os.path.expanduser(str(name)))
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
    raise ConfigError(_not_found_message(str(name), key, context_dir))


def _not_found_message(name: str, key: str, context_dir: str | os.PathLike) -> str:
    bundled = bundled_config_dir()
    candidates = [str(p.relative_to(bundled)) for p in bundled.rglob("*.py") if "_base_" not in p.parts]
    target = relative_after_configs(name) or name
    close = difflib.get_close_matches(target, candidates, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    where = ", ".join(str(d) for d in config_search_dirs(context_dir))
    return f"hyperparameters.{key}: {name} not found (looked in {where}){hint}"


def load_config(path: str | os.PathLike, key: str = "config_file") -> Config:
    """``Config.fromfile`` with one-line errors naming the file (and the line or module at fault)."""
    path = str(path)
    _check_syntax(path, key, path)  # mmcv reports syntax errors without a line number, against a temporary copy
    sys_path = list(sys.path)
    try:
        cfg = Config.fromfile(path, import_custom_modules=False)
    except Exception as err:
        sys.path[:] = sys_path  # mmcv leaves its temporary directory on sys.path when a config fails
        raise _load_error(err, path, key) from err
    _import_custom_modules(cfg, path, key)
    return cfg


def _load_error(err: Exception, path: str, key: str) -> ConfigError:
    if isinstance(err, SyntaxError):
        return ConfigError(f"{key} {path}: {err.msg or err}")
    if isinstance(err, ImportError):
        name = getattr(err, "name", None) or err
        return ConfigError(f"{key} {path}: cannot import {name} (a module the config imports); install it or fix it")
    if isinstance(err, FileNotFoundError):  # mmcv raises it with only a message for a missing _base_ file
        return ConfigError(f"{key} {path}: {err.filename or err}; fix the _base_ path")
    if isinstance(err, OSError):  # mmcv: "Only py/yml/yaml/json type are supported now!"
        return ConfigError(f"{key} {path}: {err}; use an MMDetection .py config")
    # The config's own code failed (NameError, ...) or mmcv refused it (duplicate keys among _base_ files).
    return ConfigError(f"{key} {path}: cannot be loaded: {type(err).__name__}: {err}")


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


def _import_custom_modules(cfg: Config, path: str, key: str) -> None:
    """Import ``custom_imports`` as ``Config.fromfile`` would, but name the module that fails (mmcv raises a
    bare ``ImportError``)."""
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
