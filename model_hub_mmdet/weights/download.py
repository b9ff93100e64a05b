"""Download weights once per machine into the shared cache.

``fetch(uri)`` returns a local path for ``http(s)://``, ``s3://`` and ``gs://`` URIs. Everything lands below the
one cache root, ``$MODEL_HUB_MMDET_CACHE`` (default ``$XDG_CACHE_HOME/model_hub_mmdet``, i.e.
``~/.cache/model_hub_mmdet``; see :mod:`model_hub_mmdet._fs`).

**HTTP(S)** (the model zoo, backbones), cached in ``weights/`` under the root, keyed by URL (zoo files never
change: their name carries their hash):

* **One download per machine.** Every process (all ranks of a trial, several trials) takes a file lock on the
  cache entry; the first downloads into ``<entry>.part`` and publishes with an atomic rename, the others wait and
  then find the file. A reader never sees a half-written file.
* **Resume and retry.** A dropped connection, a 5xx or a 429 is retried with the storage backends' policy
  (:class:`~model_hub_mmdet.storage.retry.RetryPolicy`: jittered exponential backoff, here from 1 s up to
  ``MAX_BACKOFF_S``; ``$MODEL_HUB_MMDET_DOWNLOAD_RETRIES`` retries after the first attempt, default 5) and resumed
  with a ``Range`` request from the bytes already in ``.part`` (also those left by a killed process).
* **Hash check.** When an expected sha256 prefix is given (zoo files), the finished file must match it, or it is
  deleted and :class:`~model_hub_mmdet.errors.WeightsError` names both hashes.

**S3 and GCS** go through the same backends as the data (:mod:`model_hub_mmdet.storage`): the same client
settings, retry policy, error messages and cache (``storage/`` under the root; files there are never evicted).
The object's ETag (S3) or generation (GCS) is part of the cache entry, so an overwritten object is fetched again.
The settings, so that weights on MinIO behave like data on MinIO:

* the experiment's ``data.file_client_args`` when its ``backend`` matches the URI's scheme (``s3`` for ``s3://``,
  ``gcs`` for ``gs://``): ``endpoint_url``, ``region_name``, ``profile_name``, ``anonymous``, ``project``,
  ``emulator_host``, timeouts, ``retries``, ``cache_dir``... All but the keys that name objects (``bucket_name``,
  ``prefix``: the URI names bucket and key) and those of the data loader and its cache (``prefetch``,
  ``prefetch_threads``, ``cache``, ``cache_size``: weights are always cached). The trial passes them to
  :func:`~model_hub_mmdet.weights.warm_start`;
* otherwise, and for ``init_cfg`` checkpoints (which mmcv loads without the experiment), the standard
  environment the data backends also read: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``,
  ``AWS_DEFAULT_REGION`` and the AWS credential chain (boto3); ``STORAGE_EMULATOR_HOST`` and Application Default
  Credentials (GCS). ``gs://`` weights are read anonymously (public buckets) when no Google credentials are found,
  unless ``anonymous`` says otherwise.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, Callable
from urllib.parse import urlsplit

from filelock import FileLock

from model_hub_mmdet._fs import CACHE_ENV, cache_root
from model_hub_mmdet.errors import DataError, WeightsError
from model_hub_mmdet.storage.base import ObjectStoreBackend
from model_hub_mmdet.storage.gcs import GCSBackend
from model_hub_mmdet.storage.retry import RETRY, RetryPolicy
from model_hub_mmdet.storage.s3 import S3Backend

logger = logging.getLogger("model_hub_mmdet")

RETRIES_ENV = "MODEL_HUB_MMDET_DOWNLOAD_RETRIES"
CHUNK = 1 << 20
TIMEOUT_S = 60.0
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0

# URI scheme -> the storage backend that reads it, as data.file_client_args.backend names it.
_STORES: dict[str, type[ObjectStoreBackend]] = {"s3": S3Backend, "gs": GCSBackend}
_BACKEND_NAMES = {"s3": "s3", "gs": "gcs"}
# data.file_client_args keys that name objects or serve only the data loader and its cache.
_DATA_ONLY = frozenset({"backend", "bucket_name", "prefix", "key_prefix", "prefetch", "prefetch_threads", "cache",
                        "cache_size"})
_CHECK_WEIGHTS = "check the weights URI (hyperparameters.pretrained_weights, load_from or an init_cfg checkpoint)"


def cache_dir() -> Path:
    """The cache of HTTP(S) weights: ``weights/`` under the cache root (``$MODEL_HUB_MMDET_CACHE``)."""
    return cache_root() / "weights"


def _safe_parts(*parts: str) -> Path:
    """Join URI pieces into a relative cache path that cannot escape the cache (no ``..``, no absolute parts)."""
    cleaned = []
    for part in parts:
        for seg in part.split("/"):
            if seg in ("", ".", ".."):
                continue
            cleaned.append(re.sub(r"[^A-Za-z0-9._+=@-]", "_", seg))
    if not cleaned:
        raise WeightsError("empty weights URI")
    return Path(*cleaned)


def cache_path(url: str) -> Path:
    """Where an HTTP(S) ``url`` is cached: ``<cache>/<host>/<path>`` (a query string adds a hash to the name)."""
    parts = urlsplit(url)
    rel = _safe_parts(parts.netloc, parts.path)
    if parts.query:
        rel = rel.with_name(f"{hashlib.sha256(parts.query.encode()).hexdigest()[:8]}-{rel.name}")
    return cache_dir() / rel


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class _Progress:
    """Download progress: a tqdm bar on a terminal, else a log line every 10% (Determined's logs are no tty)."""

    def __init__(self, label: str, total: int | None, done: int) -> None:
        self.label, self.total, self.done = label, total, done
        self.next_log = 0.1
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=label, leave=False)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.total and self.done / self.total >= self.next_log:
            logger.info("downloading %s: %d%% of %.1f MB", self.label, 100 * self.done // self.total, self.total / 1e6)
            self.next_log = (int(10 * self.done / self.total) + 1) / 10

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Retryable(Exception):
    """A transient failure: the download continues from what is already on disk."""


def _offline_error(url: str, reason: object, dest: Path) -> WeightsError:
    host = urlsplit(url).netloc
    return WeightsError(
        f"cannot reach {host} to download {url} ({reason}); if this machine is offline, download the file"
        f" elsewhere and set hyperparameters.pretrained_weights (or the config's load_from) to its local path,"
        f" or copy it to {dest}"
    )


def _open(url: str, have: int) -> http.client.HTTPResponse:
    headers = {"User-Agent": "model_hub_mmdet"}
    if have:
        headers["Range"] = f"bytes={have}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)


def _http_attempt(url: str, part: Path, label: str) -> None:
    """One attempt: continue ``part`` from its current size; raise :class:`_Retryable` on transient failures."""
    have = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, have)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # our range starts past the end: the part is stale or complete
            part.unlink()
            raise _Retryable("range not satisfiable; starting over") from err
        if err.code >= 500 or err.code == 429:
            raise _Retryable(f"HTTP {err.code}") from err
        raise WeightsError(f"downloading {url} failed: HTTP {err.code} {err.reason}; check the URL") from err
    except urllib.error.URLError as err:
        if isinstance(err.reason, socket.gaierror):
            raise _offline_error(url, err.reason, part.with_suffix("")) from err
        raise _Retryable(str(err.reason)) from err
    except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise _Retryable(repr(err)) from err
    with resp:
        if have and resp.status == 206:
            mode = "ab"
        else:  # the server ignored the Range header: start over
            mode, have = "wb", 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        progress = _Progress(label, total, have)
        try:
            with open(part, mode) as out:
                _copy(resp, out, progress.update)
        except _Retryable:
            raise
        except OSError as err:  # reading errors are _Retryable, so this is the disk
            raise WeightsError(f"cannot write {part}: {err.strerror or err}; free space or set ${CACHE_ENV}") from err
        finally:
            progress.close()
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Retryable(f"connection closed after {size} of {total} bytes")


def _copy(src: BinaryIO, dst: BinaryIO, on_chunk: Callable[[int], None]) -> None:
    while True:
        try:
            block = src.read(CHUNK)
        except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
            raise _Retryable(repr(err)) from err
        if not block:
            return
        dst.write(block)
        on_chunk(len(block))


def _download_http(url: str, part: Path, label: str) -> None:
    """Download ``url`` into ``part``, retried and resumed under the storage backends' retry policy."""

    def resuming(attempt: int, err: BaseException, delay: float) -> None:
        if part.exists() and part.stat().st_size:
            logger.info("downloading %s: the next attempt resumes from byte %d", url, part.stat().st_size)

    def give_up(err: BaseException, attempts: int, elapsed: float) -> WeightsError:
        cause = err.__cause__
        if isinstance(cause, urllib.error.URLError) and not isinstance(cause, urllib.error.HTTPError):
            return _offline_error(url, err, part.with_suffix(""))
        return WeightsError(f"downloading {url} failed after {attempts} attempts: {err}")

    policy = RetryPolicy(attempts=int(os.environ.get(RETRIES_ENV, "5")) + 1, base=FIRST_BACKOFF_S, cap=MAX_BACKOFF_S,
                         on_retry=resuming)
    policy.call(lambda: _http_attempt(url, part, label), lambda err: RETRY if isinstance(err, _Retryable) else None,
                url, give_up)


def store_args(uri: str, file_client_args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The storage-backend options for weights at an ``s3://``/``gs://`` ``uri``: the experiment's
    ``data.file_client_args`` when their backend reads that scheme, less the keys that only concern the data
    (see the module docstring); ``gs://`` adds ``anonymous: auto`` unless they set ``anonymous``."""
    scheme = urlsplit(uri).scheme
    args: dict[str, Any] = {}
    if isinstance(file_client_args, Mapping) and file_client_args.get("backend") == _BACKEND_NAMES[scheme]:
        args = {k: v for k, v in file_client_args.items() if k not in _DATA_ONLY}
    if scheme == "gs":
        args.setdefault("anonymous", "auto")
    return args


def _fetch_object(uri: str, file_client_args: Mapping[str, Any] | None) -> Path:
    """The cached copy of an ``s3://``/``gs://`` object, through the storage backend of its scheme."""
    store = _STORES[urlsplit(uri).scheme](**store_args(uri, file_client_args))
    store.missing_key_hint = store.missing_bucket_hint = _CHECK_WEIGHTS
    try:
        path = store.local_copy(uri, versioned=True)
    except DataError as err:  # the same message as for data, as the error type of weights
        raise WeightsError(str(err)) from err
    logger.info("using %s for %s", path, uri)
    return path


def _verify(path: Path, expected: str | None, uri: str) -> None:
    if not expected:
        return
    actual = sha256_of(path)
    if not actual.startswith(expected):
        path.unlink()
        raise WeightsError(
            f"{uri} is corrupted: its sha256 starts with {actual[: len(expected)]}, the file name promises {expected};"
            " the partial file was removed, run again to re-download (or check the mirror)"
        )


def fetch(uri: str, sha256_prefix: str | None = None, file_client_args: Mapping[str, Any] | None = None) -> Path:
    """A local copy of ``uri`` (``http(s)://``, ``s3://``, ``gs://``), downloaded once per machine into the cache.

    ``sha256_prefix``: the hash the finished file must start with (zoo file names embed it).
    ``file_client_args``: the experiment's ``data.file_client_args``, whose object-store settings also serve
    ``s3://``/``gs://`` weights when their backend matches. Safe to call from many processes at once: they share
    one download. Raises :class:`WeightsError` on any failure."""
    scheme = urlsplit(uri).scheme
    if scheme not in ("http", "https", "s3", "gs"):
        raise WeightsError(f"cannot download {uri}: only http(s)://, s3:// and gs:// URIs are supported")
    if scheme in _STORES:
        path = _fetch_object(uri, file_client_args)
        _verify(path, sha256_prefix, uri)
        return path
    dest = cache_path(uri)
    if dest.is_file():
        logger.info("using cached %s for %s", dest, uri)
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WeightsError(f"cannot create the weights cache {dest.parent}: {err.strerror}; set ${CACHE_ENV}") from err
    part = dest.with_name(dest.name + ".part")
    with FileLock(str(dest.with_name(dest.name + ".lock"))):
        if dest.is_file():  # another process finished it while we waited for the lock
            logger.info("using %s, downloaded by another process", dest)
            return dest
        logger.info("downloading %s to %s", uri, dest)
        _download_http(uri, part, dest.name)
        _verify(part, sha256_prefix, uri)
        os.replace(part, dest)
    return dest
