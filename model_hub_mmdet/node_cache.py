"""Flat, read-only buffers of Python records, shared by every process of a node.

Forked data-loader workers inherit the main process's annotations copy-on-write, but reading a Python object
writes its reference count, so each worker slowly copies every page of the lists of dicts it reads: the
"copy-on-read" growth that makes MMDetection 2.x training use gigabytes more RAM per worker over an epoch. What
avoids it is what mmengine's ``BaseDataset(serialize_data=True)`` does: the records encoded one after the other in
one numpy byte array with an array of offsets, decoded on access. A numpy array is one Python object whatever its
size, so a worker touches only the bytes it decodes, and never writes them.

:class:`FlatList` is such a sequence. :func:`shared_arrays` goes one step further, from one copy per process tree to
one per node: the arrays are written once to a node-local file (``$MODEL_HUB_MMDET_NODE_CACHE``, default
``<tmp>/model_hub_mmdet-node-cache``) and memory-mapped by every rank, so the page cache holds the only copy.
The first process to get the file's lock builds it and the others wait and map it. The file is named by a key
of its inputs (:func:`cache_key`: the annotation file's path, size and mtime and the dataset's settings), so a
later run on the same data maps it at once. ``MODEL_HUB_MMDET_NODE_CACHE=off`` keeps the arrays in each
process's memory instead, as does any failure to write the file (a warning says why).

This module imports neither MMDetection generation (the core).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import marshal
import mmap
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

logger = logging.getLogger("model_hub_mmdet")

ENV = "MODEL_HUB_MMDET_NODE_CACHE"
MAGIC = b"MHMFLAT1"
FORMAT = 1
ALIGN = 64
MAX_AGE_S = 7 * 24 * 3600  # cache files not used for a week are removed when a new one is written
CODECS: dict[str, tuple[Callable[[Any], bytes], Callable[[Any], Any]]] = {
    "marshal": (marshal.dumps, marshal.loads),  # builtins only: it writes a numpy array as its bytes
    "pickle": (functools.partial(pickle.dumps, protocol=pickle.HIGHEST_PROTOCOL), pickle.loads),
}


# ================================================================================================= FlatList
def encode(items: Iterable[Any], codec: str = "pickle") -> tuple[np.ndarray, np.ndarray, str]:
    """``items`` encoded one after the other: (bytes as uint8, int64 offsets with a leading 0, codec name).
    ``marshal`` is for records known to hold builtins only: it writes any buffer (a numpy array) as bytes."""
    items = items if isinstance(items, Sequence) else list(items)
    dumps = CODECS[codec][0]
    blobs = [dumps(item) for item in items]
    offsets = np.zeros(len(blobs) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, blobs), np.int64, count=len(blobs)), out=offsets[1:])
    data = np.frombuffer(b"".join(blobs), np.uint8) if blobs else np.zeros(0, np.uint8)
    return data, offsets, codec


class FlatList(Sequence):
    """A read-only sequence of records kept as encoded bytes in one array, decoded on each access.

    Each access returns a new object: changes to it are not kept (as with mmengine's serialized ``data_list``).
    Pickles as its arrays (a spawned worker gets a copy; a forked one shares them)."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray, codec: str = "pickle") -> None:
        self.data, self.offsets, self.codec = data, offsets, codec
        self._loads = CODECS[codec][1]

    @classmethod
    def from_items(cls, items: Iterable[Any], codec: str = "pickle") -> FlatList:
        return cls(*encode(items, codec))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        index = int(index)  # numpy integers too
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} records")
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return self._loads(memoryview(self.data[start:end]))

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"FlatList({len(self)} records, {self.nbytes / 2**20:.1f} MiB, {self.codec})"

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.offsets.nbytes)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Its arrays under ``prefix``, for :func:`shared_arrays` (see :meth:`from_arrays`)."""
        return {f"{prefix}.data": self.data, f"{prefix}.offsets": self.offsets,
                f"{prefix}.codec": np.frombuffer(self.codec.encode(), np.uint8)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> FlatList:
        return cls(arrays[f"{prefix}.data"], arrays[f"{prefix}.offsets"], bytes(arrays[f"{prefix}.codec"]).decode())

    def __reduce__(self) -> tuple:
        return FlatList, (np.array(self.data), np.array(self.offsets), self.codec)


# ============================================================================================ the node's file
def cache_dir() -> Path | None:
    """Where the node's shared files go (``$MODEL_HUB_MMDET_NODE_CACHE``), or None when it says ``off``."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("off", "0", "false", "no", "none"):
        return None
    return Path(value) if value else Path(tempfile.gettempdir()) / "model_hub_mmdet-node-cache"


def cache_key(path: str | os.PathLike | None, by_content: bool = False, **settings: Any) -> str | None:
    """A file name for arrays derived from the file at ``path`` (its absolute path, size and mtime) and
    ``settings`` (anything JSON-able, ``repr`` otherwise), the Python version and this format's. None when ``path``
    is None or not a file here (an object in a bucket: no size and mtime to tell its versions apart) unless ``settings``
    identify the content itself (``by_content``): such arrays are kept per process, never mapped from a file that
    another dataset wrote."""
    stat: Any = None
    if path is None and not by_content:
        return None
    if path is not None:
        try:
            st = os.stat(path)
            stat = [os.path.abspath(path), st.st_size, st.st_mtime_ns]
        except (OSError, TypeError, ValueError):
            if not by_content:
                return None
            stat = [str(path)]
    text = json.dumps({"file": stat, "settings": settings, "python": sys.version_info[:2], "format": FORMAT},
                      sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def write_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically (a header, then each array 64-byte aligned)."""
    entries, offset = {}, 0
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        entries[name] = [array.dtype.str, list(array.shape), offset]
        offset += -(-array.nbytes // ALIGN) * ALIGN
    header = json.dumps({"arrays": entries}).encode()
    start = -(-(len(MAGIC) + 8 + len(header)) // ALIGN) * ALIGN
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + len(header).to_bytes(8, "little") + header)
            for name, array in arrays.items():
                f.seek(start + entries[name][2])
                f.write(memoryview(np.ascontiguousarray(array)).cast("B"))
            f.truncate(start + offset)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def map_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a file written by :func:`write_arrays`, read-only views of one shared memory map."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        mm = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) if size else None
    if mm is None or mm[: len(MAGIC)] != MAGIC:
        raise ValueError(f"{path} is not a node cache file")
    length = int.from_bytes(mm[len(MAGIC): len(MAGIC) + 8], "little")
    header = json.loads(mm[len(MAGIC) + 8: len(MAGIC) + 8 + length])
    start = -(-(len(MAGIC) + 8 + length) // ALIGN) * ALIGN
    out = {}
    for name, (dtype, shape, offset) in header["arrays"].items():
        dt = np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        out[name] = np.frombuffer(mm, dt, count=count, offset=start + offset).reshape(shape)
    return out


def is_mapped(array: np.ndarray) -> bool:
    """Whether ``array`` is a view of a memory map (a node cache file)."""
    base: Any = array
    while base is not None:
        if isinstance(base, mmap.mmap):
            return True
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return False


def _prune(directory: Path, keep: Path) -> None:
    now = time.time()
    for old in directory.glob("*.flat"):
        with contextlib.suppress(OSError):
            if old != keep and now - old.stat().st_atime > MAX_AGE_S and now - old.stat().st_mtime > MAX_AGE_S:
                old.unlink()


def shared_arrays(key: str | None, build: Callable[[], Mapping[str, np.ndarray]],
                  directory: Path | None = None) -> tuple[dict[str, np.ndarray], str]:
    """The arrays ``build()`` makes, memory-mapped from the node's file ``KEY.flat``; built and written by the
    first process that takes the file's lock, mapped by the others. Returns the arrays and where they came from:
    ``"mapped"`` (the file was there), ``"written"`` (built here, then mapped) or ``"memory"`` (no node cache:
    off, or the file could not be written)."""
    directory = directory if directory is not None else cache_dir()
    built: dict[str, np.ndarray] = {}

    def once() -> dict[str, np.ndarray]:
        if not built:
            built.update(build())
        return built

    if directory is None or key is None:  # no node cache, or nothing that names the content safely
        return once(), "memory"
    path = directory / f"{key}.flat"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError, ValueError):
            return map_arrays(path), "mapped"
        with open(directory / f"{key}.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the other ranks of the node wait here while one builds
            try:
                with contextlib.suppress(OSError, ValueError):
                    return map_arrays(path), "mapped"
                write_arrays(path, once())
                _prune(directory, path)
                return map_arrays(path), "written"
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    except OSError as err:
        logger.warning("The node cache %s cannot be used (%s): each process keeps its own copy of the annotations"
                       " (set %s to a writable local folder, or to off).", directory, err, ENV)
        return once(), "memory"


def wrapped_datasets(dataset: Any, holds: str, visit: Callable[[Any], None] | None = None) -> Iterator[Any]:
    """The datasets that hold the attribute ``holds`` (their annotations) under MMDetection's dataset wrappers, the
    same in both generations: ``ConcatDataset``'s ``datasets``, and the ``dataset`` of ``RepeatDataset``,
    ``ClassBalancedDataset`` and ``MultiImageMixDataset``. ``visit`` (optional) sees each wrapper on the way."""
    if hasattr(dataset, "datasets"):
        if visit is not None:
            visit(dataset)
        for inner in dataset.datasets:
            yield from wrapped_datasets(inner, holds, visit)
    elif hasattr(dataset, holds):
        yield dataset
    elif getattr(dataset, "dataset", None) is not None:
        if visit is not None:
            visit(dataset)
        yield from wrapped_datasets(dataset.dataset, holds, visit)
