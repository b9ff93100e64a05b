"""Coming from Determined's model hub (``model_hub.mmdetection``, deprecated in 2024 and then removed).

Its experiment files mostly work here unchanged: the same hyperparameters (``config_file``, ``merge_config``,
``override_mmdet_config``, ``use_pretrained``, ``global_batch_size``, ``save_cfg``/``save_dir``) and the same
``data.file_client_args`` backends (``s3``, ``gcs``, ``disk``, ``fake``). What does not:

* the entrypoint names a module that no longer exists (:func:`legacy_entrypoint_message` says what to write);
* the image ``determinedai/model-hub-mmdetection`` holds the old package, not this one;
* ``/mmdetection/configs/...`` paths existed only in that image (they fall back to mmdet's bundled configs);
* the old s3/gcs backends read only images from the bucket and annotation files from local disk; here the datasets
  read their annotation files through the same backend;
* Determined 0.38 runs ``adaptive_asha``/``async_halving`` searches on ``time_metric``/``max_time``.

:func:`legacy_warnings` reports these for a parsed config; :func:`migrate` rewrites an old file's text (ruamel.yaml
round trip: comments and key order are kept, indentation is normalised) and lists each change;
:func:`migrate_file` is the same for a file, writing only to an output path it is given.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.expconf import SCRIPT_ENTRYPOINT

OLD_MODULE = "model_hub.mmdetection"
OLD_IMAGE = "determinedai/model-hub-mmdetection"
OLD_CONFIG_DIR = "/mmdetection/configs/"
# The script entrypoint Determined 0.38 recommends (model_hub_mmdet/run.py), under the torch launcher that the old
# files used, so multi-slot trials stay distributed.
NEW_ENTRYPOINT = SCRIPT_ENTRYPOINT
NEW_TRIAL = "model_hub_mmdet:MMDetTrial"
OBJECT_BACKENDS = ("s3", "gcs")
TIMED_SEARCHERS = ("adaptive_asha", "async_halving")

_OLD_SPEC = re.compile(r"(?<![\w.])model_hub\.mmdetection(?:\.[\w.]*)?(?::\w+)?")


def _entrypoint_text(entrypoint: Any) -> str:
    if isinstance(entrypoint, (list, tuple)):
        return " ".join(map(str, entrypoint))
    return "" if entrypoint is None else str(entrypoint)


def legacy_entrypoint_message(spec: Any) -> str | None:
    """One line saying what replaces the model hub's trial, or None if ``spec`` does not name it.

    ``spec`` is a trial spec (``model_hub.mmdetection:MMDetTrial``) or a whole entrypoint, as a string or a list
    (``python3 -m determined.launch.torch_distributed --trial model_hub.mmdetection:MMDetTrial``); any module
    under ``model_hub.mmdetection`` counts.
    """
    match = _OLD_SPEC.search(_entrypoint_text(spec))
    if match is None:
        return None
    return (
        f"entrypoint {match.group(0)}: Determined's model hub was removed and model_hub_mmdet replaces it; write"
        f" `entrypoint: {NEW_ENTRYPOINT}` (or `--trial {NEW_TRIAL}`), install model_hub_mmdet in the task image"
        f" (startup-hook.sh; README \"Cluster set-up\"), or let `model-hub-mmdet migrate FILE -o NEW.yaml`"
        f" rewrite the file"
    )


# ------------------------------------------------------------------------------------------- findings
def _images(environment: Any) -> list[tuple[str, str]]:
    """``(dotted key, image)`` of every image ``environment.image`` names (a string or a cpu/cuda/gpu map)."""
    if not isinstance(environment, Mapping):
        return []
    image = environment.get("image")
    if isinstance(image, str):
        return [("environment.image", image)]
    if isinstance(image, Mapping):
        return [(f"environment.image.{k}", v) for k, v in image.items() if isinstance(v, str)]
    return []


def _old_images(conf: Mapping) -> list[tuple[str, str]]:
    return [(key, image) for key, image in _images(conf.get("environment")) if OLD_IMAGE in image]


def _image_advice(image: str) -> str:
    return (
        f"{image} is the retired model hub's image (its mmdet 2.27 in /mmdetection and Determined's old model-hub"
        " package), without model_hub_mmdet: leave environment.image out (Determined's default image has CUDA"
        " torch) or name an image with CUDA torch, and let startup-hook.sh install this package (README"
        " \"Cluster set-up\")"
    )


def _config_paths(hparams: Any) -> list[tuple[str, str]]:
    """``(dotted key, path)`` of ``config_file``/``merge_config`` values (plain, const or categorical)."""
    if not isinstance(hparams, Mapping):
        return []
    found = []
    for key in ("config_file", "merge_config"):
        value = hparams.get(key)
        if isinstance(value, str):
            found.append((f"hyperparameters.{key}", value))
        elif isinstance(value, Mapping) and isinstance(value.get("val"), str):
            found.append((f"hyperparameters.{key}.val", value["val"]))
        elif isinstance(value, Mapping) and isinstance(value.get("vals"), list):
            vals = enumerate(value["vals"])
            found += [(f"hyperparameters.{key}.vals[{i}]", v) for i, v in vals if isinstance(v, str)]
    return found


def _bundled(rel: str) -> bool | None:
    """Whether mmdet's bundled configs hold ``rel`` (None when mmdet is not importable here)."""
    from model_hub_mmdet.generation import bundled_config_dir

    configs = bundled_config_dir()
    return None if configs is None else (configs / rel).is_file()


def _old_config_paths(conf: Mapping) -> list[tuple[str, str, str]]:
    """``(dotted key, old path, new relative path)`` for paths inside the old image's ``/mmdetection/configs``."""
    return [(key, path, path[len(OLD_CONFIG_DIR):]) for key, path in _config_paths(conf.get("hyperparameters"))
            if path.startswith(OLD_CONFIG_DIR)]


def _backend(conf: Mapping) -> Any:
    data = conf.get("data")
    args = data.get("file_client_args") if isinstance(data, Mapping) else None
    return args.get("backend") if isinstance(args, Mapping) else None


def _local_ann_files(conf: Mapping) -> list[tuple[str, str]]:
    """Overrides that point a dataset's ``ann_file`` at an absolute local path (``data.train.ann_file: /tmp/x``),
    under an object-store backend: the old backends read those from local disk, this package from the bucket."""
    if _backend(conf) not in OBJECT_BACKENDS:
        return []
    hparams = conf.get("hyperparameters")
    overrides = hparams.get("override_mmdet_config") if isinstance(hparams, Mapping) else None
    if not isinstance(overrides, Mapping):
        return []
    return [(key, value) for key, value in overrides.items()
            if isinstance(key, str) and key.endswith(".ann_file") and isinstance(value, str)
            and value.startswith("/") and f"{key[: -len('.ann_file')]}.file_client_args" not in overrides]


def _untimed_searcher(conf: Mapping) -> tuple[str, int] | None:
    """``(time_metric, max_time)`` for an ASHA searcher that has ``max_length`` but no time metric."""
    searcher = conf.get("searcher")
    if not isinstance(searcher, Mapping) or searcher.get("name") not in TIMED_SEARCHERS:
        return None
    if searcher.get("time_metric") is not None or searcher.get("max_time") is not None:
        return None
    length = searcher.get("max_length")
    if isinstance(length, int) and not isinstance(length, bool):
        return "batches", length
    if not isinstance(length, Mapping) or len(length) != 1:
        return None
    (unit, value), = length.items()
    if not isinstance(value, int):
        return None
    if unit in ("batches", "epochs"):
        return unit, value
    gbs = (conf.get("hyperparameters") or {}).get("global_batch_size")
    if unit == "records" and isinstance(gbs, int) and gbs > 0:
        return "batches", max(value // gbs, 1)  # as Determined converts records
    return None


def legacy_warnings(conf: Mapping) -> list[str]:
    """What in a parsed experiment config behaves differently here than under Determined's model hub, one line
    each naming the key (the entrypoint is :func:`legacy_entrypoint_message`'s)."""
    if not isinstance(conf, Mapping):
        return []
    out = [f"{key}: {_image_advice(image)}" for key, image in _old_images(conf)]
    for key, path, rel in _old_config_paths(conf):
        if os.path.isfile(path):
            continue  # the old image itself, or a copy of mmdetection's repository there
        if _bundled(rel) is False:
            out.append(f"{key}: {path} does not exist here and mmdet 2.28.2 bundles no {rel}; use a config path"
                       f" this package finds (README \"Hyperparameters\")")
        else:
            out.append(f"{key}: {path} exists only in the model hub's image; mmdet's bundled {rel} is used"
                       f" (write {rel})")
    for key, path in _local_ann_files(conf):
        node = key[: -len(".ann_file")]
        out.append(
            f"hyperparameters.override_mmdet_config.{key}: data.file_client_args now reads annotation files too,"
            f" so {path} is looked up in the {_backend(conf)} bucket; if it is a local file, add"
            f" {node}.file_client_args: {{backend: disk}} (migrate does)"
        )
    return out


# -------------------------------------------------------------------------------------------- rewriting
def _yaml(text: str) -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long entrypoint or comment
    mapping, offset = _indentation(text)
    yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    # Write null as `null` (ruamel's default is an empty value, which would rewrite `merge_config: null`).
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return yaml


def _indentation(text: str) -> tuple[int, int]:
    """The file's mapping indent and the offset of its list dashes under their key (first occurrence of each)."""
    mapping = offset = None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for prev, line in zip(lines, lines[1:]):
        key_col = len(prev) - len(prev.lstrip())
        col = len(line) - len(line.lstrip())
        if not prev.rstrip().endswith(":") or col <= key_col and not line.lstrip().startswith("- "):
            continue
        if line.lstrip().startswith("- ") and offset is None:
            offset = col - key_col
        elif not line.lstrip().startswith("- ") and mapping is None:
            mapping = col - key_col
    return mapping or 2, offset if offset is not None else 2


def migrate(text: str) -> tuple[str, list[str]]:
    """Rewrite the text of an old model-hub experiment file for this package.

    Returns the new text and one human-readable line per change; with no change the text is returned as it was.
    Changes: the model hub's entrypoint becomes :data:`NEW_ENTRYPOINT`; an ``environment.image`` naming the model
    hub's image is removed (a comment says why); ``/mmdetection/configs/x`` becomes ``x`` (mmdet's bundled copy);
    local ``ann_file`` overrides under an s3/gcs backend get ``file_client_args: {backend: disk}`` (the old
    behaviour); an ASHA searcher with only ``max_length`` gets ``time_metric``/``max_time`` (Determined 0.38).
    """
    from ruamel.yaml.error import YAMLError

    yaml = _yaml(text)
    try:
        conf = yaml.load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"experiment file:{where} invalid YAML: {getattr(err, 'problem', None) or err}") from err
    if not isinstance(conf, Mapping):
        raise ConfigError("an experiment file must be a YAML mapping")
    changes: list[str] = []
    _migrate_entrypoint(conf, changes)
    _migrate_image(conf, changes)
    _migrate_config_paths(conf, changes)
    _migrate_ann_files(conf, changes)
    _migrate_searcher(conf, changes)
    if not changes:
        return text, []
    out = io.StringIO()
    yaml.dump(conf, out)
    return out.getvalue(), changes


def _migrate_entrypoint(conf: Any, changes: list[str]) -> None:
    old = conf.get("entrypoint")
    if legacy_entrypoint_message(old) is None:
        return
    conf["entrypoint"] = NEW_ENTRYPOINT
    changes.append(f"entrypoint: {_entrypoint_text(old)} -> {NEW_ENTRYPOINT}")


def _migrate_image(conf: Any, changes: list[str]) -> None:
    old = _old_images(conf)
    if not old:
        return
    env = conf["environment"]
    keys = list(conf)
    del env["image"]
    images = ", ".join(image for _, image in old)
    note = (f"environment.image {images} removed by model-hub-mmdet migrate: the model hub's image lacks"
            f" model_hub_mmdet; startup-hook.sh installs it into any image with CUDA torch (README \"Cluster"
            f" set-up\")")
    if env:
        conf.yaml_set_comment_before_after_key("environment", before=note)
    else:
        after = keys[keys.index("environment") + 1:]
        del conf["environment"]
        if after:
            conf.yaml_set_comment_before_after_key(after[0], before=note)
        else:
            conf.yaml_add_eol_comment(note, keys[-2] if len(keys) > 1 else next(iter(conf)))
    changes.append(f"environment.image: removed {images} (the task image needs model_hub_mmdet: startup-hook.sh)")


def _migrate_config_paths(conf: Any, changes: list[str]) -> None:
    hparams = conf.get("hyperparameters")
    for key, path, rel in _old_config_paths(conf):
        name = key.split(".")[1]
        value = hparams[name]
        if isinstance(value, str):
            hparams[name] = rel
        elif key.endswith(".val"):
            value["val"] = rel
        else:
            index = int(key.rsplit("[", 1)[1].rstrip("]"))
            value["vals"][index] = rel
        missing = "" if _bundled(rel) is not False else " (not among mmdet 2.28.2's bundled configs: check it)"
        changes.append(f"{key}: {path} -> {rel} (mmdet's bundled copy){missing}")


def _migrate_ann_files(conf: Any, changes: list[str]) -> None:
    overrides = None
    for key, _path in _local_ann_files(conf):
        overrides = conf["hyperparameters"]["override_mmdet_config"]
        node = key[: -len(".ann_file")]
        new_key = f"{node}.file_client_args"
        overrides.insert(list(overrides).index(key) + 1, new_key, _flow({"backend": "disk"}))
        changes.append(
            f"hyperparameters.override_mmdet_config.{new_key}: {{backend: disk}} added: {key} is a local file,"
            f" which the model hub read from disk while data.file_client_args now reads annotation files too"
        )


def _flow(mapping: dict) -> Any:
    from ruamel.yaml.comments import CommentedMap

    out = CommentedMap(mapping)
    out.fa.set_flow_style()
    return out


def _migrate_searcher(conf: Any, changes: list[str]) -> None:
    timed = _untimed_searcher(conf)
    if timed is None:
        return
    metric, value = timed
    searcher = conf["searcher"]
    position = list(searcher).index("max_length") if "max_length" in searcher else len(searcher)
    searcher.insert(position, "time_metric", metric)
    searcher.insert(position + 1, "max_time", value)
    changes.append(
        f"searcher: time_metric: {metric} and max_time: {value} added (Determined 0.38 runs {searcher['name']}"
        f" on them; max_length stays for the training length)"
    )


def migrate_file(src: str | os.PathLike, dst: str | os.PathLike | None = None,
                 in_place: bool = False) -> tuple[str, list[str]]:
    """:func:`migrate` the file ``src``; write the result to ``dst`` if given. ``src`` itself is written only
    with ``in_place=True`` (as ``dst`` or without it): a user's file is never overwritten by accident."""
    src = Path(src)
    try:
        text = src.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{src}: cannot read the experiment file ({err.strerror or err})") from err
    try:
        new, changes = migrate(text)
    except ConfigError as err:
        raise ConfigError(f"{src}: {err}") from err
    target = src if in_place and dst is None else (Path(dst) if dst is not None else None)
    if target is not None:
        if target.exists() and target.resolve() == src.resolve() and not in_place:
            raise ConfigError(f"{src}: -o names the input file; give another output path, or --in-place to"
                              " overwrite it")
        target.write_text(new, encoding="utf-8")
    return new, changes
