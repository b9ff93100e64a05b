"""The core's flat record buffers and the node cache that shares them between processes (node_cache.py)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from model_hub_mmdet.node_cache import (
    FlatList,
    cache_key,
    is_mapped,
    map_arrays,
    shared_arrays,
    write_arrays,
)

RECORDS = [{"id": 1, "bbox": [1.5, 2.0, 3.0, 4.0], "name": "a"}, {}, {"id": 2, "nested": {"x": [None, True]}},
           [1, (2, 3)], "text", 7, 2.5]


@pytest.mark.parametrize("codec", ["pickle", "marshal"])
def test_flat_list_is_a_read_only_sequence_of_the_records(codec: str) -> None:
    flat = FlatList.from_items(RECORDS, codec)
    assert len(flat) == len(RECORDS) and list(flat) == RECORDS and flat.codec == codec
    assert flat[0] == RECORDS[0] and flat[-1] == RECORDS[-1] and flat[np.int64(3)] == [1, (2, 3)]
    assert flat[1:4] == RECORDS[1:4] and flat[::-2] == RECORDS[::-2]
    for bad in (len(RECORDS), -len(RECORDS) - 1):
        with pytest.raises(IndexError):
            flat[bad]
    with pytest.raises(TypeError):
        flat[0] = {}  # type: ignore[index]
    record = flat[0]
    record["id"] = 99  # a decoded copy: the buffer does not change
    assert flat[0]["id"] == 1
    assert list(pickle.loads(pickle.dumps(flat))) == RECORDS
    assert list(FlatList.from_items([])) == []


def test_numpy_records_are_pickled_as_arrays() -> None:
    records = [{"bboxes": np.arange(8, dtype=np.float32).reshape(2, 4)}, {"bboxes": np.zeros((0, 4), np.float32)}]
    flat = FlatList.from_items(records)
    assert all(np.array_equal(a["bboxes"], b["bboxes"]) and a["bboxes"].dtype == b["bboxes"].dtype
               for a, b in zip(records, flat))


def test_written_arrays_map_back_read_only(tmp_path: Path) -> None:
    arrays = {"a": np.arange(10, dtype=np.int64), "b": np.frombuffer(b"xyz", np.uint8),
              "c": np.ones((3, 5), np.float32), "empty": np.zeros(0, np.uint8),
              **FlatList.from_items(RECORDS).arrays("r")}
    write_arrays(tmp_path / "x.flat", arrays)
    mapped = map_arrays(tmp_path / "x.flat")
    assert list(mapped) == list(arrays)
    for name, array in arrays.items():
        assert mapped[name].dtype == array.dtype and np.array_equal(mapped[name], array), name
        assert is_mapped(mapped[name]) and not mapped[name].flags.writeable
    assert list(FlatList.from_arrays(mapped, "r")) == RECORDS
    assert not is_mapped(arrays["a"])
    (tmp_path / "bad.flat").write_bytes(b"not a cache file")
    with pytest.raises(ValueError):
        map_arrays(tmp_path / "bad.flat")


def test_cache_key_follows_the_file_and_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "ann.json"
    path.write_text("{}")
    key = cache_key(path, classes=("a", "b"))
    assert key == cache_key(path, classes=("a", "b")) != cache_key(path, classes=("a",))
    path.write_text("{} ")  # another size (and mtime)
    assert cache_key(path, classes=("a", "b")) != key
    # no file to tell versions apart: no node file at all (see the next test)
    assert cache_key(tmp_path / "missing.json") is None and cache_key(None) is None


def test_shared_arrays_built_once_then_mapped(tmp_path: Path) -> None:
    calls = []

    def build() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"v": np.arange(5)}

    first, how1 = shared_arrays("k", build, tmp_path)
    second, how2 = shared_arrays("k", build, tmp_path)
    assert (how1, how2, len(calls)) == ("written", "mapped", 1)
    assert np.array_equal(first["v"], np.arange(5)) and is_mapped(second["v"])


def test_off_and_unwritable_keep_arrays_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("MODEL_HUB_MMDET_NODE_CACHE", "off")
    arrays, how = shared_arrays("k", lambda: {"v": np.arange(3)})
    assert how == "memory" and not is_mapped(arrays["v"])
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the folder should be
    with caplog.at_level(logging.WARNING, logger="model_hub_mmdet"):
        arrays, how = shared_arrays("k", lambda: {"v": np.arange(3)}, blocker / "sub")
    assert how == "memory" and np.array_equal(arrays["v"], np.arange(3))
    assert "MODEL_HUB_MMDET_NODE_CACHE" in caplog.text


def _rank(folder: str, log: str, queue: multiprocessing.Queue) -> None:
    def build() -> dict[str, np.ndarray]:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return {"v": np.arange(1000, dtype=np.int64)}

    arrays, how = shared_arrays("same", build, Path(folder))
    queue.put((how, int(arrays["v"].sum())))


def test_ranks_of_a_node_build_once(tmp_path: Path) -> None:
    """Four processes asking at once: one builds and writes, the other three wait for its lock and map the file."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    log = tmp_path / "builds.txt"
    procs = [ctx.Process(target=_rank, args=(str(tmp_path / "cache"), str(log), queue)) for _ in range(4)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert len(log.read_text().split()) == 1
    assert results == [("mapped", 499500)] * 3 + [("written", 499500)]
    assert len(list((tmp_path / "cache").glob("*.flat"))) == 1


def test_a_file_that_is_not_here_is_never_keyed_by_its_settings_alone(tmp_path: Path) -> None:
    """An annotation file in a bucket has no size or mtime here: two of them with the same settings (the same image
    ids) must not map each other's arrays, so they are kept per process unless the settings name the content."""
    from model_hub_mmdet.node_cache import cache_key, shared_arrays

    assert cache_key("s3://bucket/a/val.json", records=4) is None
    arrays, how = shared_arrays(None, lambda: {"x": np.arange(3)}, directory=tmp_path)
    assert how == "memory" and arrays["x"].tolist() == [0, 1, 2] and not list(tmp_path.iterdir())
    by_content = cache_key("s3://bucket/a/val.json", by_content=True, crc=1)
    assert by_content and by_content != cache_key("s3://bucket/b/val.json", by_content=True, crc=1)
