"""Point the file-reading parts of an MMDetection config at one storage backend: the half both generations share.

The experiment's ``data.file_client_args`` (``{backend: s3|gcs|fake|disk, ...}``) is checked and normalised here,
then set on every loading step, dataset (and, in 3.x, metric) that the generation's ``config/file_client.py``
finds, under the name that generation's file I/O reads (2.x ``file_client_args``, 3.x ``backend_args``). Keys an
override wrote are left alone. Without the setting, object-store URIs in the datasets choose the backend.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

from model_hub_mmdet.config_tree import Path
from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.redact import redact
from model_hub_mmdet.storage.base import normalize_file_client_args

URI_BACKENDS = {"s3://": "s3", "gs://": "gcs", "gcs://": "gcs"}


def as_dict(cfg: Any) -> Mapping:
    """The root dict of a generation's ``Config`` (its ``ConfigDict``), or ``cfg`` itself when it is a dict."""
    return getattr(cfg, "_cfg_dict", cfg)


def storage_args(file_client_args: Mapping | None) -> dict | None:
    """``data.file_client_args`` as the file clients take it (an object store's ``prefix`` becomes ``key_prefix``),
    or None when it is not set; a one-line ConfigError when it is not a mapping naming a ``backend``."""
    if not file_client_args:
        return None
    if not isinstance(file_client_args, Mapping) or "backend" not in file_client_args:
        raise ConfigError(
            f"data.file_client_args must be a mapping with a 'backend' key (e.g. {{backend: s3, bucket_name: b}}),"
            f" got {redact(file_client_args)!r}"  # the rest may hold credentials
        )
    return normalize_file_client_args(copy.deepcopy(dict(file_client_args)))


def set_storage_args(
    nodes: Iterable[tuple[Path, MutableMapping]],
    name: str,
    args: Mapping,
    keep: Iterable[Path] = frozenset(),
    make_dict: Callable[[Mapping], Mapping] = dict,
) -> int:
    """Set ``node[name]`` to a copy of ``args`` on every ``(path, node)``, except where an override wrote
    ``<path>.<name>`` or a key below it (a path in ``keep``). Returns how many were set."""
    keep = tuple(keep)
    count = 0
    for path, node in nodes:
        target = path + (name,)
        if any(k[: len(target)] == target for k in keep):
            continue
        node[name] = make_dict(copy.deepcopy(dict(args)))
        count += 1
    return count


def backend_of_uris(values: Iterable[Any]) -> dict | None:
    """``{backend: s3|gcs}`` for the first of ``values`` (the datasets' paths) that is an object-store URI."""
    for value in values:
        for scheme, backend in URI_BACKENDS.items():
            if isinstance(value, str) and value.startswith(scheme):
                return {"backend": backend}
    return None
