"""Locate and load MMDetection 3.x config files (``config_file``, ``merge_config``) with mmengine's ``Config``.

A relative ``config_file`` is looked up in the context directory, in ``$MMDETECTION_CONFIG_DIR`` and in the
configs bundled in the mmdet wheel (``mmdet/.mim/configs``); ``_base_ = 'mmdet::faster_rcnn/...'`` bases are
mmengine's own and work as in MMDetection. A name or file of the other generation (MMDetection 2.x) is refused
in one line that names the generation and, where the same model exists in 3.x, its 3.x config.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path

from mmengine.config import Config

from model_hub_mmdet.config_pipeline import (  # noqa: F401  (this module's API since before the core had them)
    bundled_config_dir,
    bundled_names,
    context_on_sys_path,
    import_custom_modules,
    load_config,
    resolve_config_path,
)
from model_hub_mmdet.config_tree import counterpart_name
from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.generation import relative_after_configs

# Top-level keys only a 2.x config has (3.x renamed them: train_dataloader, optim_wrapper, param_scheduler, ...).
GEN2_KEYS = ("data", "optimizer", "optimizer_config", "lr_config", "runner", "evaluation")
GEN3_KEYS = ("train_dataloader", "val_dataloader", "optim_wrapper", "param_scheduler", "train_cfg", "val_evaluator")


# ------------------------------------------------------------------------------- the other generation's names
def counterpart(name: str, fuzzy: bool = True) -> str | None:
    """The bundled 3.x config of the model a 2.x config name (``faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py``)
    names (``faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py``), or None (:func:`~model_hub_mmdet.config_tree.
    counterpart_name`)."""
    return counterpart_name(relative_after_configs(name) or name, bundled_names(), fuzzy=fuzzy)


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


# ------------------------------------------------------------------------- the hooks of the core's pipeline
def _is_lazy(path: str) -> bool:
    """A new-style (pure Python) config imports its bases inside ``with read_base():``; mmengine's own detection
    can take a classic config that imports ``os`` for one under Python 3.11."""
    return path.endswith(".py") and "read_base" in Path(path).read_text(encoding="utf-8", errors="replace")


def fromfile(path: str) -> Config:
    """mmengine's ``Config.fromfile`` without importing ``custom_imports`` (the pipeline does, naming what fails)."""
    return Config.fromfile(path, import_custom_modules=False, lazy_import=_is_lazy(path))


def refused_name(name: str, key: str) -> str | None:
    """The refusal of a config name that is not here but names a 2.x config with a 3.x twin."""
    other = counterpart(name, fuzzy=False)
    if other is not None and Path(other).name != Path(name).name:
        return f"hyperparameters.{key}: {generation_line(name, other)}"
    return None


def check_loaded(cfg: Config, path: str, key: str) -> None:
    """Refuse a loaded 2.x config in one line naming the generation (and its 3.x twin where there is one)."""
    if not _is_lazy(path) and is_gen2_config(cfg):
        sibling = Path(path).with_name(f"{Path(path).stem}_mmdet3.py")  # this repository's naming of 3.x twins
        raise ConfigError(f"{key} {generation_line(path, str(sibling) if sibling.is_file() else counterpart(path))}")


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
