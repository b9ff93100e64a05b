"""The layout of a checkpoint that :class:`~model_hub_mmdet.MMDetTrial` writes: the one place that spells it.

A Determined PyTorchTrial checkpoint directory holds ``state_dict.pth`` (Determined's format: ``models_state_dict``,
``optimizers_state_dict``, ``callbacks`` ...). MMDetTrial adds:

* ``state_dict.pth["mmdet_meta"]``: the final config text, CLASSES and versions (what a native mmdet
  checkpoint's ``meta`` holds), written by the trial's callback in ``on_checkpoint_save_start``;
* ``state_dict.pth["callbacks"]["model_hub_mmdet"]``: the trial's own state (``batches_trained``);
* ``mmdet_config.py``: the same config text as a file, for people and for ``mmdet`` tools.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

STATE_FILE = "state_dict.pth"
CONFIG_FILE = "mmdet_config.py"
META_KEY = "mmdet_meta"
CALLBACK_KEY = "model_hub_mmdet"  # the name of the trial's PyTorchCallback, hence its key under "callbacks"
TRIAL_STATE_FILE = "trial_state.pkl"  # Determined's own counters
LOAD_DATA_FILE = "load_data.json"  # Determined's record of the experiment config, hparams and trial class


def state_file(checkpoint_dir: str | os.PathLike) -> Path:
    """``<checkpoint_dir>/state_dict.pth``."""
    return Path(checkpoint_dir) / STATE_FILE


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding a PyTorchTrial ``state_dict.pth``."""
    return state_file(path).is_file()


def batches_trained(checkpoint_dir: str | os.PathLike) -> int:
    """How many batches the trial had trained when ``checkpoint_dir`` was written: MMDetTrial's own counter
    (which survives local resumes), else Determined's ``trial_state.pkl`` counter."""
    import torch

    state = torch.load(state_file(checkpoint_dir), map_location="cpu", weights_only=True)
    callbacks = state.get("callbacks") or {}
    if CALLBACK_KEY in callbacks:
        return int(callbacks[CALLBACK_KEY]["batches_trained"])
    trial_state = Path(checkpoint_dir) / TRIAL_STATE_FILE
    if not trial_state.is_file():
        return 0
    with trial_state.open("rb") as f:
        return int(pickle.load(f).get("batches_trained", 0))


def write_config(checkpoint_dir: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``mmdet_config.py`` beside ``state_dict.pth`` from an ``mmdet_meta`` dict."""
    path = Path(checkpoint_dir) / CONFIG_FILE
    path.write_text(meta["config"], encoding="utf-8")
    return path


def redact_load_data(checkpoint_dir: str | os.PathLike) -> None:
    """Determined writes the experiment config and hyperparameters verbatim into ``load_data.json``; values under
    secret-looking keys (``*_token``, ``*password*`` ...) are replaced there as in ``mmdet_config.py``."""
    import json

    from model_hub_mmdet._fs import atomic_write
    from model_hub_mmdet.redact import redact

    path = Path(checkpoint_dir) / LOAD_DATA_FILE
    if not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    for key in ("experiment_config", "hparams"):
        if isinstance(data.get(key), dict):
            data[key] = redact(data[key])
    atomic_write(path, lambda f: f.write(json.dumps(data).encode()), private=False)


def local_storage_dir() -> Path:
    """Where Determined's local mode stores checkpoints: ``$XDG_DATA_HOME/determined`` (``~/.local/share/...``)."""
    import appdirs

    return Path(appdirs.user_data_dir("determined"))


def local_checkpoint(uuid: str) -> Path:
    """The directory of checkpoint ``uuid`` in Determined's local storage (it exists only for local runs)."""
    return local_storage_dir() / uuid


RUN_LOG = "checkpoints.jsonl"  # in a local run's --out directory: one line per checkpoint, oldest first


def log_checkpoint(run_dir: str | os.PathLike, checkpoint_dir: str | os.PathLike, batches: int) -> None:
    """Append a complete checkpoint to a run directory's log (what ``--auto-resume`` reads)."""
    import json

    path = Path(run_dir) / RUN_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"checkpoint": str(checkpoint_dir), "batches": int(batches)}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def newest_complete(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint in a run directory's log that is still complete on disk (None if there is none)."""
    import json

    path = Path(run_dir) / RUN_LOG
    if not path.is_file():
        return None
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:  # a line cut by a kill: the checkpoints before it still count
            continue
    for entry in reversed(entries):
        candidate = Path(entry.get("checkpoint", ""))
        if is_checkpoint_dir(candidate) and (candidate / "metadata.json").is_file():
            return candidate
    return None
