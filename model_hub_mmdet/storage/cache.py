"""A local read-through cache for object-store data, shared by every process on the machine.

Layout under ``root``::

    objects/ab/abcdef...     one object read with ``get``: payload + 16-byte trailer (magic, length, crc32)
    objects/ab/.claim-abc... a process is fetching that object right now (see "Once per machine")
    files/abcdef.../name     one file fetched with ``get_local_path`` (annotations), kept as a plain file,
    files/abcdef.../.ok      ... next to a record of its size and crc32, written after the file is complete
    size                     the approximate total size of ``objects/``, shared by all processes
    evictions                how many times any process evicted objects (changes tell others to forget what
                             they knew to be cached; see :meth:`ObjectCache.eviction_count`)
    .lock                    guards ``size``, ``evictions`` and eviction

Guarantees:

* **Atomic writes.** Data goes to a temporary file in the same directory and is renamed into place, so readers see
  a whole entry or none, and concurrent writers of the same entry (two workers, or a worker and the prefetcher)
  harmlessly race to install identical bytes.
* **Corruption detection.** Every read checks length and crc32; a truncated or damaged entry (disk full, crash,
  someone editing the directory) is deleted and reported as a miss, so the caller fetches it again.
* **LRU eviction under a size cap.** A hit refreshes the entry's mtime (at most once a minute); when the shared
  total exceeds ``max_bytes`` the oldest entries are deleted down to 90 % of the cap. Processes add what they write
  to the shared total in batches, so the cap can be overshot by at most ``processes x flush_bytes``.
* **Once per machine.** :meth:`ObjectCache.local_file` takes a per-entry file lock, so several processes starting
  at once download an annotation file once and the others wait and reuse it. ``files/`` is not evicted: those
  entries are few, and may be open by a running job. Objects get the same treatment without a lock: whoever
  fetches one first leaves a claim file (:meth:`ObjectCache.claim`), and a process that misses while the claim is
  fresh waits for the entry (:meth:`ObjectCache.wait_for`) instead of sending a second request. So a data-loader
  worker that catches up with the prefetcher waits for the image already on its way instead of downloading it
  again (which would double the requests exactly when the store is the bottleneck). A claim older than
  ``claim_timeout`` seconds is presumed dead (its process crashed or hangs) and ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock

from model_hub_mmdet._fs import atomic_write, cache_root
from model_hub_mmdet.errors import ConfigError

logger = logging.getLogger(__name__)

_MAGIC = b"MHC1"
_TRAILER = struct.Struct("<4sQI")  # magic, payload length, crc32 of the payload
_TOUCH_EVERY = 60.0  # seconds: LRU order at minute resolution is plenty, and saves a metadata write per hit
_EVICT_TO = 0.9  # evict down to this fraction of the cap, so eviction does not run on every write
_STALE_TMP = 3600.0  # temporary files older than this were left by a crashed writer
_CLAIM = ".claim-"  # prefix of claim files, beside the entry they announce
_WAIT_FIRST, _WAIT_MAX = 0.002, 0.05  # seconds between looks for a claimed entry (doubling from first to max)
LEGACY_CACHE_DIR_ENV = "MODEL_HUB_MMDET_CACHE_DIR"  # deprecated: the storage cache itself (now <root>/storage)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def default_cache_dir() -> Path:
    """``storage/`` under the cache root (``$MODEL_HUB_MMDET_CACHE``, default ``~/.cache/model_hub_mmdet``); the
    deprecated ``$MODEL_HUB_MMDET_CACHE_DIR`` still names this directory itself when set."""
    legacy = os.environ.get(LEGACY_CACHE_DIR_ENV)
    if legacy:
        return Path(legacy).expanduser()
    return cache_root() / "storage"


def parse_size(value: int | float | str, key: str = "file_client_args.cache_size") -> int:
    """Bytes from ``1000000``, ``"500MB"``, ``"20 GB"`` or ``"1.5GiB"`` (K/M/G/T are powers of 1000, Ki/Mi/... of
    1024)."""
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a size such as 20GB or a number of bytes, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"{key} must not be negative, got {value!r}")
        return int(value)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]i?)?b?\s*", str(value), re.IGNORECASE)
    if not match:
        raise ConfigError(f"{key} must be a size such as 20GB, 500MiB or a number of bytes, got {value!r}")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def entry_name(namespace: str) -> str:
    """A fixed-length file name for a cache entry (endpoint, bucket and key go into ``namespace``)."""
    return hashlib.sha256(namespace.encode("utf-8")).hexdigest()[:40]


class ObjectCache:
    """The on-disk cache described in the module docstring. Safe to use from many threads and processes."""

    def __init__(self, root: str | os.PathLike, max_bytes: int, flush_bytes: int | None = None,
                 claim_timeout: float = 60.0) -> None:
        self.root = Path(root).expanduser()
        self.claim_timeout = float(claim_timeout)
        self._objects = os.path.join(str(self.root), "objects")  # str joins: pathlib is slow on the hit path
        self.max_bytes = int(max_bytes)
        # How much a process writes before it reports to the shared total (and maybe evicts).
        self.flush_bytes = flush_bytes if flush_bytes is not None else max(1, min(64 << 20, self.max_bytes // 50))
        self._unflushed = 0
        try:
            (self.root / "objects").mkdir(parents=True, exist_ok=True)
            (self.root / "files").mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"file_client_args.cache_dir {self.root}: cannot create the cache directory ({err.strerror});"
                " point cache_dir at a writable local disk"
            ) from err

    # ----------------------------------------------------------------------------------------------- objects
    def _object_file(self, name: str) -> str:
        return os.path.join(self._objects, name[:2], name)

    def object_path(self, name: str) -> Path:
        """Where the object entry ``name`` (from :func:`entry_name`) lives."""
        return Path(self._object_file(name))

    def read(self, name: str) -> bytes | None:
        """The cached payload of ``name``, or ``None`` if absent or damaged (a damaged entry is deleted)."""
        path = self._object_file(name)
        try:
            payload, trailer, mtime = _read_entry(path)
        except FileNotFoundError:
            return None
        except OSError as err:  # an unreadable cache is a miss: the object store still has the data
            logger.warning("cannot read cache entry %s (%s); fetching it", path, err)
            return None
        if not _intact(payload, trailer):
            logger.warning("cache entry %s is truncated or corrupt (%d bytes); fetching it again", path,
                           len(payload) + len(trailer))
            _unlink(path)
            return None
        if time.time() - mtime > _TOUCH_EVERY:
            with contextlib.suppress(OSError):  # evicted meanwhile: harmless
                os.utime(path)
        return payload

    def contains(self, name: str) -> bool:
        """Whether an entry exists (not verified; :meth:`read` verifies)."""
        return os.path.isfile(self._object_file(name))

    def _claim_file(self, name: str) -> str:
        return os.path.join(self._objects, name[:2], _CLAIM + name)

    def claim(self, name: str) -> bool:
        """Announce that this process is fetching ``name``. False if another process's fresh claim is there (wait
        for it with :meth:`wait_for`); a stale one is taken over. Release with :meth:`release`."""
        path = self._claim_file(name)
        for _ in range(2):
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                return True
            except FileExistsError:
                if self._claim_age(path) < self.claim_timeout:
                    return False
                _unlink(path)  # its owner died; take over
            except FileNotFoundError:  # the first entry of its subdirectory
                with contextlib.suppress(OSError):
                    os.makedirs(os.path.dirname(path), exist_ok=True)
            except OSError:
                break  # an unwritable cache: fetch without a claim (writing the entry will fail the same way)
        return True

    def release(self, name: str) -> None:
        """Withdraw this process's claim on ``name`` (after writing the entry, or after failing to fetch it)."""
        with contextlib.suppress(OSError):
            os.unlink(self._claim_file(name))

    def wait_for(self, name: str) -> bytes | None:
        """The entry ``name`` once the process that claimed it has written it; None as soon as the claim is gone
        without an entry (that fetch failed), or stale. Polls with a short, growing sleep."""
        path, delay = self._claim_file(name), _WAIT_FIRST
        while True:
            data = self.read(name)
            if data is not None:
                return data
            age = self._claim_age(path)
            if age >= self.claim_timeout:
                return self.read(name)  # written just before the claim was released, or nothing
            time.sleep(delay)
            delay = min(2 * delay, _WAIT_MAX)

    @staticmethod
    def _claim_age(path: str) -> float:
        """Seconds since the claim at ``path`` was made; infinite if there is none."""
        try:
            return time.time() - os.stat(path).st_mtime
        except FileNotFoundError:
            return float("inf")

    def write(self, name: str, data: bytes) -> bool:
        """Install ``data`` as entry ``name`` atomically, then account for it (and evict if over the cap).
        False if the object is not cached because it is larger than the whole cache."""
        if self.max_bytes <= 0 or len(data) + _TRAILER.size > self.max_bytes:
            return False  # caching disabled, or an object larger than the whole cache
        path = self.object_path(name)
        path.parent.mkdir(exist_ok=True)
        trailer = _TRAILER.pack(_MAGIC, len(data), zlib.crc32(data))
        atomic_write(path, lambda f: (f.write(data), f.write(trailer)))
        self._unflushed += len(data) + _TRAILER.size
        if self._unflushed >= self.flush_bytes:
            self.flush()
        return True

    def flush(self) -> None:
        """Add this process's unreported writes to the shared total; evict if the cap is exceeded."""
        added, self._unflushed = self._unflushed, 0
        with FileLock(str(self.root / ".lock")):
            total = self._read_total()
            total = self._scan_total() if total is None else total + added
            if total > self.max_bytes:
                total = self._evict_locked(int(self.max_bytes * _EVICT_TO))
            (self.root / "size").write_text(str(total))

    def evict(self, target_bytes: int | None = None) -> int:
        """Delete least recently used objects until at most ``target_bytes`` remain (default: 90 % of the cap).
        Returns the bytes that remain."""
        target = int(self.max_bytes * _EVICT_TO) if target_bytes is None else target_bytes
        with FileLock(str(self.root / ".lock")):
            total = self._evict_locked(target)
            (self.root / "size").write_text(str(total))
        return total

    def _read_total(self) -> int | None:
        try:
            return int((self.root / "size").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _entries(self) -> list[tuple[float, int, str]]:
        """(mtime, size, path) of every object entry; removes temporary files left by crashed writers."""
        found = []
        now = time.time()
        for sub in os.scandir(self._objects):
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub.path):
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                if entry.name.startswith("."):  # a temporary file or a claim, not an entry
                    if now - st.st_mtime > _STALE_TMP:
                        _unlink(entry.path)
                    continue
                found.append((st.st_mtime, st.st_size, entry.path))
        return found

    def _scan_total(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _evict_locked(self, target: int) -> int:
        entries = sorted(self._entries())  # oldest first
        total = sum(size for _, size, _ in entries)
        evicted = 0
        for _, size, path in entries:
            if total <= target:
                break
            _unlink(path)
            total -= size
            evicted += 1
        if evicted:
            logger.info("cache %s: evicted %d least recently used objects, %d bytes remain", self.root, evicted, total)
            (self.root / "evictions").write_text(str(self.eviction_count() + 1))
        return total

    def eviction_count(self) -> int:
        """How many evictions any process has made in this cache so far. A process that remembers which entries
        exist (to skip a stat per sample) forgets them when this changes; entries disappear no other way, except
        when a damaged one is deleted on read, and then the reader fetches it again itself."""
        try:
            return int((self.root / "evictions").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    # ------------------------------------------------------------------------------------------------- files
    def local_file(self, name: str, basename: str, download: Callable[[BinaryIO], None]) -> Path:
        """A verified local copy of a whole file, downloaded once per machine.

        ``download(fileobj)`` writes the object's bytes to ``fileobj`` (it may be called again from the start on
        a retry, after the caller truncates). Concurrent callers for the same ``name`` wait for the first one.
        """
        folder = self.root / "files" / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (basename or "object")
        with FileLock(str(folder) + ".lock"):
            if _verify_file(path, folder / ".ok"):
                return path
            _unlink(folder / ".ok")
            atomic_write(path, download)
            size, crc = _file_crc(path)
            atomic_write(folder / ".ok", lambda f: f.write(json.dumps({"size": size, "crc32": crc}).encode()))
        return path


def _read_entry(path: str) -> tuple[bytes, bytes, float]:
    """(payload, trailer, mtime) of an entry file, read with two ``os.read`` calls: no buffered file object and
    no slicing copy (what that saves per hit: bench/RESULTS.md)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        size = max(0, st.st_size - _TRAILER.size)
        payload = _read_exactly(fd, size)
        trailer = _read_exactly(fd, _TRAILER.size)
    finally:
        os.close(fd)
    return payload, trailer, st.st_mtime


def _read_exactly(fd: int, size: int) -> bytes:
    """``size`` bytes from ``fd``, or fewer at the end of the file."""
    data = os.read(fd, size)
    while len(data) < size and (more := os.read(fd, size - len(data))):
        data += more  # a short read, rare for regular files
    return data


def _intact(payload: bytes, trailer: bytes) -> bool:
    """Whether ``trailer`` is ours and matches ``payload``'s length and crc32."""
    if len(trailer) != _TRAILER.size:
        return False
    magic, length, crc = _TRAILER.unpack(trailer)
    return magic == _MAGIC and length == len(payload) and zlib.crc32(payload) == crc


def _file_crc(path: Path) -> tuple[int, int]:
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return size, crc


def _verify_file(path: Path, record: Path) -> bool:
    try:
        expected = json.loads(record.read_text())
        if path.stat().st_size != expected["size"]:
            return False
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return False
    if _file_crc(path) != (expected["size"], expected["crc32"]):
        logger.warning("cached file %s is corrupt; fetching it again", path)
        return False
    return True


def _unlink(path: str | os.PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
