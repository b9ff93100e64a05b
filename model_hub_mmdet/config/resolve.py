"""Locate and load MMDetection config files (``config_file``, ``merge_config``)."""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path

from mmcv import Config

from model_hub_mmdet.errors import ConfigError

logger = logging.getLogger("model_hub_mmdet")


def bundled_config_dir() -> Path:
    """The configs shipped inside the installed mmdet package (``mmdet/.mim/configs``)."""
    import mmdet

    return Path(mmdet.__file__).resolve().parent / ".mim" / "configs"


def _relative_after_configs(path: str) -> str | None:
    """``/mmdetection/configs/mask_rcnn/x.py`` -> ``mask_rcnn/x.py`` (the part after the last ``configs/``)."""
    parts = Path(path).parts
    if "configs" not in parts:
        return None
    idx = len(parts) - 1 - parts[::-1].index("configs")
    rest = parts[idx + 1 :]
    return str(Path(*rest)) if rest else None


def config_search_dirs(context_dir: str | os.PathLike = ".") -> list[Path]:
    """Directories a relative ``config_file`` is looked up in, in order."""
    dirs = [Path(context_dir)]
    env_dir = os.environ.get("MMDETECTION_CONFIG_DIR")
    if env_dir:
        dirs.append(Path(env_dir))
    dirs.append(bundled_config_dir())
    return dirs


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
    rel = _relative_after_configs(str(path))
    if rel is not None and (bundled_config_dir() / rel).is_file():
        found = bundled_config_dir() / rel
        logger.info("%s %s does not exist; using mmdet's bundled copy %s", key, name, found)
        return found
    raise ConfigError(_not_found_message(str(name), key, context_dir))


def _not_found_message(name: str, key: str, context_dir: str | os.PathLike) -> str:
    bundled = bundled_config_dir()
    candidates = [str(p.relative_to(bundled)) for p in bundled.rglob("*.py") if "_base_" not in p.parts]
    target = _relative_after_configs(name) or name
    close = difflib.get_close_matches(target, candidates, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    where = ", ".join(str(d) for d in config_search_dirs(context_dir))
    return f"hyperparameters.{key}: {name} not found (looked in {where}){hint}"


def load_config(path: str | os.PathLike, key: str = "config_file") -> Config:
    """``Config.fromfile`` with one-line errors naming the file."""
    try:
        return Config.fromfile(str(path))
    except SyntaxError as err:
        raise ConfigError(f"{key} {path}: syntax error at line {err.lineno}: {err.msg}") from err
    except ImportError as err:
        raise ConfigError(
            f"{key} {path}: cannot import {getattr(err, 'name', None) or err} (custom_imports or a _base_ module);"
            " install it or fix the config"
        ) from err
    except FileNotFoundError as err:
        raise ConfigError(f"{key} {path}: {err.strerror or err}: {err.filename}") from err
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{key} {path}: {err}") from err
