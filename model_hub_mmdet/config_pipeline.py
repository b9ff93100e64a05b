"""The config pipeline of both MMDetection generations: experiment hyperparameters -> the final config.

:func:`build_mmdet_config` runs, in order: resolve and load ``config_file`` -> merge ``merge_config`` ->
substitute the experiment's storage (``data.file_client_args``) -> apply ``override_mmdet_config`` -> substitute
the storage into the loading steps the overrides added -> import the ``custom_imports`` an override named ->
finalize. The steps, the config lookup, the one-line load errors and the dump are written once, here; the
installed generation's ``config`` package describes its config system (mmcv 1.x's or mmengine's ``Config``) in a
:class:`ConfigSystem` named ``SYSTEM``, the hook for what differs. This module imports neither.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import logging
import os
import pprint
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_hub_mmdet import generation
from model_hub_mmdet.config_tree import strip_delete
from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.generation import config_search_dirs, context_on_sys_path, relative_after_configs
from model_hub_mmdet.redact import redact

logger = logging.getLogger("model_hub_mmdet")

Config = Any  # the generation's Config class (mmcv.Config or mmengine.config.Config)
Written = set  # the paths an override wrote (config_tree.Path tuples)


def _no_hook(*_: Any) -> None:
    return None


@dataclass(frozen=True)
class ConfigSystem:
    """What the pipeline needs from a generation's config system, and its steps that differ.

    Args:
        name: the config system's name in messages (``mmcv``, ``mmengine``).
        example: a ``config_file`` of the generation, for the "config_file is required" message.
        fromfile: ``Config.fromfile`` of a path, without importing ``custom_imports`` (the pipeline imports them
            and names the module that fails).
        apply_overrides: applies ``override_mmdet_config`` in place; returns the paths written.
        substitute_storage: ``(cfg, file_client_args, keep)``: points every file-reading part at the storage,
            leaving alone the paths in ``keep``; returns how many it set.
        storage_of_uris: the storage the datasets' object-store URIs imply when the experiment names none.
        finalize: ``(cfg, hparams, slots)``: the generation's last touches (test mode, batch size, ...).
        scope_prefix: a package scope config names may carry (mmengine's ``mmdet::``), dropped when looking up.
        refused_name: ``(name, key)``: a one-line refusal of a config name that is not found here but names
            another generation's config, or None.
        check_loaded: ``(cfg, path, key)``: raises a ConfigError for a loaded config this generation cannot use.
    """

    name: str
    example: str
    fromfile: Callable[[str], Config]
    apply_overrides: Callable[[Config, Mapping[str, Any] | None], Written]
    substitute_storage: Callable[..., int]
    storage_of_uris: Callable[[Config], dict | None]
    finalize: Callable[[Config, Mapping[str, Any], int], Config]
    scope_prefix: str = ""
    refused_name: Callable[[str, str], str | None] = _no_hook
    check_loaded: Callable[[Config, str, str], None] = _no_hook


def system() -> ConfigSystem:
    """The installed generation's :class:`ConfigSystem`."""
    return generation.adapter("config").SYSTEM


# ------------------------------------------------------------------------------------------------- resolving
def bundled_config_dir() -> Path:
    """The configs shipped inside the installed mmdet package (``mmdet/.mim/configs``)."""
    found = generation.bundled_config_dir()
    if found is None:
        raise ConfigError(f"MMDetection is not installed: {generation.require()}")
    return found


@functools.lru_cache(maxsize=4)
def _bundled_names(root: Path) -> tuple[str, ...]:
    return tuple(sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if "_base_" not in p.parts))


def bundled_names() -> tuple[str, ...]:
    """Every bundled config that is not a ``_base_`` file, relative to :func:`bundled_config_dir`."""
    return _bundled_names(bundled_config_dir())


def resolve_config_path(name: str, context_dir: str | os.PathLike = ".", key: str = "config_file") -> Path:
    """Find ``name``: absolute path; relative to ``context_dir``; to ``$MMDETECTION_CONFIG_DIR``; to mmdet's
    bundled configs. A missing path with a ``configs/`` segment (the old docker layout) falls back to the bundled
    copy of what follows ``configs/``; a name of the other generation's configs is refused in one line."""
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        raise ConfigError(f"hyperparameters.{key} must be a path to an MMDetection config .py file, got {name!r}")
    hooks = system()
    text = str(name)
    if hooks.scope_prefix and text.startswith(hooks.scope_prefix):  # mmengine's package-scoped name
        text = text[len(hooks.scope_prefix) :]
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
    refusal = hooks.refused_name(text, key)
    if refusal:
        raise ConfigError(refusal)
    target = relative_after_configs(str(name)) or str(name)
    close = difflib.get_close_matches(target, list(bundled_names()), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    where = ", ".join(str(d) for d in config_search_dirs(context_dir))
    raise ConfigError(f"hyperparameters.{key}: {name} not found (looked in {where}){hint}")


# -------------------------------------------------------------------------------------------------- loading
def load_config(path: str | os.PathLike, key: str = "config_file") -> Config:
    """``Config.fromfile`` with one-line errors naming the file (and the line or module at fault)."""
    path = str(path)
    hooks = system()
    _check_syntax(path, key, path)  # the config systems report a syntax error in a temporary copy, or no line
    sys_path = list(sys.path)
    try:
        cfg = hooks.fromfile(path)
    except Exception as err:
        sys.path[:] = sys_path  # mmcv and mmengine leave their temporary directory on sys.path when a config fails
        raise _load_error(err, path, key) from err
    hooks.check_loaded(cfg, path, key)
    import_custom_modules(cfg, path, key)
    return cfg


def _load_error(err: Exception, path: str, key: str) -> ConfigError:
    if isinstance(err, SyntaxError):
        return ConfigError(f"{key} {path}: {err.msg or err}")
    if isinstance(err, ImportError):
        name = getattr(err, "name", None) or err
        return ConfigError(f"{key} {path}: cannot import {name} (a module the config imports); install it or fix it")
    if isinstance(err, FileNotFoundError):  # raised with only a message for a missing _base_ file
        return ConfigError(f"{key} {path}: {err.filename or err}; fix the _base_ path")
    if isinstance(err, OSError):  # mmcv: "Only py/yml/yaml/json type are supported now!"
        return ConfigError(f"{key} {path}: {err}; use an MMDetection .py config")
    # The config's own code failed (NameError, ...) or the config system refused it (duplicate keys in _base_s).
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
        if "::" not in base:  # mmengine's package-scoped bases are mmdet's own files
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
    """Import ``custom_imports`` as ``Config.fromfile`` would, but name the module that fails (mmcv raises a bare
    ``ImportError``)."""
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


def merge_config_file(cfg: Config, merge_path: str | os.PathLike) -> Config:
    """Merge an mmdet-format ``.py`` file over ``cfg`` with the config system's rules: dicts merge key by key, a
    dict with ``_delete_=True`` replaces the base's, and lists (pipelines, scales) replace the base's list whole."""
    other = load_config(merge_path, key="merge_config")
    try:
        merged = type(cfg)._merge_a_into_b(other.to_dict(), cfg.to_dict(), allow_list_keys=False)
    except (TypeError, KeyError) as err:
        raise ConfigError(f"merge_config {merge_path}: {err}") from err
    merged = strip_delete(merged)  # a _delete_ with nothing below it to replace would reach the registry's build
    text = f"{cfg.text}\n# merged from {merge_path}\n{other.text}"
    return type(cfg)(merged, cfg_text=text, filename=cfg.filename)


# ------------------------------------------------------------------------------------------------- the steps
def build_mmdet_config(
    hparams: Mapping[str, Any],
    data_config: Mapping[str, Any] | None = None,
    context_dir: str | os.PathLike = ".",
    slots: int = 1,
) -> Config:
    """Build the final MMDetection config from experiment ``hyperparameters`` and the experiment's ``data``
    section, for ``slots`` slots (the generation divides ``global_batch_size`` where its config holds the batch).
    Raises :class:`~model_hub_mmdet.errors.ConfigError` with a one-line message on any user mistake."""
    if not isinstance(hparams, Mapping):
        raise ConfigError(f"hyperparameters must be a mapping, got {type(hparams).__name__}")
    hooks = system()
    if "config_file" not in hparams:
        raise ConfigError(f"hyperparameters.config_file is required: an MMDetection config such as {hooks.example}")
    context_on_sys_path(context_dir)
    cfg = load_config(resolve_config_path(hparams["config_file"], context_dir))
    if hparams.get("merge_config"):
        cfg = merge_config_file(cfg, resolve_config_path(hparams["merge_config"], context_dir, key="merge_config"))
    data_config = data_config or {}
    if not isinstance(data_config, Mapping):
        raise ConfigError(f"the experiment's data section must be a mapping, got {type(data_config).__name__}")
    file_client_args = data_config.get("file_client_args")
    # Before the overrides, so that they can refine the args in place (`...file_client_args.bucket_name: x`),
    # and after them for the loading steps they added, leaving alone any args they wrote.
    hooks.substitute_storage(cfg, file_client_args)
    written = hooks.apply_overrides(cfg, hparams.get("override_mmdet_config"))
    hooks.substitute_storage(cfg, file_client_args or hooks.storage_of_uris(cfg), keep=written)
    if any(path[0] == "custom_imports" for path in written):  # modules an override names
        import_custom_modules(cfg, str(cfg.filename), key="override_mmdet_config")
    return hooks.finalize(cfg, hparams, slots)


def loaded_with_overrides(
    config_file: str, context_dir: str | os.PathLike = ".", overrides: Mapping[str, Any] | None = None
) -> Config:
    """``config_file`` resolved and loaded, with the dotted ``overrides`` applied as mmdet's ``tools/train.py``
    applies ``--cfg-options`` (what ``model-hub-mmdet init`` reads its facts from)."""
    cfg = load_config(resolve_config_path(config_file, context_dir))
    if overrides:
        system().apply_overrides(cfg, overrides)
    return cfg


def whole_number(value: Any, key: str, config_file: str) -> int:
    """``value`` of the config's ``key`` when it is a whole number >= 1, else a one-line ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config_file {config_file}: {key} must be a whole number >= 1, got {value!r}")
    return value


def interval_or_none(value: Any) -> int | None:
    """A config's period (validation, checkpoints) when it is a whole number >= 1; else None (none here)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# ------------------------------------------------------------------------------------------------------ dump
def redacted_config(cfg: Config) -> Config:
    """A new Config equal to ``cfg`` but with secrets redacted."""
    return type(cfg)(redact(cfg.to_dict()), filename=cfg.filename)


def config_text(cfg: Config) -> str:
    """The final config as MMDetection ``.py`` text, secrets redacted."""
    redacted = redacted_config(cfg)
    try:
        return redacted.pretty_text
    except Exception:  # yapf rejects what the config systems write for some values (strings holding quotes)
        return _plain_text(redacted.to_dict())


def _plain_text(cfg_dict: Mapping) -> str:
    """Python assignments (``key = repr``) that ``Config.fromfile`` reads back to the same dict."""
    return "".join(f"{key} = {pprint.pformat(value, sort_dicts=False)}\n" for key, value in cfg_dict.items())


def dump_config(cfg: Config, path: str | Path) -> Path:
    """Write the final config (``.py``, secrets redacted) to ``path`` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_text(cfg), encoding="utf-8")
    return path
