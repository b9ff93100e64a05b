"""Google Cloud Storage as the ``gcs`` storage backend (URIs ``gs://bucket/key``).

Experiment YAML::

    data:
      file_client_args:
        backend: gcs
        bucket_name: my-data              # or data_root: gs://my-data/coco/
        prefix: datasets                  # optional key prefix for non-URI paths (the backend's key_prefix)
        project: my-project               # optional: else the credentials' project
        emulator_host: http://127.0.0.1:4443  # optional: a GCS emulator (or set STORAGE_EMULATOR_HOST)
        anonymous: false                  # optional: true reads public buckets without credentials; auto does
                                          # so only when no credentials are found (the default for gs:// weights)

Credentials come from Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's user
credentials, the metadata server of GCE/GKE); an emulator is used anonymously. ``google.cloud.storage`` is
imported when the first client is made. The library's own retries are turned off (``retry=None``) so that
:class:`~model_hub_mmdet.storage.retry.RetryPolicy` alone decides; its md5/crc32c checks of downloads stay on.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import logging
import os
import warnings
from typing import Any, BinaryIO

from model_hub_mmdet.errors import ConfigError, DataError
from model_hub_mmdet.storage.base import ObjectStoreBackend, reject_unknown_options
from model_hub_mmdet.storage.retry import RETRY, first_line

_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
logger = logging.getLogger(__name__)


@functools.cache
def _single_shot() -> dict[str, bool]:
    """``single_shot_download=True`` where google-cloud-storage has it (recent 3.x), else nothing."""
    from google.cloud.storage import Blob

    return {"single_shot_download": True} if "single_shot_download" in inspect.signature(
        Blob.download_as_bytes).parameters else {}


class GCSBackend(ObjectStoreBackend):
    """mmcv storage backend for Google Cloud Storage; see the module docstring for the options and
    :class:`~model_hub_mmdet.storage.base.ObjectStoreBackend` for paths, cache and retries."""

    scheme = "gs"
    schemes = ("gs", "gcs")

    def __init__(
        self,
        bucket_name: str | None = None,
        key_prefix: str = "",
        project: str | None = None,
        emulator_host: str | None = None,
        timeout: float = 60.0,
        anonymous: bool | str = False,
        **common: Any,
    ) -> None:
        reject_unknown_options(type(self), common)
        if anonymous not in (True, False, "auto"):
            raise ConfigError(f"file_client_args.anonymous must be true, false or auto, got {anonymous!r}")
        super().__init__(bucket_name=bucket_name, key_prefix=key_prefix, **common)
        self.project = project
        self.emulator_host = emulator_host
        self.timeout = float(timeout)
        self.anonymous = anonymous

    def _emulator(self) -> str | None:
        host = self.emulator_host or os.environ.get("STORAGE_EMULATOR_HOST")
        if host and "://" not in host:
            host = "http://" + host
        return host

    def _endpoint(self) -> str:
        return self._emulator() or "gcs"

    def _new_client(self) -> Any:
        # google.api_core warns on import about Python versions it will drop years from now; once per worker is noise.
        warnings.filterwarnings("ignore", message="You are using a Python version", category=FutureWarning)
        from google.cloud import storage

        emulator = self._emulator()
        if emulator:
            from google.auth.credentials import AnonymousCredentials

            return storage.Client(
                project=self.project or "emulator",
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": emulator},
            )
        if self.anonymous is True:
            return storage.Client.create_anonymous_client()
        if self.anonymous == "auto":
            from google.auth.exceptions import DefaultCredentialsError

            try:
                return storage.Client(project=self.project)
            except DefaultCredentialsError as err:
                logger.info("no Google credentials (%s); reading public buckets anonymously", first_line(err))
                return storage.Client.create_anonymous_client()
        return storage.Client(project=self.project)

    def _blob(self, bucket: str, key: str) -> Any:
        return self.client.bucket(bucket).blob(key)

    def _download(self, bucket: str, key: str) -> bytes:
        # The whole object is returned in memory anyway; reading the body in one call instead of 8 KB chunks
        # halves the client's CPU per image when the prefetcher's threads share the GIL (bench/RESULTS.md).
        # The crc32c/md5 check and the length check still apply.
        return self._blob(bucket, key).download_as_bytes(retry=None, timeout=self.timeout, **_single_shot())

    def _download_to(self, bucket: str, key: str, fileobj: BinaryIO) -> None:
        self._blob(bucket, key).download_to_file(fileobj, retry=None, timeout=self.timeout)

    def _upload(self, bucket: str, key: str, data: bytes) -> None:
        self._blob(bucket, key).upload_from_string(data, retry=None, timeout=self.timeout)

    def _version(self, bucket: str, key: str) -> str:
        blob = self._blob(bucket, key)
        blob.reload(retry=None, timeout=self.timeout)  # a missing object raises NotFound, classified below
        return str(blob.generation)

    def _exists(self, bucket: str, key: str) -> bool:
        if self._blob(bucket, key).exists(retry=None, timeout=self.timeout):
            return True
        if not self.client.bucket(bucket).exists(retry=None, timeout=self.timeout):
            from google.api_core.exceptions import NotFound

            raise NotFound(f"bucket {bucket} not found")  # classified as a missing bucket below
        return False

    def _bucket_missing(self, bucket: str) -> bool:
        """GCS answers 404 for a missing object and a missing bucket alike; one extra request tells them apart."""
        try:
            return not self.client.bucket(bucket).exists(retry=None, timeout=self.timeout)
        except Exception:  # noqa: BLE001 - only refines an error message
            return False

    def _classify(self, err: BaseException, bucket: str, key: str) -> BaseException | str | None:
        from google.api_core import exceptions as gx
        from google.auth import exceptions as ax

        uri, detail = self.uri(bucket, key), first_line(err) or type(err).__name__
        if isinstance(err, gx.NotFound):
            if self._bucket_missing(bucket):
                where = f" at {self._emulator()}" if self._emulator() else ""
                return DataError(f"{uri}: bucket {bucket!r} does not exist{where}; {self.missing_bucket_hint}")
            return DataError(f"{uri} does not exist; {self.missing_key_hint}")
        if isinstance(err, (gx.Forbidden, gx.Unauthorized, ax.RefreshError)):
            return DataError(
                f"{uri}: access denied ({type(err).__name__}); check the Google credentials"
                " (GOOGLE_APPLICATION_CREDENTIALS, gcloud auth application-default login, the VM's service account)"
                " and the bucket's IAM roles"
            )
        if isinstance(err, ax.DefaultCredentialsError):
            return DataError(
                f"{uri}: no usable Google credentials ({detail}); set GOOGLE_APPLICATION_CREDENTIALS to a"
                " service-account key file, run gcloud auth application-default login, or run on a VM with a"
                " service account"
            )
        if isinstance(err, gx.GoogleAPICallError):
            if getattr(err, "code", None) in _TRANSIENT_STATUS:
                return RETRY
            return DataError(f"{uri}: {detail}")
        if isinstance(err, _transient_errors()):
            return RETRY
        return None


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Connection-level failures and checksum mismatches of a download (a body corrupted or cut in transit)."""
    import requests
    import urllib3.exceptions
    from google.auth.exceptions import TransportError

    found: list[type[BaseException]] = [
        requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError, TransportError,
        # a single-shot read takes the body straight from urllib3, whose errors requests does not wrap there
        urllib3.exceptions.ProtocolError, urllib3.exceptions.TimeoutError, ConnectionError, TimeoutError,
    ]
    for module in ("google.cloud.storage.exceptions", "google.resumable_media"):  # 3.x, and older versions
        with contextlib.suppress(ImportError, AttributeError):
            found.append(importlib.import_module(module).DataCorruption)
    return tuple(found)
