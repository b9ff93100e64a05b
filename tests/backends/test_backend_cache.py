"""The local object cache on its own: atomic entries, corruption detection, LRU eviction under a cap."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from model_hub_mmdet._fs import atomic_write
from model_hub_mmdet.storage.cache import ObjectCache, default_cache_dir, entry_name
from model_hub_mmdet.weights.download import cache_dir as weights_cache_dir


def _name(i: int) -> str:
    return entry_name(f"test|{i}")


def test_roundtrip_and_miss(tmp_path):
    cache = ObjectCache(tmp_path, max_bytes=10**6)
    assert cache.read(_name(0)) is None
    cache.write(_name(0), b"payload")
    assert cache.read(_name(0)) == b"payload"
    leftovers = [p for p in (tmp_path / "objects").rglob(".tmp*")]
    assert leftovers == []  # the temporary file was renamed into place


def test_truncated_or_corrupt_entries_are_dropped(tmp_path):
    cache = ObjectCache(tmp_path, max_bytes=10**6)
    data = os.urandom(5000)
    for i, damage in enumerate(("truncate", "flip", "empty")):
        cache.write(_name(i), data)
        path = cache.object_path(_name(i))
        raw = path.read_bytes()
        if damage == "truncate":
            path.write_bytes(raw[:3000])
        elif damage == "flip":
            path.write_bytes(raw[:100] + bytes([raw[100] ^ 0xFF]) + raw[101:])
        else:
            path.write_bytes(b"")
        assert cache.read(_name(i)) is None, damage
        assert not path.exists(), damage


def test_eviction_removes_least_recently_used_first(tmp_path):
    cache = ObjectCache(tmp_path, max_bytes=10**6)
    now = time.time()
    for i in range(5):
        cache.write(_name(i), bytes(1000))
        os.utime(cache.object_path(_name(i)), (now - 1000 + i, now - 1000 + i))
    os.utime(cache.object_path(_name(0)), (now, now))  # 0 was used most recently
    assert cache.eviction_count() == 0
    remaining = cache.evict(target_bytes=2 * 1016)
    kept = [i for i in range(5) if cache.contains(_name(i))]
    assert kept == [0, 4] and remaining == 2 * 1016
    assert cache.eviction_count() == 1  # other processes learn that entries they knew are gone
    cache.evict(target_bytes=2 * 1016)
    assert cache.eviction_count() == 1  # nothing evicted, nothing to forget


def test_writes_keep_the_cache_under_its_cap(tmp_path):
    cap = 10 * 1016
    cache = ObjectCache(tmp_path, max_bytes=cap, flush_bytes=1)  # report every write
    for i in range(40):
        cache.write(_name(i), bytes(1000))
        assert int((tmp_path / "size").read_text()) <= cap
    on_disk = sum(p.stat().st_size for p in (tmp_path / "objects").rglob("*") if p.is_file())
    assert 0 < on_disk <= cap
    assert cache.read(_name(39)) == bytes(1000)  # the newest survived


def test_shared_total_counts_other_processes_writes(tmp_path):
    a = ObjectCache(tmp_path, max_bytes=10**6, flush_bytes=1)
    b = ObjectCache(tmp_path, max_bytes=10**6, flush_bytes=1)
    a.write(_name(1), bytes(100))
    b.write(_name(2), bytes(100))
    assert int((tmp_path / "size").read_text()) == 2 * 116


def test_objects_larger_than_the_cache_are_not_cached(tmp_path):
    cache = ObjectCache(tmp_path, max_bytes=100)
    assert cache.write(_name(0), bytes(200)) is False
    assert cache.read(_name(0)) is None


def test_stale_temporary_files_are_cleaned_by_eviction(tmp_path):
    cache = ObjectCache(tmp_path, max_bytes=10**6)
    cache.write(_name(0), b"x")
    stale = cache.object_path(_name(0)).parent / ".tmpcrashed"
    stale.write_bytes(b"partial")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    cache.evict()
    assert not stale.exists() and cache.read(_name(0)) == b"x"


def test_local_file_is_verified_and_refetched_when_damaged(tmp_path):
    cache = ObjectCache(tmp_path, max_bytes=10**6)
    calls = []

    def download(f):
        calls.append(1)
        f.write(b'{"images": []}')

    path = cache.local_file(_name(7), "ann.json", download)
    assert path.read_bytes() == b'{"images": []}' and path.name == "ann.json"
    assert cache.local_file(_name(7), "ann.json", download) == path and len(calls) == 1
    path.write_bytes(b'{"images": [')  # truncated by something outside our control
    assert cache.local_file(_name(7), "ann.json", download).read_bytes() == b'{"images": []}'
    assert len(calls) == 2


def test_a_claim_makes_others_wait_for_the_entry(tmp_path):
    mine, other = ObjectCache(tmp_path, max_bytes=10**6), ObjectCache(tmp_path, max_bytes=10**6)
    assert mine.claim(_name(0))
    assert not other.claim(_name(0))  # fetched by someone else right now
    writer = threading.Timer(0.2, lambda: (mine.write(_name(0), b"image"), mine.release(_name(0))))
    writer.start()
    assert other.wait_for(_name(0)) == b"image"
    writer.join()
    assert other.claim(_name(1))  # claims are per entry
    other.release(_name(1))
    assert other.claim(_name(1))  # and released ones can be claimed again


def test_a_failed_or_dead_claim_does_not_block_others(tmp_path):
    mine, other = ObjectCache(tmp_path, max_bytes=10**6), ObjectCache(tmp_path, max_bytes=10**6, claim_timeout=30)
    assert mine.claim(_name(0))
    threading.Timer(0.1, mine.release, args=[_name(0)]).start()  # the fetch failed: released, nothing written
    assert other.wait_for(_name(0)) is None
    assert mine.claim(_name(1))
    claim = next((tmp_path / "objects").rglob(".claim-*"))
    os.utime(claim, (time.time() - 60, time.time() - 60))  # its process died a minute ago
    start = time.monotonic()
    assert other.wait_for(_name(1)) is None and time.monotonic() - start < 5  # not waited for ...
    assert other.claim(_name(1))  # ... and taken over
    mine.write(_name(2), bytes(100))
    assert mine.evict(target_bytes=10**6) == 116  # claim files are not counted as entries


def test_one_cache_root_for_storage_and_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("MODEL_HUB_MMDET_CACHE_DIR", raising=False)
    monkeypatch.delenv("MODEL_HUB_MMDET_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "model_hub_mmdet" / "storage"
    assert weights_cache_dir() == tmp_path / "xdg" / "model_hub_mmdet" / "weights"
    monkeypatch.setenv("MODEL_HUB_MMDET_CACHE", str(tmp_path / "root"))
    assert (default_cache_dir(), weights_cache_dir()) == (tmp_path / "root" / "storage", tmp_path / "root" / "weights")
    monkeypatch.setenv("MODEL_HUB_MMDET_CACHE_DIR", str(tmp_path / "old-storage"))  # deprecated, still honoured
    assert (default_cache_dir(), weights_cache_dir()) == (tmp_path / "old-storage", tmp_path / "root" / "weights")


def test_atomic_write_publishes_whole_files_only(tmp_path: Path):
    target = tmp_path / "model.pth"
    atomic_write(target, lambda f: f.write(b"old"))
    with pytest.raises(RuntimeError):
        atomic_write(target, lambda f: (f.write(b"half of the new"), (_ for _ in ()).throw(RuntimeError("disk"))))
    assert target.read_bytes() == b"old"  # the failed write left the old file, and no temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # private by default (cache entries)
    umask = os.umask(0o022)
    try:
        atomic_write(target, lambda f: f.write(b"shared"), private=False)
    finally:
        os.umask(umask)
    assert target.read_bytes() == b"shared" and stat.S_IMODE(target.stat().st_mode) == 0o644  # what the umask gives
