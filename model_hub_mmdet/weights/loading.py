"""Load weights safely and warm-start a detector from them, saying what matched.

Trust follows where a file comes from. Downloads from the internet (model zoo, ``http(s)://``, ``torchvision://``,
``open-mmlab://``) are loaded only with ``torch.load(weights_only=True)``: tensors, numbers, strings and containers,
plus the numpy scalars/arrays mmdet's ``meta`` can hold (allow-listed by :mod:`model_hub_mmdet.mmdet2.patches`), never
arbitrary pickled objects. The user's own files (local paths, their ``s3://``/``gs://`` buckets) are tried the
same way first and only fall back to a full unpickle, with a warning, when they hold something more.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import torch

from model_hub_mmdet import checkpoint_schemes
from model_hub_mmdet.checkpoints import STATE_FILE, is_checkpoint_dir, state_file
from model_hub_mmdet.errors import ConfigError, WeightsError
from model_hub_mmdet.weights import zoo
from model_hub_mmdet.weights.download import fetch

logger = logging.getLogger("model_hub_mmdet")

MapLocation = Union[str, torch.device, Callable, None]
_SHOW = 8  # key names quoted in a log line before "..."
_REPORT_KEYS = 20  # key names kept in the returned report


@dataclass(frozen=True)
class WeightsSource:
    """A checkpoint made local: where it came from (as the user wrote it), the local file, and whether to trust it."""

    source: str
    path: Path
    trusted: bool


def load_checkpoint_file(
    path: str | os.PathLike, trusted: bool, source: str | None = None, map_location: MapLocation = "cpu"
) -> Any:
    """``torch.load`` a checkpoint with ``weights_only=True``; a ``trusted`` file that needs more is unpickled in
    full with a warning, an untrusted one raises :class:`WeightsError` naming what was refused."""
    label = source or str(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = str(err).strip().splitlines()[-1] if str(err).strip() else repr(err)
        if not trusted:
            raise WeightsError(
                f"{label} holds pickled objects a safe load refuses ({refused}); downloaded weights are only"
                " loaded as plain tensors: if you trust this file, download it and set"
                " hyperparameters.pretrained_weights to the local path"
            ) from err
        logger.warning(
            "%s is not plain tensors (%s); unpickling it in full because it is your own file", label, refused
        )
        try:
            return torch.load(path, map_location=map_location, weights_only=False)
        except Exception as err2:  # noqa: BLE001 - any unpickling failure means the same to the user
            raise WeightsError(f"{label} is not a PyTorch checkpoint: {err2}") from err2
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise WeightsError(f"{label} is not a readable PyTorch checkpoint: {str(err).splitlines()[0]}") from err


def _is_tensor_mapping(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def extract_state_dict(checkpoint: Any, source: str = "checkpoint") -> OrderedDict:
    """The model weights of a checkpoint in any format met in practice: mmcv/mmdet (``state_dict``), Determined
    (``models_state_dict[0]``), a ``model`` entry, or a bare state dict. A DDP ``module.`` prefix is removed."""
    if not isinstance(checkpoint, Mapping):
        raise WeightsError(f"{source} holds a {type(checkpoint).__name__}, not a checkpoint dict or state dict")
    if "state_dict" in checkpoint:
        state = checkpoint["state_dict"]
    elif "models_state_dict" in checkpoint:
        state = checkpoint["models_state_dict"][0]
    elif _is_tensor_mapping(checkpoint.get("model")):
        state = checkpoint["model"]
    else:
        state = checkpoint
    if not _is_tensor_mapping(state):
        raise WeightsError(f"{source} has no model weights (keys: {', '.join(map(str, list(checkpoint)[:8]))})")
    metadata = getattr(state, "_metadata", None)
    ddp = all(k.startswith("module.") for k in state)
    state = OrderedDict((k[len("module.") :] if ddp else k, v) for k, v in state.items())
    if metadata is not None:  # module versions, read by some modules' _load_from_state_dict
        state._metadata = OrderedDict((_strip_module(k) if ddp else k, v) for k, v in metadata.items())
    return state


def _strip_module(name: str) -> str:
    """DDP's module path ``module.backbone`` -> ``backbone`` (and ``module`` itself -> the root, ``""``)."""
    return "" if name == "module" else name[len("module.") :] if name.startswith("module.") else name


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f", ... ({len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")


def load_state_dict_report(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> dict:
    """Load every tensor of ``state_dict`` whose name and shape match ``model``; log and return what matched, what
    was skipped for a different shape (e.g. a head for another ``num_classes``), what stayed missing and what was
    unexpected. Raises :class:`WeightsError` when nothing matches (a checkpoint of another architecture)."""
    own = model.state_dict()
    mismatched = [
        (k, tuple(v.shape), tuple(own[k].shape)) for k, v in state_dict.items() if k in own and v.shape != own[k].shape
    ]
    skip = {k for k, _, _ in mismatched}
    loadable = OrderedDict((k, v) for k, v in state_dict.items() if k not in skip)
    loadable._metadata = getattr(state_dict, "_metadata", OrderedDict())
    result = model.load_state_dict(loadable, strict=False)
    missing = [k for k in result.missing_keys if k not in skip]
    unexpected = list(result.unexpected_keys)
    # Counted by name: BatchNorm's loader quietly fills a missing num_batches_tracked, so torch's missing_keys
    # would count those as loaded.
    matched = sum(1 for k in own if k in loadable)
    if matched <= 0:
        raise WeightsError(
            f"{source}: none of its {len(state_dict)} tensors match the model's {len(own)}"
            f" (e.g. {_names(list(state_dict)[:3])});"
            " is it a checkpoint of this architecture?"
        )
    logger.info("warm start from %s: loaded %d of the model's %d tensors", source, matched, len(own))
    if mismatched:
        detail = [f"{k} {ck} in checkpoint vs {mine} in model" for k, ck, mine in mismatched]
        logger.warning(
            "warm start: %d tensors skipped because their shapes differ (e.g. another num_classes): %s",
            len(mismatched),
            _names(detail),
        )
    if missing:
        logger.warning(
            "warm start: %d model tensors not in the checkpoint keep their init: %s", len(missing), _names(missing)
        )
    if unexpected:
        logger.warning("warm start: %d checkpoint tensors unused by the model: %s", len(unexpected), _names(unexpected))
    return {
        "source": source,
        "matched": matched,
        "missing": len(missing),
        "unexpected": len(unexpected),
        "mismatched": len(mismatched),
        "mismatched_keys": [k for k, _, _ in mismatched][:_REPORT_KEYS],
        "missing_keys": missing[:_REPORT_KEYS],
        "unexpected_keys": unexpected[:_REPORT_KEYS],
    }


def _download(url: str) -> Path:
    """Fetch an ``http(s)`` URL, rewriting the zoo prefix and checking the hash a zoo file name carries."""
    return fetch(zoo.zoo_url(url), zoo.expected_hash(url))


def _local_path(spec: str, context_dir: str | os.PathLike) -> Path:
    path = Path(os.path.expanduser(spec))
    if not path.is_absolute():
        for base in (Path(context_dir), Path.cwd()):
            if (base / path).exists():
                return (base / path).resolve()
    if is_checkpoint_dir(path):  # a Determined checkpoint directory
        return state_file(path)
    if path.is_file():
        return path
    raise WeightsError(f"{spec} does not exist (looked in {context_dir} and {Path.cwd()}); check the path")


def resolve_weights(
    spec: str, context_dir: str | os.PathLike = ".", file_client_args: Mapping[str, Any] | None = None
) -> WeightsSource:
    """Make a weights reference local: a path (file, or a Determined checkpoint dir), ``http(s)://``, ``s3://``,
    ``gs://``, ``torchvision://``, ``open-mmlab://`` or ``mmcls://``. Remote files go through the shared cache;
    ``s3://``/``gs://`` with the object-store settings of ``file_client_args`` (the experiment's
    ``data.file_client_args``) when its backend matches, see :mod:`model_hub_mmdet.weights.download`."""
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise ConfigError(f"weights must be a path or URL, got {spec!r}")
    spec = str(spec).strip()
    scheme, sep, rest = spec.partition("://")
    if not sep:
        path = _local_path(spec, context_dir)
        if path.is_dir():
            raise WeightsError(f"{spec} is a directory without {STATE_FILE}; point at a .pth file")
        return WeightsSource(spec, path, trusted=True)
    if scheme in ("http", "https"):
        return WeightsSource(spec, _download(spec), trusted=False)
    if scheme in ("s3", "gs"):
        return WeightsSource(spec, fetch(spec, file_client_args=file_client_args), trusted=True)
    if scheme in ("torchvision", "modelzoo"):
        return WeightsSource(spec, _download(zoo.torchvision_url(rest)), trusted=False)
    if scheme in ("open-mmlab", "openmmlab"):
        url = zoo.openmmlab_url(rest)
        if url.startswith(("http://", "https://")):
            return WeightsSource(spec, _download(url), trusted=False)
        home = checkpoint_schemes.installed().openmmlab_home()
        return WeightsSource(spec, _local_path(os.path.join(home, url), context_dir), trusted=True)
    if scheme == "mmcls":
        return WeightsSource(spec, _download(zoo.mmcls_url(rest)), trusted=False)
    raise ConfigError(
        f"weights {spec}: unsupported scheme {scheme}://; use a path, http(s)://, s3://, gs://, torchvision://,"
        " open-mmlab:// or mmcls://"
    )


def _choose(cfg: Any, hparams: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reference, where it was set) of the weights to start from, or None. Hyperparameters beat the config."""
    use_pretrained = bool(hparams.get("use_pretrained"))
    explicit = hparams.get("pretrained_weights")
    load_from = cfg.get("load_from")
    if use_pretrained and explicit:
        raise ConfigError(
            "hyperparameters.use_pretrained and hyperparameters.pretrained_weights are both set; keep one"
        )
    chosen = None
    if explicit:
        chosen = (str(explicit), "hyperparameters.pretrained_weights")
    elif use_pretrained:
        entry = zoo.zoo_entry_for_config(cfg.get("filename") or getattr(cfg, "filename", None))
        chosen = (entry.weights, f"model zoo entry {entry.name}")
    elif load_from:
        chosen = (str(load_from), "load_from")
    if chosen and load_from and chosen[1] != "load_from":
        logger.info("config load_from %s ignored: %s takes precedence", load_from, chosen[1])
    return chosen


def warm_start(
    model: torch.nn.Module,
    cfg: Any,
    hparams: Mapping[str, Any],
    context_dir: str | os.PathLike = ".",
    file_client_args: Mapping[str, Any] | None = None,
) -> dict | None:
    """Load starting weights into ``model`` (built and ``init_weights()``-ed, not yet wrapped), from, in order of
    precedence, ``hparams["pretrained_weights"]``, the model zoo checkpoint of ``cfg.filename`` when
    ``hparams["use_pretrained"]``, or the config's ``load_from``. ``file_client_args``: the experiment's
    ``data.file_client_args``, whose S3/GCS settings (endpoint, profile, retries, cache) also serve ``s3://`` /
    ``gs://`` weights. Returns the match report, or None when no weights were asked for. Safe on every process:
    downloads are shared per machine."""
    chosen = _choose(cfg, hparams or {})
    if chosen is None:
        return None
    spec, origin = chosen
    logger.info("warm start: %s from %s", origin, spec)
    src = resolve_weights(spec, context_dir, file_client_args)
    checkpoint = load_checkpoint_file(src.path, src.trusted, spec)
    report = load_state_dict_report(model, extract_state_dict(checkpoint, spec), spec)
    report["origin"] = origin
    report["path"] = str(src.path)
    return report
