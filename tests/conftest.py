"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from helpers import free_port  # noqa: E402
from servers import Server, start_fake_gcs, start_moto  # noqa: E402

from model_hub_mmdet import generation  # noqa: E402
from model_hub_mmdet.tools.shapes import make_shapes  # noqa: E402

if generation.installed():
    generation.setup()  # the installed generation's fixes, before its tests import mmcv/mmdet


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny shapes dataset (8 train / 4 val images of 64 px), shared read-only by the session."""
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, train=8, val=4, size=64, seed=0)
    return root


@pytest.fixture
def det_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolate a Determined local run: checkpoints under tmp, free ports, cwd = tmp (local mode copies the
    working directory into every checkpoint)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("INTER_TRAIN_PROCESS_COMM_PORT_1", str(free_port()))
    monkeypatch.setenv("INTER_TRAIN_PROCESS_COMM_PORT_2", str(free_port()))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


@pytest.fixture(scope="session")
def moto() -> Iterator[Server]:
    """moto's S3 server on 127.0.0.1, shared by the session (tests make their own buckets)."""
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[Server]:
    """fake-gcs-server in memory on 127.0.0.1, shared by the session."""
    server = start_fake_gcs()
    yield server
    server.stop()
