"""The Determined internals this package relies on, all in one place, checked before they are used (:func:`apply`).

Determined 0.38.1's public API leaves three gaps; each is bridged here and nowhere else:

* **Test mode is invisible to a trial.** ``Trainer.fit(test_mode=True)`` (also ``det experiment create --test``)
  validates one batch per slot, but only the controller knows it is in test mode. The controller class is wrapped
  so that it records the flag on the trial context; :func:`in_test_mode` reads it (the evaluation then covers the
  images that were predicted instead of refusing a partial validation).
* **Local resumes restart the batch counter at 0.** On a cluster ``Trainer.fit`` gives the controller the trial's
  ``steps_completed``; locally it passes 0, so periods and the end of training would count from 0 again after
  a resume. Inside :func:`resumed_at`, the wrapped controller is given the checkpoint's count instead.
* **Local TensorBoard events go to ``./runs/<date>_<host>``, a relative path.** :func:`set_local_tensorboard_dir`
  points the local train context at the run's own folder, or makes the default absolute: the writer's thread
  flushes later, after the working directory may have changed.
* **Local checkpoints copy the working directory, checkpoint folder included.** Local mode copies ``.`` (filtered
  by ``.detignore``) into each checkpoint's ``code/``; when the checkpoint folder lies inside it (run from
  ``$HOME``, or ``XDG_DATA_HOME`` in the project), ``shutil.copytree`` copies the folder into itself until the
  path is too long. :func:`install` wraps ``detignore.make_shutil_ignore`` so that the copy leaves the checkpoint
  folder out.
* **Local checkpoints are written in place.** Determined's shared-fs storage writes ``<base>/<uuid>/`` file by
  file, so a kill (or a full disk) mid-write leaves a directory that looks like a checkpoint. Inside
  :func:`atomic_checkpoints`, a checkpoint is written to ``<base>/.partial-<uuid>/`` and renamed to
  ``<base>/<uuid>/`` only once Determined has written its last file (``metadata.json``); a failed write is removed.

It also holds every other private Determined name the package uses, so a reader finds them all here:

* ``TrainUnit._from_values``: the harness's conversion of an experiment length (:func:`train_unit_from_values`);
* ``PyTorchTrialContext._set_default_gradient_compression`` / ``_set_default_average_aggregated_gradients``: the
  context defaults the harness sets from ``optimizations`` (:func:`set_context_defaults`);
* ``ClusterInfo.trial._config`` / ``._debug``: the experiment config and debug flag of a cluster task
  (:func:`cluster_experiment_config`, :func:`cluster_debug`);
* ``PyTorchTrialContext._aggregation_frequency``, ``_core.train`` and ``DummyTrainContext._tbd_directory``;
* ``PyTorchTrialContext._PyTorchDistributedDataParallel``: the DDP class ``wrap_model`` uses (:func:`ddp_options`).

Importing this module changes nothing. :func:`apply` (called by ``generation.setup()``, the local runner and the
cluster entrypoint) runs :func:`check` first: if the installed Determined no longer has the names and signatures
these rely on, the error is one line naming what changed (a newer Determined needs a new release of this package),
not a traceback mid-run.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import inspect
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import determined
from determined import core, pytorch
from determined.common import detignore
from determined.common.storage import shared

from model_hub_mmdet.errors import SetupError

logger = logging.getLogger("model_hub_mmdet")

TESTED_VERSION = "0.38.1"
_TEST_MODE_ATTR = "_model_hub_mmdet_test_mode"
_CONTROLLER_PARAMS = ("context", "steps_completed", "test_mode")

_original_controller: type = pytorch._PyTorchTrialController
_original_make_ignore: Any = getattr(detignore.make_shutil_ignore, "__wrapped__", detignore.make_shutil_ignore)
_resume_at: int | None = None


def _takes(func: Any, *names: str) -> list[str]:
    params = inspect.signature(func).parameters
    return [n for n in names if n not in params]


def check() -> None:
    """Fail with one line if the installed Determined lacks what the patches need (warn on another version)."""
    gaps = {
        "_PyTorchTrialController no longer takes": _takes(_original_controller.__init__, *_CONTROLLER_PARAMS),
        "DummyTrainContext no longer takes": _takes(core.DummyTrainContext.__init__, "tensorboard_path"),
        "PyTorchTrialContext no longer takes": _takes(pytorch.PyTorchTrialContext.__init__, "aggregation_frequency"),
        "SharedFSStorageManager lacks": [] if hasattr(shared.SharedFSStorageManager, "pre_store_path")
        else ["pre_store_path"],
        "TrainUnit lacks": [] if hasattr(pytorch.TrainUnit, "_from_values") else ["_from_values"],
        "determined.common.detignore no longer takes": _takes(_original_make_ignore, "root_path"),
        "PyTorchTrialContext lacks": [
            n for n in ("_set_default_gradient_compression", "_set_default_average_aggregated_gradients")
            if not hasattr(pytorch.PyTorchTrialContext, n)
        ],
    }
    for what, missing in gaps.items():
        if missing:
            raise SetupError(
                f"determined {determined.__version__}: {what} {', '.join(missing)}; model_hub_mmdet supports"
                f" determined=={TESTED_VERSION} (pip install determined=={TESTED_VERSION})"
            )
    if determined.__version__ != TESTED_VERSION:
        logger.warning(
            "determined %s is installed; model_hub_mmdet is tested with %s", determined.__version__, TESTED_VERSION
        )


class _Controller(_original_controller):  # type: ignore[misc, valid-type]
    """Determined's controller, recording test mode on the context and honouring :func:`resumed_at`."""

    _signature = inspect.signature(_original_controller.__init__)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        bound = self._signature.bind(self, *args, **kwargs)
        if _resume_at is not None:
            bound.arguments["steps_completed"] = _resume_at
        setattr(bound.arguments["context"], _TEST_MODE_ATTR, bool(bound.arguments["test_mode"]))
        super().__init__(*bound.args[1:], **bound.kwargs)


def _make_shutil_ignore(root_path: Path) -> Any:
    """Determined's ``.detignore`` filter for copying ``root_path``, which also leaves out the local checkpoint
    folder (and its ``.partial-`` writes) when it lies inside ``root_path``."""
    from model_hub_mmdet import checkpoints

    ignore = _original_make_ignore(root_path)
    storage = checkpoints.local_storage_dir().resolve()

    def _ignore(path: str, names: list[str]) -> set[str]:
        ignored = set(ignore(path, names))
        if storage.name in names and Path(path).resolve() == storage.parent:
            ignored.add(storage.name)
        return ignored

    return _ignore


_make_shutil_ignore.__wrapped__ = _original_make_ignore  # type: ignore[attr-defined]


def install() -> None:
    """Put the wrapped controller and the checkpoint-folder-aware copy filter in place (idempotent);
    ``Trainer.fit`` and ``util.write_user_code`` look them up at call time."""
    pytorch._PyTorchTrialController = _Controller
    detignore.make_shutil_ignore = _make_shutil_ignore


_checked = False


def apply() -> None:
    """:func:`check` the installed Determined (once), then :func:`install` the controller (idempotent)."""
    global _checked
    if not _checked:
        check()
        _checked = True
    install()


def train_unit_from_values(**values: Any) -> Any:
    """``TrainUnit._from_values``: a length (``batches``/``records``/``epochs``) as the harness converts it."""
    return pytorch.TrainUnit._from_values(**values)


def set_context_defaults(context: Any, gradient_compression: bool, average_aggregated_gradients: bool) -> None:
    """The context defaults the harness sets from ``optimizations`` right after ``pytorch.init``."""
    context._set_default_gradient_compression(gradient_compression)
    context._set_default_average_aggregated_gradients(average_aggregated_gradients)


def cluster_experiment_config(info: Any) -> dict[str, Any]:
    """The experiment config of a cluster task (``det.ClusterInfo``), which has no public accessor."""
    return info.trial._config


def cluster_debug(info: Any) -> bool:
    """Whether the cluster task's experiment asked for debug logging."""
    return bool(info.trial._debug)


def aggregation_frequency(context: Any) -> int:
    """The gradient aggregation the context was created with (``pytorch.init(aggregation_frequency=...)``)."""
    return int(getattr(context, "_aggregation_frequency", 1))


def ddp_options(context: Any, **kwargs: Any) -> None:
    """Arguments for the ``DistributedDataParallel`` that ``context.wrap_model`` builds (mmdet's
    ``find_unused_parameters``); call before ``wrap_model``."""
    context._PyTorchDistributedDataParallel = functools.partial(type(context)._PyTorchDistributedDataParallel, **kwargs)


def in_test_mode(context: Any) -> bool:
    """Whether the trial with this context is being run by ``Trainer.fit(test_mode=True)``."""
    return bool(getattr(context, _TEST_MODE_ATTR, False))


@contextlib.contextmanager
def resumed_at(batches_trained: int) -> Iterator[None]:
    """Within this block, local ``Trainer.fit`` calls start counting at ``batches_trained`` (cluster semantics)."""
    global _resume_at
    install()
    previous, _resume_at = _resume_at, (batches_trained or None)
    try:
        yield
    finally:
        _resume_at = previous


PARTIAL_PREFIX = ".partial-"


@contextlib.contextmanager
def _atomic_store_path(self: Any, dst: str) -> Iterator[Path]:
    final = Path(self.pre_store_path(dst))  # <base>/<uuid>, created empty by Determined
    partial = final.with_name(PARTIAL_PREFIX + final.name)
    final.rmdir()
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    os.replace(partial, final)


@contextlib.contextmanager
def atomic_checkpoints() -> Iterator[None]:
    """Within this block, shared-fs checkpoints (local mode's storage) appear only when complete."""
    original = shared.SharedFSStorageManager.store_path
    shared.SharedFSStorageManager.store_path = _atomic_store_path
    try:
        yield
    finally:
        shared.SharedFSStorageManager.store_path = original


def set_local_tensorboard_dir(context: Any, path: Path | None) -> None:
    """Write a local run's TensorBoard events under ``path`` (no effect on a cluster). ``None``: the usual
    ``./runs/<date>_<host>``, as an absolute path: the writer's thread flushes later, and a relative path would
    follow the process's working directory wherever it has moved by then."""
    train = context._core.train
    if not isinstance(train, core.DummyTrainContext):
        return
    if path is None:
        if train._tbd_directory is None:  # torch's SummaryWriter would pick runs/<date>_<host>, relative
            stamp = f"{datetime.datetime.now():%b%d_%H-%M-%S}_{socket.gethostname()}"
            train._tbd_directory = Path("runs") / stamp
        train._tbd_directory = Path(train._tbd_directory).absolute()
        return
    path.mkdir(parents=True, exist_ok=True)
    train._tbd_directory = path

