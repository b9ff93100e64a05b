"""Unreadable images: the error, the experiment's policy (``data.bad_images``), and the main process's count.

What a bad image does to a run is :class:`BadImagePolicy`, read from the experiment's ``data.bad_images``::

    data:
      bad_images:
        max_fraction: 0.01        # training: skip bad samples, stop when more than 1% of those read are bad
        skip_at_validation: false # validation: a bad image is an error (a smaller set would falsify mAP)

Worker processes cannot share a counter, so what happened while a batch was loaded travels with the batch (a
:class:`LoadReport` under ``batch["skipped_samples"]``) and :class:`BadImageTracker`, in the main process, warns
once per file, counts across all workers and stops the run with one line when more than ``max_fraction`` of the
samples read were bad. The trial reads the per-batch count with :func:`skipped_samples`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from model_hub_mmdet.errors import ConfigError, DataError, UserError

logger = logging.getLogger("model_hub_mmdet")

SKIPPED_KEY = "skipped_samples"  # the per-batch LoadReport, then (in the main process) the skipped count
SKIPPED_INDICES_KEY = "skipped_indices"  # validation with skip_at_validation: dataset indices left out
SETTING = "data.bad_images"


class BadImageError(DataError):
    """An image file that cannot be read or decoded. ``str()`` is one line: the file, then why."""

    def __init__(self, filename: str, reason: str = "") -> None:
        # Both parts live in ``args`` so the error pickles across data-loader worker processes.
        super().__init__(filename, reason)
        self.filename = filename
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.filename}: {self.reason}" if self.reason else str(self.filename)


@dataclass(frozen=True)
class BadImagePolicy:
    """What training and validation do with images that cannot be loaded (see the module docstring)."""

    max_fraction: float = 0.01
    skip_at_validation: bool = False

    @classmethod
    def from_config(cls, setting: Any) -> BadImagePolicy:
        """The policy of an experiment's ``data.bad_images`` (None or missing: the defaults). A wrong key or
        value is a :class:`~model_hub_mmdet.errors.ConfigError` naming it."""
        if setting is None:
            return cls()
        if isinstance(setting, BadImagePolicy):
            return setting
        if not isinstance(setting, Mapping):
            raise ConfigError(
                f"{SETTING} must be a mapping such as {{max_fraction: 0.01, skip_at_validation: false}},"
                f" got {type(setting).__name__}"
            )
        unknown = sorted(str(k) for k in setting if k not in ("max_fraction", "skip_at_validation"))
        if unknown:
            known = "max_fraction, skip_at_validation"
            raise ConfigError(f"{SETTING}: unknown key(s) {', '.join(map(repr, unknown))}; known: {known}")
        fraction = setting.get("max_fraction", cls.max_fraction)
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ConfigError(f"{SETTING}.max_fraction must be a number from 0 to 1 (0.01 = 1%), got {fraction!r}")
        skip = setting.get("skip_at_validation", cls.skip_at_validation)
        if not isinstance(skip, bool):
            raise ConfigError(f"{SETTING}.skip_at_validation must be true or false, got {skip!r}")
        return cls(max_fraction=float(fraction), skip_at_validation=skip)


@dataclass
class LoadReport:
    """What happened while one batch was loaded (in a worker): ``skipped`` ``(file, reason)`` of each bad image
    left out or substituted, ``substituted`` samples that stand in for bad ones, ``failure`` an error to raise,
    ``indices`` dataset indices left out of a validation batch."""

    skipped: list[tuple[str, str]] = field(default_factory=list)
    substituted: int = 0
    failure: UserError | None = None
    indices: list[int] = field(default_factory=list)


class BadImageTracker:
    """Main-process bookkeeping of unreadable images over all of one loader's workers.

    Training: every file is warned about once; the run stops with a :class:`DataError` when the samples that
    needed a substitute exceed ``max_fraction`` of the samples read so far, counted over at least one pass's
    worth (``samples_per_pass``) so that one bad image early in the first pass does not stop a run whose data
    is 99.9% fine (``max_fraction: 0`` stops at the first). Validation: a bad image is an error unless
    ``skip_at_validation``; then each pass logs the count.
    """

    def __init__(
        self, policy: BadImagePolicy, samples_per_pass: int, batch_size: Callable[[Mapping], int] = lambda b: 1
    ) -> None:
        self.policy = policy
        self.batch_size = batch_size  # samples in a collated batch (the generation's collate knows)
        self.samples_per_pass = max(1, int(samples_per_pass))
        self.samples = 0
        self.substituted = 0
        self.warned: set[str] = set()
        self.latest: tuple[str, str] = ("", "")  # the last bad file and why, for the stop message

    def _warn(self, skipped: list[tuple[str, str]], what: str) -> None:
        for name, reason in skipped:
            if name not in self.warned:
                self.warned.add(name)
                logger.warning("%s: skipped an unreadable image: %s: %s", what, name, reason)

    @staticmethod
    def _report(batch: Any) -> LoadReport | None:
        report = batch.get(SKIPPED_KEY) if isinstance(batch, Mapping) else None
        return report if isinstance(report, LoadReport) else None

    def training_batch(self, batch: Any) -> Any:
        """Raise a carried failure, warn about new bad files, count, stop past ``max_fraction``; the batch
        then carries the number of substituted samples under ``skipped_samples``."""
        report = self._report(batch)
        if report is None:
            return batch
        if report.failure is not None:
            raise report.failure
        self._warn(report.skipped, "training")
        if report.skipped:
            self.latest = report.skipped[-1]
        self.samples += self.batch_size(batch)
        self.substituted += report.substituted
        allowed = self.policy.max_fraction * max(self.samples, self.samples_per_pass)
        if self.substituted > allowed:
            name, reason = self.latest
            raise DataError(
                f"{self.substituted} of the {self.samples} training samples read so far had unreadable images, more"
                f" than {SETTING}.max_fraction={self.policy.max_fraction:g} allows (latest: {name}: {reason});"
                " fix or remove those images, or raise the setting"
            )
        batch[SKIPPED_KEY] = report.substituted
        return batch

    def validation_pass(self, batches: Iterator) -> Iterator:
        """Check each batch of one validation pass (raise a carried failure); log what was left out."""
        left_out: list[str] = []
        for batch in batches:
            report = self._report(batch)
            if report is not None:
                if report.failure is not None:
                    raise report.failure
                self._warn(report.skipped, "validation")
                left_out += [name for name, _ in report.skipped]
                batch[SKIPPED_KEY] = len(report.indices)
                batch[SKIPPED_INDICES_KEY] = list(report.indices)
                if set(batch) <= {SKIPPED_KEY, SKIPPED_INDICES_KEY}:  # every image was left out: nothing to predict
                    continue
            yield batch
        if left_out:
            logger.warning(
                "validation left out %d unreadable image(s) (%s.skip_at_validation: true): %s",
                len(left_out), SETTING, ", ".join(left_out[:10]) + (", ..." if len(left_out) > 10 else ""),
            )


def diagnose(read: Callable[[], bytes], decode: Callable[[bytes], Any], where: str) -> str | None:
    """Why an image cannot be loaded, or None when it can: ``read()`` gets its bytes through the generation's
    storage backend, ``decode(data)`` returns the image or None; ``where`` names the settings that build the path
    (for the file-not-found hint)."""
    try:
        data = read()
    except DataError as err:  # the object-store backends: names bucket and key, retries already spent
        return str(err)
    except FileNotFoundError:
        return f"file not found; check {where} and the annotation file's file_name"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    size = len(data or b"")
    if size == 0:
        return "the file is empty (0 bytes); replace it or remove it from the annotation file"
    try:
        img = decode(data)
    except Exception:  # OpenCV/Pillow decoders raise assorted errors on garbage
        img = None
    if img is None:
        return f"not a decodable image ({size} bytes: truncated, or not an image file); replace or remove it"
    return None


def checked_load(
    original: Callable[[Any, Any], Any],
    image_path: Callable[[Any], str | None],
    why: Callable[[Any, str], str | None],
) -> Callable[[Any, Any], Any]:
    """A loading step's method (``original(step, results)``) that raises :class:`BadImageError` naming the file when
    a load fails because of it: ``image_path(results)`` is the file, ``why(step, filename)`` what is wrong with it
    (None: nothing, so the failure is a bug elsewhere and is re-raised unchanged). A storage backend's
    :class:`DataError` names the object already. The error is also of the type the step raised
    (:func:`~model_hub_mmdet.error_types.keeping`)."""
    from model_hub_mmdet.error_types import keeping

    def load(self: Any, results: Any) -> Any:
        try:
            return original(self, results)
        except BadImageError:
            raise
        except UserError as err:
            if not isinstance(err, DataError):  # e.g. a ConfigError for the file client: not this image's fault
                raise
            raise keeping(BadImageError, err, image_path(results) or "?", str(err)) from err
        except Exception as err:
            filename = image_path(results)
            reason = why(self, filename) if filename is not None else None
            if reason is None:
                raise
            raise keeping(BadImageError, err, filename, reason) from err

    return load


def skipped_samples(batch: Any) -> int:
    """How many samples of this batch stand in for (training) or left out (validation) unreadable images.
    The trial reports it as the ``skipped_samples`` training metric."""
    value = batch.get(SKIPPED_KEY, 0) if isinstance(batch, Mapping) else 0
    if isinstance(value, LoadReport):
        return value.substituted + len(value.indices)
    return int(value)


def skipped_indices(batch: Any) -> list[int]:
    """Dataset indices a validation batch left out (``skip_at_validation``); [] otherwise."""
    return list(batch.get(SKIPPED_INDICES_KEY, ())) if isinstance(batch, Mapping) else []
