"""What the S3 and GCS backends share: path resolution, the per-process client, caching and retries.

**Paths.** mmcv hands ``get(filepath)`` whatever the dataset joined (``img_prefix + filename``):

* a URI ``s3://bucket/key`` / ``gs://bucket/key`` names the object fully: ``bucket_name`` and ``key_prefix`` are
  not applied (so ``data_root: s3://bucket/coco/`` works with just ``backend: s3``);
* any other path is a key in ``bucket_name``, placed under ``key_prefix``: with ``prefix: datasets/v2`` the path
  ``data/coco/train2017/x.jpg`` reads ``datasets/v2/data/coco/train2017/x.jpg``. Leading ``/`` and ``./`` and doubled
  slashes are dropped, so a config's local-looking ``data_root`` maps straight onto keys.

``prefix`` in the experiment's ``file_client_args`` is this backend's ``key_prefix``: mmcv's ``FileClient`` claims
the keyword ``prefix`` for URI schemes, so :func:`normalize_file_client_args` renames it before mmcv sees it.

**Clients.** One SDK client per process, created on first use and re-created when the process id changes, so each
data-loader worker opens its own connection pool after ``fork`` and then reuses it for every sample. Pickling a
backend drops the client (spawned workers create their own).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import posixpath
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from model_hub_mmdet.errors import ConfigError, DataError
from model_hub_mmdet.storage.cache import ObjectCache, default_cache_dir, entry_name, parse_size
from model_hub_mmdet.storage.retry import RetryPolicy

DEFAULT_CACHE_SIZE = "50GB"
_RECHECK_EVICTIONS = 1.0  # seconds between looks at the cache's eviction count by a process that remembers entries
logger = logging.getLogger(__name__)


class ObjectStoreBackend:
    """A storage backend over an object store, with a local read-through cache and retries (registered with
    mmcv's or mmengine's file I/O by the generation's adapter).

    Subclasses set ``scheme``/``schemes`` and implement the ``_new_client``, ``_download``, ``_download_to``,
    ``_upload``, ``_exists``, ``_version`` and ``_classify`` hooks.

    Args (all from ``data.file_client_args``, besides ``backend``):
        bucket_name: bucket for paths that are not full URIs.
        key_prefix: key prefix for paths that are not full URIs (``prefix`` in the experiment YAML).
        cache: keep fetched objects in the local cache (default true).
        cache_dir: cache directory (default ``storage/`` under ``$MODEL_HUB_MMDET_CACHE``, i.e.
            ``~/.cache/model_hub_mmdet/storage``); share it between the processes of a machine, on local disk.
        cache_size: cap for cached objects, e.g. ``50GB`` (least recently used objects are evicted).
        retries: attempts per request, the first included (default 12: 31-63 s of patience, see ``retry.py``).
        retry_backoff / retry_max_backoff: base and cap in seconds of the jittered exponential backoff.
        prefetch: images to fetch ahead of the data loader (0 = off); read by the data loader, see
            :mod:`model_hub_mmdet.storage.prefetch`.
        prefetch_threads: concurrent requests of the prefetcher.
    """

    scheme: ClassVar[str] = ""
    schemes: ClassVar[tuple[str, ...]] = ()
    _allow_symlink = False
    # What the message of a missing object or bucket tells the user to check (weights set their own).
    missing_key_hint = "check data_root, ann_file and img_prefix"
    missing_bucket_hint = "check file_client_args.bucket_name or the data_root URI"

    def __init__(
        self,
        bucket_name: str | None = None,
        key_prefix: str = "",
        cache: bool = True,
        cache_dir: str | None = None,
        cache_size: int | str = DEFAULT_CACHE_SIZE,
        retries: int = 12,
        retry_backoff: float = 0.1,
        retry_max_backoff: float = 10.0,
        prefetch: int = 0,
        prefetch_threads: int = 8,
    ) -> None:
        if bucket_name is not None and (not isinstance(bucket_name, str) or not bucket_name or "/" in bucket_name):
            raise ConfigError(
                f"file_client_args.bucket_name must be a bare bucket name such as my-data (no scheme or '/'),"
                f" got {bucket_name!r}"
            )
        if not isinstance(retries, int) or retries < 1:
            raise ConfigError(f"file_client_args.retries must be an integer >= 1, got {retries!r}")
        self.bucket_name = bucket_name
        self.key_prefix = _clean_key(str(key_prefix or ""))
        self.retry = RetryPolicy(attempts=retries, base=float(retry_backoff), cap=float(retry_max_backoff))
        self.prefetch = int(prefetch)
        self.prefetch_threads = int(prefetch_threads)
        self._cache_args = (cache, cache_dir, cache_size)
        self.cache = self._make_cache(cache, cache_dir, cache_size)
        self._cache_warned = False
        self._reset_process_state()

    # ------------------------------------------------------------------------------------- per-process client
    def _reset_process_state(self) -> None:
        self._pid = os.getpid()
        self._client: Any = None
        self._client_lock = threading.Lock()
        # Paths this process found in, or put into, the cache (see ``cached``), valid while the cache's eviction
        # count stays ``_known_evictions``; looked at again at most every _RECHECK_EVICTIONS seconds.
        self._known: set[str] = set()
        self._known_evictions = -1
        self._known_checked = 0.0

    def _after_fork(self) -> None:
        """Drop the state a forked process inherited (client, remembered entries): it belongs to the parent."""
        if self._pid != os.getpid():
            self._reset_process_state()

    @property
    def client(self) -> Any:
        """This process's SDK client (created on first use, and again after a fork)."""
        self._after_fork()
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._new_client()
        return self._client

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_client=None, _client_lock=None, _pid=None, _known=None)  # the receiving process makes its own
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_process_state()

    @staticmethod
    def _make_cache(cache: bool, cache_dir: str | None, cache_size: int | str) -> ObjectCache | None:
        if not cache:
            return None
        max_bytes = parse_size(cache_size)
        if max_bytes <= 0:
            return None
        return ObjectCache(cache_dir or default_cache_dir(), max_bytes)

    @property
    def name(self) -> str:
        """The backend's class name (what mmcv's and mmengine's clients report)."""
        return type(self).__name__

    @property
    def allow_symlink(self) -> bool:
        return self._allow_symlink

    # ----------------------------------------------------------------------------------------------- paths
    def resolve(self, filepath: str | os.PathLike) -> tuple[str, str]:
        """The ``(bucket, key)`` that ``filepath`` names (see the module docstring)."""
        path = str(filepath)
        scheme, sep, rest = path.partition("://")
        if sep:
            if scheme not in self.schemes:
                raise DataError(
                    f"{path}: the {self.scheme} backend reads {self.scheme}:// URIs; set file_client_args.backend"
                    f" to match the data_root's scheme"
                )
            bucket, _, key = rest.partition("/")
            key = _clean_key(key)
            if not bucket or not key:
                raise DataError(f"{path}: expected {self.scheme}://BUCKET/KEY")
            return bucket, key
        if not self.bucket_name:
            raise ConfigError(
                f"{path} is not a {self.scheme}:// URI, so file_client_args.bucket_name is required; set it, or make"
                f" data_root a URI such as {self.scheme}://my-bucket/coco/"
            )
        key = _clean_key(posixpath.join(self.key_prefix, _clean_key(path)) if self.key_prefix else path)
        if not key:
            raise DataError(f"{path}: resolves to an empty key in bucket {self.bucket_name}")
        return self.bucket_name, key

    def uri(self, bucket: str, key: str) -> str:
        """The canonical URI of an object (used in messages)."""
        return f"{self.scheme}://{bucket}/{key}"

    def join_path(self, filepath: str | os.PathLike, *filepaths: str | os.PathLike) -> str:
        """Join with ``/`` and keep a URI's ``scheme://``."""
        return posixpath.join(str(filepath), *map(str, filepaths))

    def _endpoint(self) -> str:
        """Identifies the service in cache entry names, so two endpoints' same-named buckets never mix."""
        return ""

    def _entry(self, bucket: str, key: str) -> str:
        return entry_name(f"{self.scheme}|{self._endpoint()}|{bucket}|{key}")

    # ------------------------------------------------------------------------------------------------- reads
    def get(self, filepath: str | os.PathLike) -> bytes:
        """The object's bytes: from the local cache when present and intact, else fetched (and cached)."""
        bucket, key = self.resolve(filepath)
        if self.cache is None:
            return self._fetch(bucket, key)
        name = self._entry(bucket, key)
        data = self.cache.read(name)
        if data is None:
            data = self._fetch_once(str(filepath), bucket, key, name)
        return data

    def _fetch_once(self, path: str, bucket: str, key: str, name: str) -> bytes:
        """Fetch and cache an object that is not cached, unless another process (the prefetcher, another worker)
        is fetching it already: then wait for its copy, and fetch only if that fetch fails."""
        claimed = self.cache.claim(name)
        if not claimed:
            data = self.cache.wait_for(name)
            if data is not None:
                return data
            claimed = self.cache.claim(name)  # that fetch failed or hangs: fetch it ourselves
        # Not remembered: a loader worker never asks ``cached``, and COCO's paths would cost it ~10 MB.
        return PendingFetch(self, path, bucket, key, name, claimed=claimed, remember=False)()

    def _store(self, name: str, data: bytes) -> bool:
        """Cache ``data``; True if it is now cached. A full or read-only disk costs speed, not the training run."""
        try:
            return self.cache.write(name, data)
        except OSError as err:
            if not self._cache_warned:
                self._cache_warned = True
                logger.warning("cannot write to the storage cache %s (%s); reading without it", self.cache.root, err)
            return False

    def get_text(self, filepath: str | os.PathLike, encoding: str = "utf-8") -> str:
        """The object decoded as text."""
        return self.get(filepath).decode(encoding)

    def cached(self, filepath: str | os.PathLike) -> bool:
        """Whether the object is in the local cache (the content is verified when read).

        Asked by the prefetcher for every sample of every epoch, so the answer is remembered: a path once found
        (or put) in the cache costs a set lookup afterwards, not a path resolution, a hash and a stat. What this
        process remembers is forgotten when any process evicts from the cache.
        """
        if self.cache is None:
            return False
        path = str(filepath)
        return self._remembered(path) or self._found(path, self._entry(*self.resolve(path)))

    def _found(self, path: str, name: str) -> bool:
        """Whether entry ``name`` (of ``path``) exists; remembered if so."""
        if not self.cache.contains(name):
            return False
        self._known.add(path)
        return True

    def warm(self, filepath: str | os.PathLike) -> bool:
        """Fetch the object into the cache unless it is there already (or on its way); True if it was fetched."""
        fetch = self.reserve(filepath)
        if fetch is None:
            return False
        fetch()
        return True

    def reserve(self, filepath: str | os.PathLike) -> PendingFetch | None:
        """Claim the object for a fetch into the cache, to be run later (the prefetcher queues it on a thread);
        None if it is cached or another fetch is on its way. From now on, a data-loader worker that needs the
        object waits for this fetch instead of sending a request of its own, so the caller must run the returned
        fetch or ``release()`` it."""
        path = str(filepath)
        if self.cache is None or self._remembered(path):
            return None
        bucket, key = self.resolve(path)
        name = self._entry(bucket, key)
        if self._found(path, name) or not self.cache.claim(name):
            return None
        if self.cache.contains(name):  # fetched and released between our look and our claim
            self.cache.release(name)
            return None
        return PendingFetch(self, path, bucket, key, name)

    def _remembered(self, path: str) -> bool:
        self._after_fork()
        now = time.monotonic()
        if now - self._known_checked >= _RECHECK_EVICTIONS:
            self._known_checked = now
            evictions = self.cache.eviction_count()
            if evictions != self._known_evictions:
                self._known.clear()  # some entries are gone; which ones is not worth finding out
                self._known_evictions = evictions
        return path in self._known

    @contextlib.contextmanager
    def get_local_path(self, filepath: str | os.PathLike) -> Iterator[str]:
        """A local copy of the object for code that opens files by name (``ann_file``, proposals).

        With the cache, the file is downloaded once per machine (concurrent processes wait for the first) and kept
        in ``cache_dir/files``; without it, a temporary file is used and deleted on exit.
        """
        if self.cache is not None:
            yield str(self.local_copy(filepath))
            return
        bucket, key = self.resolve(filepath)
        fd, tmp = tempfile.mkstemp(suffix="-" + posixpath.basename(key))
        try:
            with os.fdopen(fd, "wb") as f:
                self._downloader(bucket, key)(f)
            yield tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def local_copy(self, filepath: str | os.PathLike, versioned: bool = False) -> Path:
        """The cached local copy of the object, a plain file under ``cache_dir/files`` that is never evicted,
        downloaded once per machine (concurrent processes wait for the first) and verified on every call.

        ``versioned``: the object's version (S3 ETag, GCS generation; one metadata request) is part of the cache
        entry, so an object overwritten in the store is fetched again (weights); else a copy, once made, is kept.
        """
        if self.cache is None:
            raise ConfigError(f"{filepath}: a local copy needs the cache; drop cache: false / cache_size: 0")
        bucket, key = self.resolve(filepath)
        name = self._entry(bucket, key)
        if versioned:
            version = self._call(lambda: self._version(bucket, key), bucket, key)
            name = entry_name(f"{name}|{version}")
        return self.cache.local_file(name, posixpath.basename(key), self._downloader(bucket, key))

    def exists(self, filepath: str | os.PathLike) -> bool:
        """Whether the object exists (a missing bucket raises DataError)."""
        bucket, key = self.resolve(filepath)
        return self._call(lambda: self._exists(bucket, key), bucket, key)

    isfile = exists

    # ------------------------------------------------------------------------------------------------ writes
    def put(self, obj: bytes, filepath: str | os.PathLike) -> None:
        """Upload ``obj`` to the object (used to stage datasets; training only reads)."""
        bucket, key = self.resolve(filepath)
        self._call(lambda: self._upload(bucket, key, bytes(obj)), bucket, key)

    def put_text(self, obj: str, filepath: str | os.PathLike, encoding: str = "utf-8") -> None:
        """Upload text."""
        self.put(obj.encode(encoding), filepath)

    def upload_dir(self, local_dir: str | os.PathLike, dest: str | os.PathLike) -> int:
        """Upload every file under ``local_dir`` to ``dest/<relative path>``; returns the number of files."""
        count = 0
        for path in sorted(Path(local_dir).rglob("*")):
            if path.is_file():
                self.put(path.read_bytes(), self.join_path(str(dest), path.relative_to(local_dir).as_posix()))
                count += 1
        return count

    # -------------------------------------------------------------------------------------------- internals
    def _fetch(self, bucket: str, key: str) -> bytes:
        return self._call(lambda: self._download(bucket, key), bucket, key)

    def _downloader(self, bucket: str, key: str) -> Callable[[BinaryIO], None]:
        def download(f: BinaryIO) -> None:
            def attempt() -> None:
                f.seek(0)
                f.truncate()
                self._download_to(bucket, key, f)

            self._call(attempt, bucket, key)

        return download

    def _call(self, fn: Callable[[], Any], bucket: str, key: str) -> Any:
        return self.retry.call(fn, lambda err: self._classify(err, bucket, key), self.uri(bucket, key))

    # ---------------------------------------------------------------------------------- hooks for subclasses
    def _new_client(self) -> Any:
        raise NotImplementedError

    def _download(self, bucket: str, key: str) -> bytes:
        raise NotImplementedError

    def _download_to(self, bucket: str, key: str, fileobj: BinaryIO) -> None:
        fileobj.write(self._download(bucket, key))

    def _upload(self, bucket: str, key: str, data: bytes) -> None:
        raise NotImplementedError

    def _exists(self, bucket: str, key: str) -> bool:
        raise NotImplementedError

    def _version(self, bucket: str, key: str) -> str:
        """An identifier that changes whenever the object is overwritten."""
        raise NotImplementedError

    def _classify(self, err: BaseException, bucket: str, key: str) -> BaseException | str | None:
        """RETRY for transient failures, a DataError to raise for permanent ones, None for anything else."""
        raise NotImplementedError


class PendingFetch:
    """A fetch of one object into the cache, usually claimed (see :meth:`ObjectStoreBackend.reserve`): call it
    once to fetch (returns the bytes; errors propagate), or :meth:`release` it unfetched. Either way the claim is
    given back.
    With ``remember``, the backend's ``cached`` answers from memory for this path once it is stored."""

    def __init__(self, backend: ObjectStoreBackend, path: str, bucket: str, key: str, name: str,
                 claimed: bool = True, remember: bool = True) -> None:
        self.backend, self.path, self.bucket, self.key, self.name = backend, path, bucket, key, name
        self.claimed, self.remember = claimed, remember

    def __call__(self) -> bytes:
        backend = self.backend
        try:
            data = backend._fetch(self.bucket, self.key)
            if backend._store(self.name, data) and self.remember:
                backend._known.add(self.path)
        finally:
            self.release()
        return data

    def release(self) -> None:
        """Give the claim back (unfetched, a worker that needs the object then fetches it itself)."""
        if self.claimed:
            self.backend.cache.release(self.name)


OBJECT_BACKENDS = ("s3", "gcs")


def normalize_file_client_args(args: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``data.file_client_args`` as mmcv's FileClient must receive it: for the ``s3``/``gcs`` backends the user's
    ``prefix`` (a key prefix) becomes ``key_prefix``, because ``FileClient(prefix=...)`` means a URI scheme.
    Other backends pass through unchanged."""
    if args is None:
        return None
    out = dict(args)
    if out.get("backend") in OBJECT_BACKENDS and "prefix" in out:
        if "key_prefix" in out:
            raise ConfigError("file_client_args: give prefix or key_prefix, not both (they are the same option)")
        out["key_prefix"] = out.pop("prefix")
    return out


def reject_unknown_options(cls: type, kwargs: dict) -> None:
    """Name an unknown ``file_client_args`` key instead of failing with a bare TypeError deep inside mmcv."""
    known = {name for klass in (cls, ObjectStoreBackend) for name in inspect.signature(klass.__init__).parameters}
    known -= {"self", "common"}
    common = set(inspect.signature(ObjectStoreBackend.__init__).parameters)
    unknown = sorted(set(kwargs) - common)
    if unknown:
        raise ConfigError(
            f"file_client_args: unknown key(s) {', '.join(unknown)} for the {cls.scheme} backend; known keys:"
            f" backend, {', '.join(sorted(known))}"
        )


def _clean_key(key: str) -> str:
    """Drop leading ``/`` and ``./``, ``/./`` segments and doubled slashes (object keys are not normalised by
    stores, and configs often say ``data/coco//train2017/``)."""
    parts = [p for p in key.split("/") if p not in ("", ".")]
    trailing = "/" if key.endswith("/") and parts else ""
    return "/".join(parts) + trailing
