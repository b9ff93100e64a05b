"""Turn a Determined checkpoint of the 3.x ``MMDetTrial`` into a native MMDetection 3 checkpoint and config.

The trial's ``state_dict.pth`` (Determined's format, laid out in :mod:`model_hub_mmdet.checkpoints`) holds
``models_state_dict[0]`` (the detector, ``module.``-prefixed under DDP), ``mmdet_meta`` (final config text,
``dataset_meta``, versions) and, in the trial's callback state, what hooks added to the checkpoint. With an
``EMAHook`` that is the averaged weights, which replace the raw ones in the exported ``state_dict`` exactly as
mmengine's ``EMAHook.before_save_checkpoint`` does in a runner checkpoint (and the raw ones go to
``ema_state_dict``). :func:`export_checkpoint` writes ``{"meta": {"cfg", "dataset_meta", ...}, "state_dict"}``, the
format mmengine's runner writes, so ``mmdet.apis.init_detector(OUT.py, OUT.pth)``, ``DetInferencer`` and mmdet's
``tools/test.py`` use it unchanged; and the config ``OUT.py`` beside it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from model_hub_mmdet._fs import atomic_write
from model_hub_mmdet.checkpoints import CALLBACK_KEY, CONFIG_FILE, META_KEY, STATE_FILE, is_checkpoint_dir, state_file
from model_hub_mmdet.errors import WeightsError
from model_hub_mmdet.weights.loading import extract_state_dict, load_checkpoint_file

logger = logging.getLogger("model_hub_mmdet")


@contextlib.contextmanager
def checkpoint_dir(checkpoint: str | os.PathLike) -> Iterator[Path]:
    """The local directory of a checkpoint given as a directory, its ``state_dict.pth``, or a UUID (found in
    Determined's local checkpoint storage, else downloaded to a temporary directory when ``$DET_MASTER`` is set)."""
    from model_hub_mmdet.checkpoints import local_checkpoint

    path = Path(os.path.expanduser(str(checkpoint)))
    if path.is_file() and path.name == STATE_FILE:
        path = path.parent
    if path.is_dir():
        yield path
        return
    name = str(checkpoint).strip()
    local = local_checkpoint(name)
    if local.is_dir():
        yield local
        return
    master = os.environ.get("DET_MASTER")
    if not master:
        raise WeightsError(f"{checkpoint} is neither a checkpoint directory nor a checkpoint in {local.parent}; set"
                           " DET_MASTER to download it from your cluster, or pass the checkpoint's directory")
    with tempfile.TemporaryDirectory(prefix="model_hub_mmdet_export_") as tmp:
        try:
            from determined.experimental import client

            downloaded = client.get_checkpoint(name).download(str(Path(tmp) / name))
        except Exception as err:  # noqa: BLE001 - the SDK raises many types; all mean "could not download"
            reason = str(err).splitlines()[0] if str(err) else repr(err)
            raise WeightsError(f"cannot download checkpoint {name} from DET_MASTER={master}: {reason}; check `det"
                               " checkpoint describe` and `det user login`, or pass the checkpoint directory") from err
        yield Path(downloaded)


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


def native_meta(meta: dict[str, Any], exported_from: str) -> dict[str, Any]:
    """The ``meta`` of a native mmdet 3 checkpoint: ``cfg``, ``dataset_meta`` and versions."""
    import mmdet
    import mmengine

    out: dict[str, Any] = {
        "cfg": meta["config"],
        "mmdet_version": meta.get("mmdet_version") or mmdet.__version__,
        "mmengine_version": meta.get("mmengine_version") or mmengine.__version__,
        "time": time.asctime(),
        "exported_from": exported_from,
    }
    dataset_meta = meta.get("dataset_meta") or ({"classes": meta["CLASSES"]} if meta.get("CLASSES") else None)
    if dataset_meta:
        out["dataset_meta"] = dataset_meta
    else:
        logger.warning("%s records no class names; mmdet will fall back to COCO's", exported_from)
    return out


def config_path_for(out_path: str | os.PathLike) -> Path:
    """The config written beside an exported checkpoint: ``model.pth`` -> ``model.py``."""
    out = Path(out_path)
    return out.with_suffix(".py") if out.suffix == ".pth" else out.with_name(out.name + ".py")


def export_checkpoint(checkpoint: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write a native MMDetection 3 checkpoint of a trial checkpoint (directory or UUID) to ``out_path`` and its final
    config beside it (``out.pth`` -> ``out.py``). Returns ``out_path``. Raises :class:`WeightsError`."""
    out = Path(out_path).expanduser()
    if out.is_dir():
        raise WeightsError(f"export target {out} is a directory; give a file name such as {out / 'model.pth'}")
    with checkpoint_dir(checkpoint) as ckpt_dir:
        state, meta, hooks = read_trial_checkpoint(ckpt_dir)
    state = OrderedDict((k, v.detach().cpu()) for k, v in state.items())
    changes = hooks.get("state_dict_changes") or {}
    state.update((k, v.detach().cpu()) for k, v in changes.items() if k in state)
    native: dict[str, Any] = {"meta": native_meta(meta, str(checkpoint)), "state_dict": state}
    native.update((k, v) for k, v in (hooks.get("added") or {}).items() if k not in native)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda f: torch.save(native, f), private=False)
        atomic_write(config_path_for(out), lambda f: f.write(meta["config"].encode("utf-8")), private=False)
    except OSError as err:
        raise WeightsError(f"cannot write {out}: {err.strerror or err}") from err
    if changes:
        logger.info("exported the EMA weights (%d tensors) as the model's weights", len(changes))
    return out
