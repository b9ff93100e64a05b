"""The few fixes this stack (torch 2.14, numpy 2, mmcv-full 1.7, mmdet 2.28) needs, applied once at import.

Each fix is the narrowest one that works, and each is exercised by ``tests/test_compat.py``:

* **numpy 2 aliases.** numpy 2 removed ``np.int``/``np.float``/``np.bool``/``np.object``; mmdet 2.28 still calls
  ``labels.astype(np.int)`` (``CustomDataset.get_cat_ids``, used by ``ClassBalancedDataset``) and
  ``dtype=np.int`` (``IoUBalancedNegSampler``, Libra R-CNN), and mmcv's ``pixel_group`` uses ``np.float``.
  The aliases are restored to the builtins they always meant, only when missing.
* **torch.load ``weights_only=True``.** Since torch 2.6 ``torch.load`` refuses any pickled global that is not
  allow-listed. Determined stores numpy RNG state in its checkpoints, and mmdet checkpoints can hold numpy
  scalars/arrays in ``meta``. Instead of turning the safe loader off, the numpy array/dtype/scalar
  reconstructors are allow-listed, so Determined's resume and mmcv's ``load_checkpoint`` keep loading with
  ``weights_only=True``. Nothing executable is allowed: object arrays still need globals that stay refused.
* **torch's "No CUDA runtime is found" line.** ``import mmcv.ops`` loads ``torch.utils.cpp_extension``, whose
  import logs a warning whenever the CUDA toolkit is on disk but no GPU is visible (every CPU run of the CUDA
  torch build). Only that logger's warnings are dropped.
* **Ragged arrays in mmdet's recall.** ``eval_recalls`` (the ``proposal_fast`` metric) stacks per-image IoU
  matrices of different shapes with ``np.array(list)``; numpy >= 1.24 refuses ragged input unless
  ``dtype=object``. That module's ``np`` is given an ``array`` that builds the object array numpy 1.x built;
  every other numpy call passes through. Applied by :mod:`model_hub_mmdet.evaluation` (which imports mmdet).
* **mmcv's loggers silence everyone else's.** The first ``mmcv.utils.get_logger(name)`` of each name (called by
  ``init_weights``, ``print_log`` and mmdet's ``get_root_logger``) sets every root ``StreamHandler`` to ERROR, to
  avoid duplicate lines; that hides Determined's own INFO lines (``det experiment create --test`` then never prints
  "The test experiment passed."). ``mmcv`` and ``mmdet`` are registered as initialised loggers instead, so
  their messages propagate to the root handlers like any library's and nothing is silenced.
* **Third-party warnings at every validation and checkpoint.** mmdet's COCO evaluation warns on every call that
  the ``bbox`` key of segm results was removed in v2.12, and ``pathspec`` (used by Determined to read
  ``.detignore`` when a checkpoint copies the working directory) warns that its ``gitwildmatch`` pattern is
  deprecated. Neither is actionable for a user; each is ignored by its message or category and its module only.
* **mmdet's COCO evaluation resets everyone's warning filters.** ``CocoDataset.evaluate`` calls
  ``warnings.simplefilter('once')`` before its ``bbox`` warning, which puts a catch-all filter in front of every
  filter of the process: from the first segm validation on, the two warnings above (and any other library's)
  printed again. That module's ``warnings`` is given a ``simplefilter`` that changes nothing; everything else
  passes through. Applied by :mod:`model_hub_mmdet.evaluation`.
* **mmcv's v2.0 banner.** ``import mmcv`` warns about a release that happened years ago on every process
  (and every data-loader worker); it is silenced by message, nothing else is.
"""

from __future__ import annotations

import warnings

import numpy as np

_NUMPY_ALIASES = {"int": int, "float": float, "bool": bool, "object": object, "str": str, "long": int}


def restore_numpy_aliases() -> list[str]:
    """Re-create numpy's removed builtin aliases that mmdet 2.28 / mmcv 1.7 still use. Returns what was added."""
    added = []
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)
            added.append(name)
    return added


def numpy_safe_globals() -> list:
    """The numpy reconstructors a plain-data pickle of arrays, dtypes and scalars needs."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    found = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        found += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType") and n != "StringDType"]
    return found


def allow_numpy_in_weights_only_load() -> None:
    """Allow-list numpy plain data for ``torch.load(weights_only=True)`` (torch >= 2.4)."""
    import torch.serialization

    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:
        add(numpy_safe_globals())


def silence_cpp_extension_cuda_notice() -> None:
    """Keep ``torch.utils.cpp_extension``'s import-time CUDA_HOME notice out of CPU runs."""
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def silence_mmcv_banner() -> None:
    """Drop mmcv 1.x's "MMCV will release v2.0.0" import-time warning."""
    warnings.filterwarnings("ignore", message="On January 1, 2023, MMCV will release v2.0.0")


class _RaggedArrayNumpy:
    """numpy, except that ``array`` of a ragged list of arrays gives a 1-D object array (numpy 1.x's result)."""

    def __getattr__(self, name: str):
        return getattr(np, name)

    @staticmethod
    def array(obj, *args, **kwargs):
        try:
            return np.array(obj, *args, **kwargs)
        except ValueError:
            if args or kwargs or not isinstance(obj, list):
                raise
            out = np.empty(len(obj), dtype=object)
            for i, item in enumerate(obj):
                out[i] = item
            return out


def keep_root_log_handlers() -> None:
    """Stop mmcv's ``get_logger`` from raising root handlers to ERROR (see the module notes)."""
    from mmcv.utils import logging as mmcv_logging

    for name in ("mmcv", "mmdet"):
        mmcv_logging.logger_initialized.setdefault(name, True)


def ragged_arrays_in_mmdet_recall() -> None:
    """Let mmdet's ``eval_recalls`` stack per-image IoU matrices of different shapes (see the module notes)."""
    from mmdet.core.evaluation import recall

    if not isinstance(recall.np, _RaggedArrayNumpy):
        recall.np = _RaggedArrayNumpy()


class _FilterKeepingWarnings:
    """``warnings``, except that ``simplefilter`` leaves the process's filters alone."""

    def __getattr__(self, name: str):
        return getattr(warnings, name)

    @staticmethod
    def simplefilter(*args, **kwargs) -> None:
        return None


def keep_warning_filters_in_mmdet_coco() -> None:
    """Stop ``CocoDataset.evaluate`` from putting ``simplefilter('once')`` before every filter (module notes)."""
    from mmdet.datasets import coco

    if not isinstance(coco.warnings, _FilterKeepingWarnings):
        coco.warnings = _FilterKeepingWarnings()


def quiet_third_party_warnings() -> None:
    """Ignore the two warnings every local run printed at each validation/checkpoint (see the module notes)."""
    warnings.filterwarnings("ignore", message='The key "bbox" is deleted', category=UserWarning,
                            module=r"mmdet\.datasets\.coco")
    warnings.filterwarnings("ignore", message=r"GitWildMatchPattern \('gitwildmatch'\) is deprecated",
                            category=DeprecationWarning, module=r"pathspec(\.|$)")


_applied = False


def apply() -> None:
    """Apply every fix once (idempotent). Called by ``import model_hub_mmdet``, before mmcv is imported."""
    global _applied
    if _applied:
        return
    restore_numpy_aliases()
    silence_mmcv_banner()
    quiet_third_party_warnings()
    silence_cpp_extension_cuda_notice()
    allow_numpy_in_weights_only_load()
    keep_root_log_handlers()
    _applied = True
