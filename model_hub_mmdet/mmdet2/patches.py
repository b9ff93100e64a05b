"""The registry of every change this package makes to third-party code for MMDetection 2.x.

The stack (torch 2.14, numpy 2, mmcv-full 1.7, mmdet 2.28) needs a few fixes, and the package adds its one-line
data checks to two mmdet methods. Each is a :class:`Patch` in :data:`REGISTRY` with why it exists, the versions it
was checked against, and a check that what it changes is still what it was written for (the fingerprint of the
patched function's source, or the presence of what it replaces). Nothing is patched at import:
:func:`apply` (called by ``model_hub_mmdet.generation.setup()``, i.e. by the trial, the CLI and the runners) first
runs every check, and a patched function that changed stops the run in one line naming the package and version.

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
  every other numpy call passes through.
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
  passes through.
* **One-line data errors.** ``LoadImageFromFile.__call__`` raises ``BadImageError`` naming the file
  (:mod:`.datasets.robust`), and ``CocoDataset.load_annotations`` an ``AnnotationError`` naming the file and what
  mmdet cannot train on, or logs one warning line counting what it tolerates (:mod:`.datasets.annotations`).
* **mmcv's v2.0 banner.** ``import mmcv`` warns about a release that happened years ago on every process
  (and every data-loader worker); it is silenced by message, nothing else is.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from model_hub_mmdet import patch_registry
from model_hub_mmdet.patch_registry import (  # noqa: F401  (the generation-neutral fixes, re-exported for tests)
    Patch,
    RaggedArrayNumpy,
    allow_numpy_in_weights_only_load,
    fingerprint,
    numpy_safe_globals,
    restore_numpy_aliases,
    silence_cpp_extension_cuda_notice,
    torch_has_safe_globals,
)


def silence_mmcv_banner() -> None:
    """Drop mmcv 1.x's "MMCV will release v2.0.0" import-time warning."""
    warnings.filterwarnings("ignore", message="On January 1, 2023, MMCV will release v2.0.0")


def keep_root_log_handlers() -> None:
    """Stop mmcv's ``get_logger`` from raising root handlers to ERROR (see the module notes)."""
    from mmcv.utils import logging as mmcv_logging

    for name in ("mmcv", "mmdet"):
        mmcv_logging.logger_initialized.setdefault(name, True)


def ragged_arrays_in_mmdet_recall() -> None:
    """Let mmdet's ``eval_recalls`` stack per-image IoU matrices of different shapes (see the module notes)."""
    from mmdet.core.evaluation import recall

    if not isinstance(recall.np, RaggedArrayNumpy):
        recall.np = RaggedArrayNumpy()


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


def _install_image_check() -> None:
    from model_hub_mmdet.mmdet2.datasets import robust

    robust.install()


def _install_annotation_check() -> None:
    from model_hub_mmdet.mmdet2.datasets import annotations

    annotations.install()


def _mmcv_has_logger_registry() -> str | None:
    from mmcv.utils import logging as mmcv_logging

    return None if isinstance(getattr(mmcv_logging, "logger_initialized", None), dict) else "mmcv.utils.logging" \
        " has no logger_initialized dict"


CHECKED = "mmdet 2.28.2, mmcv-full 1.7.2, torch 2.14.1, numpy 2.4"

REGISTRY: tuple[Patch, ...] = (
    Patch("numpy-aliases", "numpy 2 removed np.int/np.float/np.bool/np.object that mmdet 2.28 and mmcv 1.7 use",
          CHECKED, "numpy", restore_numpy_aliases),
    Patch("mmcv-banner", "mmcv 1.7 warns about its v2.0 release at every import", CHECKED, "mmcv-full",
          silence_mmcv_banner),
    Patch("third-party-warnings", "mmdet's bbox-key and pathspec's gitwildmatch warnings at every validation",
          CHECKED, "mmdet", quiet_third_party_warnings),
    Patch("cpp-extension-notice", "torch.utils.cpp_extension logs a CUDA notice on every CPU run", CHECKED, "torch",
          silence_cpp_extension_cuda_notice),
    Patch("weights-only-numpy", "torch >= 2.6 loads with weights_only=True, which refuses numpy data in"
          " Determined's and mmdet's checkpoints", CHECKED, "torch", allow_numpy_in_weights_only_load,
          requires=torch_has_safe_globals),
    Patch("root-log-handlers", "mmcv's get_logger raises every root handler to ERROR", CHECKED, "mmcv-full",
          keep_root_log_handlers, targets={"mmcv.utils.logging:get_logger": "3f219439f7f2"},
          requires=_mmcv_has_logger_registry),
    Patch("ragged-recall", "mmdet's eval_recalls builds ragged arrays that numpy >= 1.24 refuses", CHECKED, "mmdet",
          ragged_arrays_in_mmdet_recall, targets={"mmdet.core.evaluation.recall:eval_recalls": "084c55bf752f"}),
    Patch("coco-warning-filters", "CocoDataset.evaluate resets every warning filter of the process", CHECKED,
          "mmdet", keep_warning_filters_in_mmdet_coco,
          targets={"mmdet.datasets.coco:CocoDataset.evaluate": "b5ad41d6121e"}),
    Patch("bad-image-errors", "LoadImageFromFile fails on a bad image with an error that names no file", CHECKED,
          "mmdet", _install_image_check,
          targets={"mmdet.datasets.pipelines.loading:LoadImageFromFile.__call__": "70efc3c01e50"}),
    Patch("bad-annotation-errors", "CocoDataset.load_annotations fails on a bad file with a bare traceback and drops"
          " what it tolerates without a word; the check mirrors _parse_ann_info and _filter_imgs",
          CHECKED, "mmdet", _install_annotation_check,
          targets={"mmdet.datasets.coco:CocoDataset.load_annotations": "10e80919a1dd",
                   "mmdet.datasets.coco:CocoDataset._parse_ann_info": "8e937e2d0168",
                   "mmdet.datasets.coco:CocoDataset._filter_imgs": "716eeb5f113c"}),
)


def check(registry: Iterable[Patch] = REGISTRY) -> None:
    """Raise one :class:`~model_hub_mmdet.errors.SetupError` line for the first patch that no longer fits."""
    patch_registry.check(registry)


def apply() -> None:
    """Check every patch, then apply them all once (idempotent)."""
    # The checks import mmcv and mmdet: their import-time noise is dealt with first; mmcv's logger registry before
    # mmdet's modules are imported, as some call mmcv's get_logger at import.
    patch_registry.apply(REGISTRY, first=(restore_numpy_aliases, silence_mmcv_banner,
                                          silence_cpp_extension_cuda_notice, keep_root_log_handlers))
