"""The registry of every change this package makes to third-party code for MMDetection 3.x.

The stack (torch 2.14, numpy 2, mmcv 2.1, mmengine 0.10.7, mmdet 3.3) needs a few fixes, and the package adds its
one-line data checks to two loading steps. Each is a :class:`~model_hub_mmdet.patch_registry.Patch` in
:data:`REGISTRY` with why it exists, the versions it was checked against, and a check that what it changes is still
what it was written for (the fingerprint of the patched function's source, or the presence of what it replaces).
Nothing is patched at import: :func:`apply` (called by ``model_hub_mmdet.generation.setup()``, i.e. by the trial,
the CLI and the runners) first runs every check, and a patched function that changed stops the run in one line
naming the package and version.

* **mmengine's checkpoint loaders and ``weights_only``.** mmengine 0.10.7 calls ``torch.load`` without
  ``weights_only`` in every ``CheckpointLoader`` scheme; torch >= 2.6 then refuses any checkpoint with more than
  tensors in it (mmengine's own checkpoints hold ``HistoryBuffer`` objects). Instead of turning the safe loader off
  (mmengine's unreleased fix), the loaders are replaced by the core's cached, trust-aware one
  (:mod:`.checkpoint_schemes`): downloads load as plain tensors only, the user's own files fully with a warning.
* **numpy data in ``weights_only`` loads.** Determined's checkpoints hold numpy RNG state; the numpy array, dtype
  and scalar reconstructors are allow-listed so its resume keeps ``weights_only=True``.
* **numpy 2 aliases.** mmcv 2.1's ``pixel_group`` uses ``np.float``, mmdet 3.3's YTVIS evaluation ``np.float`` and
  its GLIP text transforms ``np.long``; the aliases are restored to the builtins they meant, only when missing.
* **Ragged arrays in mmdet's recall.** ``eval_recalls`` (CocoMetric's ``proposal_fast``) stacks per-image IoU
  matrices of different shapes with ``np.array(list)``, which numpy >= 1.24 refuses; that module's ``np`` builds
  the object array numpy 1.x built.
* **Object-store URIs as absolute paths.** ``mmengine.utils.is_abs`` knows ``s3://`` and ``http(s)://`` only, so a
  dataset prepends its ``data_root`` to a ``gs://`` ``ann_file`` or image prefix. The datasets' ``is_abs`` also
  accepts every scheme this package registers (``gs://``, ``gcs://``).
* **torch's "No CUDA runtime is found" line** when mmcv's ops load ``torch.utils.cpp_extension`` on a CPU run.
* **Warnings mmdet 3.3's own code triggers on every run** of some models, which say nothing to the user: torch
  >= 2.4's ``FutureWarning`` that ``torch.cuda.amp.autocast(...)`` is deprecated (CSPNeXt's SE layer and
  CSPDarknet call it: RTMDet, YOLOX), and the ``UserWarning`` that ``torch.meshgrid`` will need ``indexing=``
  (mmdet's prior generators rely on today's default, ``ij``). Ignored by category, message and the module
  that raises them; any other warning still shows.
* **One-line data errors.** ``LoadImageFromFile.transform`` raises ``BadImageError`` naming the file (so the
  ``data.bad_images`` policy can substitute it), and ``CocoDataset.load_data_list`` a ``DataError`` naming the
  annotation file and what is wrong with it (:mod:`.datasets`).
"""

from __future__ import annotations

import warnings

from model_hub_mmdet import patch_registry
from model_hub_mmdet.patch_registry import (
    Patch,
    RaggedArrayNumpy,
    allow_numpy_in_weights_only_load,
    restore_numpy_aliases,
    silence_cpp_extension_cuda_notice,
    torch_has_safe_globals,
)
from model_hub_mmdet.patch_registry import check as check_registry

CHECKED = "mmdet 3.3.0, mmengine 0.10.7, mmcv 2.1.0, torch 2.14.1, numpy 2.4"
OBJECT_STORE_SCHEMES = ("gs://", "gcs://", "s3://", "http://", "https://")


def register_checkpoint_loaders() -> None:
    """Route every ``CheckpointLoader`` scheme through the core's safe, cached loader (see the module notes)."""
    from model_hub_mmdet.mmdet3.checkpoint_schemes import register_checkpoint_schemes

    register_checkpoint_schemes()


def ragged_arrays_in_mmdet_recall() -> None:
    """Let mmdet's ``eval_recalls`` stack per-image IoU matrices of different shapes (see the module notes)."""
    from mmdet.evaluation.functional import recall

    if not isinstance(recall.np, RaggedArrayNumpy):
        recall.np = RaggedArrayNumpy()


def is_abs(path: str) -> bool:
    """``mmengine.utils.is_abs``, with the object-store schemes this package registers counted as absolute."""
    from mmengine.utils.path import is_abs as mmengine_is_abs

    return str(path).startswith(OBJECT_STORE_SCHEMES) or mmengine_is_abs(path)


def object_store_paths_are_absolute() -> None:
    """Make mmengine's and mmdet's datasets treat ``gs://`` paths as absolute (see the module notes)."""
    from mmengine.dataset import base_dataset

    base_dataset.is_abs = is_abs


def quiet_third_party_warnings() -> None:
    """Ignore the two warnings mmdet 3.3's models trigger in torch on every run (see the module notes)."""
    warnings.filterwarnings("ignore", message=r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated",
                            category=FutureWarning, module=r"mmdet\.")
    warnings.filterwarnings("ignore", message=r"torch\.meshgrid: in an upcoming release", category=UserWarning,
                            module=r"torch\.functional")


def _install_image_check() -> None:
    from model_hub_mmdet.mmdet3.datasets import install_image_check

    install_image_check()


def _install_annotation_check() -> None:
    from model_hub_mmdet.mmdet3.datasets import install_annotation_check

    install_annotation_check()


REGISTRY: tuple[Patch, ...] = (
    Patch("numpy-aliases", "numpy 2 removed np.float/np.long that mmcv 2.1 and mmdet 3.3 still use", CHECKED,
          "numpy", restore_numpy_aliases),
    Patch("cpp-extension-notice", "torch.utils.cpp_extension logs a CUDA notice on every CPU run", CHECKED, "torch",
          silence_cpp_extension_cuda_notice),
    Patch("weights-only-numpy", "torch >= 2.6 loads with weights_only=True, which refuses the numpy data in"
          " Determined's checkpoints", CHECKED, "torch", allow_numpy_in_weights_only_load,
          requires=torch_has_safe_globals),
    Patch("checkpoint-loaders", "mmengine's checkpoint loaders call torch.load without weights_only, which torch"
          " >= 2.6 turns into a refusal of anything but tensors", CHECKED, "mmengine", register_checkpoint_loaders,
          targets={"mmengine.runner.checkpoint:load_from_local": "aa24a2a99a65",
                   "mmengine.runner.checkpoint:load_from_http": "ed82c56c8e37",
                   "mmengine.runner.checkpoint:load_from_ceph": "dabd19a85fec",
                   "mmengine.runner.checkpoint:load_from_openmmlab": "c17b71970067",
                   "mmengine.runner.checkpoint:CheckpointLoader._register_scheme": "508a847831be"}),
    Patch("object-store-paths", "mmengine's is_abs does not know gs://, so datasets prepend data_root to it",
          CHECKED, "mmengine", object_store_paths_are_absolute,
          targets={"mmengine.utils.path:is_abs": "bcc72a29bbe5",
                   "mmengine.dataset.base_dataset:BaseDataset._join_prefix": "70ffd34aca00"}),
    Patch("ragged-recall", "mmdet's eval_recalls builds ragged arrays that numpy >= 1.24 refuses", CHECKED, "mmdet",
          ragged_arrays_in_mmdet_recall, targets={"mmdet.evaluation.functional.recall:eval_recalls": "1cf4776f27ce"}),
    Patch("third-party-warnings", "mmdet 3.3 calls torch.cuda.amp.autocast and torch.meshgrid in ways torch >= 2.4"
          " warns about on every run", CHECKED, "mmdet", quiet_third_party_warnings),
    Patch("bad-image-errors", "LoadImageFromFile fails on a bad image with an AssertionError or a bare OSError",
          CHECKED, "mmcv", _install_image_check,
          targets={"mmcv.transforms.loading:LoadImageFromFile.transform": "16a73f84c39f"}),
    Patch("bad-annotation-errors", "CocoDataset.load_data_list fails on a bad annotation file with a bare traceback",
          CHECKED, "mmdet", _install_annotation_check,
          targets={"mmdet.datasets.coco:CocoDataset.load_data_list": "58ed8669c18d",
                   "mmdet.datasets.coco:CocoDataset.filter_data": "0f603fc4819d"}),
)


def check() -> None:
    """Raise one ``SetupError`` line for the first patch of :data:`REGISTRY` that no longer fits."""
    check_registry(REGISTRY)


def apply() -> None:
    """Check every patch, then apply them all once (idempotent)."""
    # The checks import mmcv and mmdet: their import-time noise is dealt with first.
    patch_registry.apply(REGISTRY, first=(restore_numpy_aliases, silence_cpp_extension_cuda_notice))
