"""Where pretrained weights live: the MMDetection model zoo and the backbone zoos mmcv knows by name.

* :func:`zoo_index` maps each config (path relative to mmdet's bundled ``configs/`` dir, e.g.
  ``faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py``) to its checkpoint, read from the ``metafile.yml`` files bundled
  with the installed mmdet, the same files MMDetection's own ``mim`` tooling reads. READMEs are never parsed.
* ``$MODEL_HUB_MMDET_ZOO_INDEX`` (``os.pathsep``-separated metafile paths) adds entries that take precedence:
  a private zoo, or the same configs served from an internal mirror.
* ``$MODEL_HUB_MMDET_ZOO_URL`` replaces the ``https://download.openmmlab.com`` prefix of every zoo URL
  (model zoo and ``open-mmlab://`` backbones), for mirrors and for tests.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from model_hub_mmdet import checkpoint_schemes, generation
from model_hub_mmdet.errors import ConfigError, WeightsError
from model_hub_mmdet.generation import relative_after_configs

logger = logging.getLogger("model_hub_mmdet")

OPENMMLAB_DOWNLOAD = "https://download.openmmlab.com"
ZOO_URL_ENV = "MODEL_HUB_MMDET_ZOO_URL"
ZOO_INDEX_ENV = "MODEL_HUB_MMDET_ZOO_INDEX"

# Zoo files are named ``<name>-<first 8+ hex digits of their sha256>.pth`` (mmdet's publish_model.py, torch.hub).
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.(?:pth|pt)$")
# Hosts whose file names are known to embed a content hash; elsewhere ``x-20240101.pth`` may just be a date.
_HASHED_HOSTS = ("download.openmmlab.com", "download.pytorch.org")


@dataclass(frozen=True)
class ZooEntry:
    """One model zoo checkpoint: the metafile's ``Name``, its config (relative to ``configs/``) and weights URL."""

    name: str
    config: str
    weights: str
    metafile: str


def zoo_url(url: str) -> str:
    """``url`` with the ``https://download.openmmlab.com`` prefix replaced by ``$MODEL_HUB_MMDET_ZOO_URL`` if set."""
    base = os.environ.get(ZOO_URL_ENV, "").rstrip("/")
    if base and url.startswith(OPENMMLAB_DOWNLOAD + "/"):
        return base + url[len(OPENMMLAB_DOWNLOAD) :]
    return url


def hash_in_name(url: str) -> str | None:
    """The sha256 prefix embedded in a zoo file name (``..._20200130-047c8118.pth`` -> ``047c8118``), else None."""
    match = _HASH_IN_NAME.search(url.split("?", 1)[0])
    return match.group(1) if match else None


def expected_hash(original_url: str) -> str | None:
    """The hash to verify for a download, judged on the URL before any mirror rewrite: only zoo hosts promise
    that the suffix of a file name is a content hash."""
    host = original_url.split("://", 1)[-1].split("/", 1)[0]
    return hash_in_name(original_url) if host in _HASHED_HOSTS else None


def _config_key(metafile: Path, config: str, configs_dir: Path) -> str | None:
    """The metafile's ``Config`` as a path relative to ``configs_dir``. A few metafiles name a directory that does
    not exist (``simplecopypaste/`` for ``simple_copy_paste/``): the file next to the metafile is used then."""
    rel = config.split("configs/", 1)[1] if config.startswith("configs/") else config
    if (configs_dir / rel).is_file():
        return rel
    sibling = metafile.parent / Path(rel).name
    if sibling.is_file():
        return str(sibling.relative_to(configs_dir)) if sibling.is_relative_to(configs_dir) else str(sibling)
    return None


def _read_metafile(path: Path, configs_dir: Path) -> list[ZooEntry]:
    """Entries of one metafile: a mapping with ``Models`` or (objects365) a bare list of models."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise WeightsError(f"model zoo metafile {path} cannot be read: {err}") from err
    models = doc.get("Models", []) if isinstance(doc, dict) else doc
    entries = []
    for model in models or []:
        if not isinstance(model, dict) or not model.get("Config") or not isinstance(model.get("Weights"), str):
            continue
        key = _config_key(path, model["Config"], configs_dir)
        if key is None:
            logger.debug("metafile %s: config %s not found; entry %s skipped", path, model["Config"], model.get("Name"))
            continue
        entries.append(ZooEntry(str(model.get("Name", key)), key, model["Weights"], str(path)))
    return entries


@functools.lru_cache(maxsize=4)
def _bundled_index(configs_dir: str) -> dict[str, ZooEntry]:
    """The metafiles of one configs dir, parsed once per process (about a second for mmdet's 79 files)."""
    root = Path(configs_dir)
    index: dict[str, ZooEntry] = {}
    for metafile in sorted(root.glob("*/metafile.yml")):
        for entry in _read_metafile(metafile, root):
            index.setdefault(entry.config, entry)  # a few configs are listed twice, with the same weights
    return index


def _extra_entries(extra: str, configs_dir: Path) -> list[ZooEntry]:
    entries = []
    for path in filter(None, extra.split(os.pathsep)):
        if not Path(path).is_file():
            raise WeightsError(f"${ZOO_INDEX_ENV}: metafile {path} does not exist; fix or unset it")
        entries += _read_metafile(Path(path), configs_dir)
    return entries


def zoo_index(configs_dir: str | os.PathLike | None = None) -> dict[str, ZooEntry]:
    """Every config with a zoo checkpoint -> its :class:`ZooEntry`, keyed by path relative to ``configs_dir``
    (default: mmdet's bundled configs), plus the entries of ``$MODEL_HUB_MMDET_ZOO_INDEX`` metafiles."""
    if configs_dir is None:
        configs_dir = _bundled_configs()
    root = Path(configs_dir).resolve()
    index = dict(_bundled_index(str(root)))
    index.update((e.config, e) for e in _extra_entries(os.environ.get(ZOO_INDEX_ENV, ""), root))
    return index


def config_key(config_path: str | os.PathLike, configs_dir: str | os.PathLike | None = None) -> str:
    """The zoo key of a config file: its path relative to mmdet's bundled configs dir, or else the part after
    the last ``configs/`` directory (a config from an MMDetection checkout), or else its file name."""
    path = Path(config_path).resolve()
    root = Path(configs_dir if configs_dir is not None else _bundled_configs()).resolve()
    if path.is_relative_to(root):
        return str(path.relative_to(root))
    return relative_after_configs(path) or path.name


def zoo_entry_for_config(config_path: str | os.PathLike | None) -> ZooEntry:
    """The zoo checkpoint of a config, or a :class:`ConfigError` saying there is none and what to do instead."""
    if not config_path:
        raise ConfigError(
            "use_pretrained: the MMDetection config has no file name to look up in the model zoo;"
            " set hyperparameters.pretrained_weights to a checkpoint instead"
        )
    index = zoo_index()
    key = config_key(config_path)
    if key in index:
        return index[key]
    by_name = [e for k, e in index.items() if Path(k).name == Path(key).name]
    if len(by_name) == 1:
        logger.info(
            "use_pretrained: %s is not a bundled config; using the zoo entry of %s", config_path, by_name[0].config
        )
        return by_name[0]
    close = difflib.get_close_matches(key, list(index), n=3, cutoff=0.6)
    hint = f" (closest with weights: {', '.join(close)})" if close else ""
    raise ConfigError(
        f"use_pretrained: config {key} has no checkpoint in the MMDetection model zoo ({len(index)} configs do){hint};"
        " pick one of those configs or set hyperparameters.pretrained_weights to a .pth path or URL"
    )


def _bundled_configs() -> Path:
    found = generation.bundled_config_dir()
    if found is None:
        raise WeightsError("use_pretrained: MMDetection is not installed, so its model zoo index is not either")
    return found


def _lookup(urls: dict[str, str], name: str, uri: str, missing: str, suggest: bool = True) -> str:
    """``urls[name]``; else a WeightsError "``uri`` ``missing``", naming the closest names when ``suggest``."""
    if name in urls:
        return urls[name]
    close = difflib.get_close_matches(name, list(urls), n=3) if suggest else []
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise WeightsError(f"{uri} {missing}{hint}")


def torchvision_url(name: str) -> str:
    """URL of a ``torchvision://NAME`` backbone (``resnet50``, ``resnet50.imagenet1k_v1``,
    ``ResNet50_Weights.IMAGENET1K_V1``), from the URL table mmcv builds out of the installed torchvision."""
    get_torchvision_models = checkpoint_schemes.installed().torchvision_models
    key = name.lower().replace("_weights", "")
    return _lookup(get_torchvision_models(), key, f"torchvision://{name}", "is not a torchvision model with weights")


def openmmlab_url(name: str) -> str:
    """URL (or path under ``$MMCV_HOME``) of an ``open-mmlab://NAME`` backbone, from mmcv's table plus the user's
    ``$MMCV_HOME/open_mmlab.json``; deprecated names are followed to their replacement, as mmcv does."""
    tables = checkpoint_schemes.installed()
    get_external_models = tables.external_models
    renamed = tables.deprecated_model_names()
    if name in renamed:
        logger.warning("open-mmlab://%s is deprecated in favour of open-mmlab://%s", name, renamed[name])
        name = renamed[name]
    return _lookup(get_external_models(), name, f"open-mmlab://{name}", "is not in mmcv's open-mmlab model table")


def mmcls_url(name: str) -> str:
    """URL of an ``mmcls://NAME`` backbone, from mmcv's mmcls table."""
    get_mmcls_models = checkpoint_schemes.installed().mmcls_models
    return _lookup(get_mmcls_models(), name, f"mmcls://{name}", "is not in mmcv's mmcls model table", suggest=False)
