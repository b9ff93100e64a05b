"""Local files shared by the storage cache, the weights cache and export: the cache root and atomic writes.

**One cache root.** ``$MODEL_HUB_MMDET_CACHE`` (default ``$XDG_CACHE_HOME/model_hub_mmdet``, i.e.
``~/.cache/model_hub_mmdet``) holds everything this package caches on a machine:

* ``weights/``: HTTP(S) downloads (model zoo checkpoints, backbones), see :mod:`model_hub_mmdet.weights.download`;
* ``storage/``: objects read from S3/GCS, data and ``s3://``/``gs://`` weights alike, see
  :mod:`model_hub_mmdet.storage.cache` (``data.file_client_args.cache_dir`` moves it).

``$MODEL_HUB_MMDET_CACHE_DIR`` (deprecated) still names the ``storage/`` directory itself when set.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

CACHE_ENV = "MODEL_HUB_MMDET_CACHE"


def cache_root() -> Path:
    """``$MODEL_HUB_MMDET_CACHE``, else ``$XDG_CACHE_HOME/model_hub_mmdet`` (``~/.cache/model_hub_mmdet``)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "model_hub_mmdet"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object], private: bool = True) -> None:
    """Write ``path`` through ``write(fileobj)`` into a temporary sibling (named ``.tmp...``), then rename it into
    place: readers see the old file or the whole new one, never a part. On any error the temporary file is removed.

    ``private``: the file is readable by its owner only (cache entries); else it gets the permissions the umask
    gives new files (an exported model other people may read)."""
    parent = os.path.dirname(os.fspath(path)) or "."
    if private:
        fd, tmp = tempfile.mkstemp(prefix=".tmp", dir=parent)
    else:
        tmp = os.path.join(parent, f".tmp{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
