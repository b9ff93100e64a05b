"""Fixtures shared by the config-pipeline tests: config files on disk, the tiny shapes dataset, offline guard."""

from __future__ import annotations

import ipaddress
import socket
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from model_hub_mmdet.tools.shapes import make_shapes


@pytest.fixture(scope="session")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny COCO dataset: ``root``, ``train``/``val`` annotation files, images under ``root/train|val``."""
    root = tmp_path_factory.mktemp("shapes")
    anns = make_shapes(root, train=8, val=4, size=64, seed=0)
    return {"root": root, **anns}


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str, str], Path]:
    """``write_config("rel/name.py", text)`` writes a dedented config file under ``tmp_path``."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every connection that leaves the machine, so a test proves it needs no network."""
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None:
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise OSError(f"test is offline: connection to {address} refused")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture(autouse=True)
def _restore_sys_path() -> Iterator[None]:
    """build_mmdet_config puts each test's context directory on sys.path; do not let hundreds pile up."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved


@pytest.fixture(autouse=True)
def _no_config_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's $MMDETECTION_CONFIG_DIR must not change which config a test resolves."""
    monkeypatch.delenv("MMDETECTION_CONFIG_DIR", raising=False)
