"""Turn a Determined checkpoint of ``MMDetTrial`` into a native MMDetection checkpoint and config (both generations).

The trial's ``state_dict.pth`` (Determined's format, laid out in :mod:`model_hub_mmdet.checkpoints`) holds
``models_state_dict[0]`` (the detector, ``module.``-prefixed under DDP), ``mmdet_meta`` (final config text, class
names, versions) and, in the trial's callback state, what hooks added to the checkpoint. :func:`export_checkpoint`
finds the checkpoint (a directory, its ``state_dict.pth``, or a UUID: local storage, else the cluster), reads it,
asks the generation's ``export.py`` for the native checkpoint (``{"meta": ..., "state_dict": ...}`` as that
generation's runner saves it, so mmdet's ``init_detector`` and ``tools/test.py`` load it unchanged) and writes it
with the config ``OUT.py`` beside it. Such a file can seed a new experiment through ``load_from`` or
``pretrained_weights``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from model_hub_mmdet._fs import atomic_write
from model_hub_mmdet.checkpoints import (
    CALLBACK_KEY,
    CONFIG_FILE,
    META_KEY,
    STATE_FILE,
    is_checkpoint_dir,
    local_checkpoint,
    state_file,
)
from model_hub_mmdet.errors import WeightsError
from model_hub_mmdet.weights.loading import extract_state_dict, load_checkpoint_file

logger = logging.getLogger("model_hub_mmdet")

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)

# (detector state dict, mmdet_meta, what hooks added, where it came from) -> the native checkpoint
NativeCheckpoint = Callable[[OrderedDict, dict, dict, str], dict]


def _download_from_master(uuid: str, into: Path) -> Path:
    """Download checkpoint ``uuid`` with the Determined SDK (master from ``$DET_MASTER``, the CLI's login)."""
    master = os.environ.get("DET_MASTER")
    try:
        from determined.experimental import client

        path = client.get_checkpoint(uuid).download(str(into / uuid))
    except Exception as err:  # noqa: BLE001 - the SDK raises many types; all mean "could not download"
        reason = str(err).splitlines()[0] if str(err) else repr(err)
        raise WeightsError(
            f"cannot download checkpoint {uuid} from DET_MASTER={master}: {reason};"
            " check `det checkpoint describe` and `det user login`, or pass the checkpoint directory"
        ) from err
    return Path(path)


@contextlib.contextmanager
def checkpoint_dir(checkpoint: str | os.PathLike) -> Iterator[Path]:
    """The local directory of a checkpoint given as a directory, its ``state_dict.pth``, or a UUID (found in
    Determined's local checkpoint storage, else downloaded to a temporary directory when ``$DET_MASTER`` is set)."""
    path = Path(os.path.expanduser(str(checkpoint)))
    if path.is_dir():
        yield path
        return
    if path.is_file() and path.name == STATE_FILE:
        yield path.parent
        return
    name = str(checkpoint).strip()
    if not _UUID.match(name):
        raise WeightsError(f"{checkpoint} is neither a checkpoint directory nor a checkpoint UUID")
    local = local_checkpoint(name)
    if local.is_dir():
        yield local
        return
    if not os.environ.get("DET_MASTER"):
        raise WeightsError(
            f"checkpoint {name} is not in {local.parent}; set DET_MASTER to download it from your cluster,"
            " or pass the checkpoint's directory"
        )
    with tempfile.TemporaryDirectory(prefix="model_hub_mmdet_export_") as tmp:
        yield _download_from_master(name, Path(tmp))


def read_trial_checkpoint(ckpt_dir: Path) -> tuple[OrderedDict, dict[str, Any], dict[str, Any]]:
    """(detector state dict, mmdet_meta, what hooks added) of a trial checkpoint directory."""
    if not is_checkpoint_dir(ckpt_dir):
        raise WeightsError(f"{ckpt_dir} has no {STATE_FILE}; is it a checkpoint of a PyTorchTrial?")
    path, config_file = state_file(ckpt_dir), ckpt_dir / CONFIG_FILE
    checkpoint = load_checkpoint_file(path, trusted=True)
    meta = dict(checkpoint.get(META_KEY) or {}) if isinstance(checkpoint, dict) else {}
    if not meta.get("config") and config_file.is_file():
        meta["config"] = config_file.read_text(encoding="utf-8")
    if not meta.get("config"):
        raise WeightsError(f"{path} has no {META_KEY} and {ckpt_dir} no {CONFIG_FILE}: was it written by MMDetTrial?")
    callback = ((checkpoint.get("callbacks") or {}).get(CALLBACK_KEY) or {}) if isinstance(checkpoint, dict) else {}
    return extract_state_dict(checkpoint, str(path)), meta, dict(callback.get("hooks") or {})


def native_meta(
    meta: Mapping[str, Any], exported_from: str, config_key: str, versions: Mapping[str, str],
    classes: tuple[str, Any] | None,
) -> dict[str, Any]:
    """The ``meta`` of a native checkpoint: the config text under ``config_key``, the trial's ``versions`` (else
    the installed ones given), when and whence, and ``classes`` (key, value) where the run recorded them."""
    out: dict[str, Any] = {config_key: meta["config"]}
    out.update((key, meta.get(key) or installed) for key, installed in versions.items())
    out.update(time=time.asctime(), exported_from=exported_from)
    if classes:
        out[classes[0]] = classes[1]
    else:
        logger.warning("%s records no class names; mmdet will fall back to COCO's", exported_from)
    return out


def cpu_state(state: Mapping[str, torch.Tensor]) -> OrderedDict:
    """``state`` detached, on the CPU."""
    return OrderedDict((k, v.detach().cpu()) for k, v in state.items())


def config_path_for(out_path: str | os.PathLike) -> Path:
    """The config written beside an exported checkpoint: ``model.pth`` -> ``model.py``."""
    out = Path(out_path)
    return out.with_suffix(".py") if out.suffix == ".pth" else out.with_name(out.name + ".py")


def export_checkpoint(checkpoint: str | os.PathLike, out_path: str | os.PathLike, native: NativeCheckpoint) -> Path:
    """Write the native checkpoint (``native``: the generation's layout) of a trial checkpoint (directory or UUID)
    to ``out_path`` and its final config beside it (``out.pth`` -> ``out.py``). Returns ``out_path``. Raises
    :class:`WeightsError`."""
    out = Path(out_path).expanduser()
    if out.is_dir():
        raise WeightsError(f"export target {out} is a directory; give a file name such as {out / 'model.pth'}")
    with checkpoint_dir(checkpoint) as ckpt_dir:
        state, meta, hooks = read_trial_checkpoint(ckpt_dir)
    saved = native(state, meta, hooks, str(checkpoint))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda f: torch.save(saved, f), private=False)
        atomic_write(config_path_for(out), lambda f: f.write(meta["config"].encode("utf-8")), private=False)
    except OSError as err:
        raise WeightsError(f"cannot write {out}: {err.strerror or err}") from err
    logger.debug("exported %s (%d tensors) and %s", out, len(saved["state_dict"]), config_path_for(out))
    return out
