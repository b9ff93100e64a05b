"""Download weights once per machine into a shared cache.

``fetch(uri)`` returns a local path for ``http(s)://``, ``s3://`` and ``gs://`` URIs:

* **Cache.** ``$MODEL_HUB_MMDET_CACHE`` (default ``$XDG_CACHE_HOME/model_hub_mmdet/weights``, i.e.
  ``~/.cache/model_hub_mmdet/weights``). HTTP files are keyed by URL (zoo files never change: their name carries
  their hash); S3/GCS objects also by their ETag/generation, so an overwritten object is fetched again.
* **One download per machine.** Every process (all ranks of a trial, several trials) takes a file lock on the
  cache entry; the first downloads into ``<entry>.part`` and publishes with an atomic rename, the others wait and
  then find the file. A reader never sees a half-written file.
* **Resume and retry.** A dropped HTTP connection is retried with backoff and resumed with a ``Range`` request
  from the bytes already in ``.part`` (also those left by a killed process).
* **Hash check.** When an expected sha256 prefix is given (zoo files), the finished file must match it, or it is
  deleted and :class:`~model_hub_mmdet.errors.WeightsError` names both hashes.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable
from urllib.parse import urlsplit

from filelock import FileLock

from model_hub_mmdet.errors import WeightsError

logger = logging.getLogger("model_hub_mmdet")

CACHE_ENV = "MODEL_HUB_MMDET_CACHE"
RETRIES_ENV = "MODEL_HUB_MMDET_DOWNLOAD_RETRIES"
CHUNK = 1 << 20
TIMEOUT_S = 60.0
MAX_BACKOFF_S = 30.0


def cache_dir() -> Path:
    """The weights cache: ``$MODEL_HUB_MMDET_CACHE`` or ``$XDG_CACHE_HOME/model_hub_mmdet/weights``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "model_hub_mmdet" / "weights"


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


def cache_path(uri: str, version: str | None = None) -> Path:
    """Where ``uri`` is cached: ``<cache>/<host>/<path>`` for HTTP, ``<cache>/<s3|gs>/<bucket>/<key>`` for
    buckets, with ``version`` (an ETag or generation) as an extra directory above the file name."""
    parts = urlsplit(uri)
    rel = _safe_parts(parts.scheme if parts.scheme in ("s3", "gs") else "", parts.netloc, parts.path)
    if parts.query:
        rel = rel.with_name(f"{hashlib.sha256(parts.query.encode()).hexdigest()[:8]}-{rel.name}")
    if version:
        rel = rel.parent / _safe_parts(version) / rel.name
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
    retries = int(os.environ.get(RETRIES_ENV, "5"))
    for attempt in range(retries + 1):
        try:
            _http_attempt(url, part, label)
            return
        except _Retryable as err:
            if attempt == retries:
                cause = err.__cause__
                if isinstance(cause, urllib.error.URLError) and not isinstance(cause, urllib.error.HTTPError):
                    raise _offline_error(url, err, part.with_suffix("")) from err
                raise WeightsError(f"downloading {url} failed after {retries + 1} attempts: {err}") from err
            delay = min(MAX_BACKOFF_S, 2.0**attempt)
            have = part.stat().st_size if part.exists() else 0
            logger.warning("downloading %s: %s; retrying in %.0f s from byte %d", url, err, delay, have)
            time.sleep(delay)


def _s3_client():
    import boto3

    return boto3.client("s3")


def _s3_version(uri: str) -> tuple[str, str, str]:
    """(bucket, key, etag) of an ``s3://`` object, with user-facing errors for the usual mistakes."""
    from botocore.exceptions import BotoCoreError, ClientError

    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    try:
        head = _s3_client().head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound"):
            raise WeightsError(f"{uri} does not exist (bucket {bucket}); check the key") from err
        raise WeightsError(f"cannot read {uri}: {code or err}; check the bucket name and AWS credentials") from err
    except BotoCoreError as err:
        raise WeightsError(f"cannot read {uri}: {err}; check AWS credentials and AWS_ENDPOINT_URL_S3") from err
    return bucket, key, head.get("ETag", "").strip('"')


def _gcs_blob(uri: str):
    """The ``gs://`` blob with metadata loaded; anonymous access (public buckets) when there are no credentials."""
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage

    parts = urlsplit(uri)
    try:
        client = storage.Client()
    except DefaultCredentialsError:
        client = storage.Client.create_anonymous_client()
    blob = client.bucket(parts.netloc).blob(parts.path.lstrip("/"))
    try:
        blob.reload()
    except gexc.NotFound as err:
        raise WeightsError(f"{uri} does not exist; check the bucket {parts.netloc} and object name") from err
    except gexc.GoogleAPICallError as err:
        raise WeightsError(f"cannot read {uri}: {err.message}; check GCS credentials") from err
    return blob


def _bucket_version(uri: str) -> str:
    if uri.startswith("s3://"):
        return _s3_version(uri)[2]
    return str(_gcs_blob(uri).generation)


def _download_bucket(uri: str, part: Path) -> None:
    if uri.startswith("s3://"):
        bucket, key, _ = _s3_version(uri)
        _s3_client().download_file(bucket, key, str(part))
    else:
        _gcs_blob(uri).download_to_filename(str(part))


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


def fetch(uri: str, sha256_prefix: str | None = None) -> Path:
    """A local copy of ``uri`` (``http(s)://``, ``s3://``, ``gs://``), downloaded once per machine into the cache.

    ``sha256_prefix``: the hash the finished file must start with (zoo file names embed it). Safe to call from
    many processes at once: they share one download. Raises :class:`WeightsError` on any failure."""
    scheme = urlsplit(uri).scheme
    if scheme not in ("http", "https", "s3", "gs"):
        raise WeightsError(f"cannot download {uri}: only http(s)://, s3:// and gs:// URIs are supported")
    dest = cache_path(uri, _bucket_version(uri) if scheme in ("s3", "gs") else None)
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
        if scheme in ("http", "https"):
            _download_http(uri, part, dest.name)
        else:
            part.unlink(missing_ok=True)  # SDK downloads do not resume: start clean
            _download_bucket(uri, part)
        _verify(part, sha256_prefix, uri)
        os.replace(part, dest)
    return dest
