"""Fixtures of the weights tests: a file server, a private cache per test, a small real mmdet checkpoint."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from weights_helpers import FileServer, build_tiny, file_handler, mmdet_checkpoint_bytes, tiny_detector_cfg


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    """A file server on a free port of 127.0.0.1, stopped after the test."""
    state = FileServer(port=0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), file_handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def weights_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private weights cache and mmcv home per test, fast retries, no zoo redirections unless a test sets them."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MODEL_HUB_MMDET_CACHE", str(cache))
    monkeypatch.setenv("MODEL_HUB_MMDET_DOWNLOAD_RETRIES", "3")
    monkeypatch.setenv("MMCV_HOME", str(tmp_path / "mmcv_home"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MODEL_HUB_MMDET_ZOO_URL", raising=False)
    monkeypatch.delenv("MODEL_HUB_MMDET_ZOO_INDEX", raising=False)
    return cache


@pytest.fixture(scope="session")
def coco_checkpoint() -> bytes:
    """A small real mmdet checkpoint of the tiny detector with an 80-class (COCO) head, like a zoo file."""
    model = build_tiny(tiny_detector_cfg(num_classes=80), seed=1)  # other weights than seed 0
    return mmdet_checkpoint_bytes(model, tuple(f"class{i}" for i in range(80)))
