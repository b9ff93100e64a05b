"""Downloads through the shared cache, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from weights_helpers import FileServer, sha256, zoo_style_path

from model_hub_mmdet.errors import WeightsError
from model_hub_mmdet.weights import download, zoo
from model_hub_mmdet.weights.download import cache_path, fetch

BODY = os.urandom(3 * (1 << 20) + 12345)  # a few chunks, not a multiple of any block size


def _zoo_url(server: FileServer, monkeypatch: pytest.MonkeyPatch, body: bytes, served: bytes | None = None, **kw):
    """Serve ``served`` (default ``body``) under a zoo-style path carrying ``body``'s hash; return the zoo URL."""
    path = zoo_style_path("tiny", body)
    server.add(path, body if served is None else served, **kw)
    monkeypatch.setenv(zoo.ZOO_URL_ENV, server.base)
    return zoo.OPENMMLAB_DOWNLOAD + path, path


def test_download_verifies_hash_then_hits_cache(file_server: FileServer, monkeypatch, weights_env: Path, caplog):
    caplog.set_level(logging.INFO, logger="model_hub_mmdet")
    url, path = _zoo_url(file_server, monkeypatch, BODY)
    local = fetch(zoo.zoo_url(url), zoo.expected_hash(url))
    assert local.read_bytes() == BODY
    assert local.is_relative_to(weights_env)
    assert not local.with_name(local.name + ".part").exists()
    assert len(file_server.gets(path)) == 1
    assert f"downloading {local.name}: 100% of 3.2 MB" in caplog.text  # progress in the logs (no tty here)
    assert fetch(zoo.zoo_url(url), zoo.expected_hash(url)) == local
    assert len(file_server.gets(path)) == 1  # served from the cache


def test_corrupted_download_is_rejected_and_removed(file_server: FileServer, monkeypatch):
    corrupted = bytearray(BODY)
    corrupted[1000] ^= 0xFF
    url, _ = _zoo_url(file_server, monkeypatch, BODY, served=bytes(corrupted))
    with pytest.raises(
        WeightsError, match=rf"corrupted: its sha256 starts with \w{{8}}, the file name promises {sha256(BODY)[:8]}"
    ):
        fetch(zoo.zoo_url(url), zoo.expected_hash(url))
    dest = cache_path(zoo.zoo_url(url))
    assert not dest.exists()
    assert not dest.with_name(dest.name + ".part").exists()


def test_resume_after_dropped_connection(file_server: FileServer, monkeypatch, caplog):
    monkeypatch.setattr(download, "MAX_BACKOFF_S", 0.0)  # retry at once; the retry logic itself is unchanged
    cut = (1 << 20) + 777
    url, path = _zoo_url(file_server, monkeypatch, BODY, drop_after=cut)
    local = fetch(zoo.zoo_url(url), zoo.expected_hash(url))
    assert local.read_bytes() == BODY
    assert file_server.gets(path) == [None, f"bytes={cut}-"]  # the second request continued where the first stopped
    assert "retrying" in caplog.text


def test_server_errors_are_retried_then_reported(file_server: FileServer, monkeypatch):
    monkeypatch.setattr(download, "MAX_BACKOFF_S", 0.0)
    url, path = _zoo_url(file_server, monkeypatch, BODY, fail_first=2)
    assert fetch(zoo.zoo_url(url), zoo.expected_hash(url)).read_bytes() == BODY
    assert len(file_server.gets(path)) == 3
    file_server.add("/down.pth", b"x", fail_first=100)
    with pytest.raises(WeightsError, match=r"/down.pth failed after 4 attempts: HTTP 503"):
        fetch(file_server.base + "/down.pth")


def test_leftover_part_from_a_killed_process_is_resumed(file_server: FileServer, monkeypatch):
    url, path = _zoo_url(file_server, monkeypatch, BODY)
    dest = cache_path(zoo.zoo_url(url))
    dest.parent.mkdir(parents=True)
    dest.with_name(dest.name + ".part").write_bytes(BODY[:5000])
    assert fetch(zoo.zoo_url(url), zoo.expected_hash(url)).read_bytes() == BODY
    assert file_server.gets(path) == ["bytes=5000-"]


_CHILD = """
import sys, time
from pathlib import Path
from model_hub_mmdet.weights.download import fetch
go = Path(sys.argv[3])
Path(sys.argv[4]).write_text("ready")
while not go.exists():
    time.sleep(0.01)
print(fetch(sys.argv[1], sys.argv[2]))
"""


def test_two_processes_share_one_download(file_server: FileServer, monkeypatch, tmp_path: Path):
    # Slow enough (~0.5 s) that both processes are inside fetch() at once.
    url, path = _zoo_url(file_server, monkeypatch, BODY, delay_s=0.01)
    go = tmp_path / "go"
    children = []
    for i in range(2):
        ready = tmp_path / f"ready{i}"
        cmd = [sys.executable, "-c", _CHILD, zoo.zoo_url(url), zoo.expected_hash(url), str(go), str(ready)]
        children.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), ready))
    while not all(r.exists() for _, r in children):
        assert all(p.poll() is None for p, _ in children), [p.communicate() for p, _ in children]
        time.sleep(0.05)
    go.write_text("go")
    outputs = [p.communicate(timeout=300) for p, _ in children]
    assert [p.returncode for p, _ in children] == [0, 0], outputs
    paths = {Path(out.strip().splitlines()[-1]) for out, _ in outputs}
    assert len(paths) == 1
    assert paths.pop().read_bytes() == BODY
    assert len(file_server.gets(path)) == 1  # one process downloaded, the other waited for it


def test_offline_error_says_how_to_use_a_local_file():
    with pytest.raises(WeightsError, match=r"cannot reach no-such-host\.invalid .*offline.*pretrained_weights"):
        fetch("https://no-such-host.invalid/weights/x.pth")


def test_http_errors_and_unsupported_schemes(file_server: FileServer):
    with pytest.raises(WeightsError, match="HTTP 404"):
        fetch(file_server.base + "/missing.pth")
    assert file_server.gets("/missing.pth") == [None]  # a 404 is not retried
    with pytest.raises(WeightsError, match="only http"):
        fetch("ftp://example.com/x.pth")


def test_cache_paths_stay_inside_the_cache(weights_env: Path):
    assert cache_path("https://h.example:8080/a/../../b.pth").is_relative_to(weights_env / "weights")
    assert cache_path("https://h/dir/x.pth") == weights_env / "weights" / "h" / "dir" / "x.pth"
    assert cache_path("https://h/x.pth?sig=1") != cache_path("https://h/x.pth?sig=2")
    # s3:// and gs:// weights live in the storage cache, keyed by their version: test_weights_buckets.py
