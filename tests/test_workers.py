"""Loader workers run below the training process's priority when training is on the CPU (data.worker_niceness),
with glibc's malloc thresholds fixed (workers.bound_heap)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import tiny_experiment
from mmcv.parallel import DataContainer

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.local import train_local
from model_hub_mmdet.mmdet2.data import build_train_loader, build_val_loader
from model_hub_mmdet.mmdet2.trial import MMDetTrial
from model_hub_mmdet.tools.check import check_experiment
from model_hub_mmdet.workers import CPU_NICENESS, worker_niceness


class NicenessReporting(torch.utils.data.Dataset):
    """Each sample says the niceness of the process that loaded it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, idx: int) -> dict:
        return {
            "img": DataContainer(torch.zeros(3, 4, 4), stack=True),
            "nice": DataContainer(os.nice(0), cpu_only=True),
        }


def loaded_niceness(batch: dict) -> set[int]:
    return set(batch["nice"].data[0])


def test_auto_is_the_lowest_priority_on_the_cpu_and_unchanged_on_a_gpu() -> None:
    assert worker_niceness(None, "cpu") == worker_niceness("auto", "cpu") == CPU_NICENESS == 19
    assert worker_niceness("auto", "cuda") == worker_niceness(None, "cuda") == 0
    assert worker_niceness(5, "cuda") == 5 and worker_niceness(0, "cpu") == 0


@pytest.mark.parametrize("bad", [True, -1, 20, "high", 2.5])
def test_a_bad_setting_is_one_line_naming_it(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^data\.worker_niceness must be auto or an integer from 0") as err:
        worker_niceness(bad, "cpu")
    assert "\n" not in str(err.value)


def test_training_and_validation_workers_run_at_the_niceness_asked_for() -> None:
    base = os.nice(0)
    expected = min(base + 7, 19)
    train = iter(build_train_loader(NicenessReporting(), batch_size=2, num_workers=2, seed=0, worker_niceness=7))
    assert loaded_niceness(next(train)) | loaded_niceness(next(train)) == {expected}
    val = build_val_loader(NicenessReporting(), batch_size=2, num_workers=1, worker_niceness=7)
    assert {n for batch in val for n in loaded_niceness(batch)} == {expected}
    plain = iter(build_train_loader(NicenessReporting(), batch_size=2, num_workers=1, seed=0))
    assert loaded_niceness(next(plain)) == {base}
    assert os.nice(0) == base  # the training process keeps its priority


def test_the_trial_on_the_cpu_gives_its_workers_the_lowest_priority(shapes_dir: Path, det_local: Path) -> None:
    seen = {}

    class Probe(MMDetTrial):
        def train_batch(self, batch, epoch_idx, batch_idx):
            seen["worker"] = {m["nice"] for m in batch["img_metas"].data[0]}
            return super().train_batch(batch, epoch_idx, batch_idx)

        def build_train_dataset(self):
            dataset = super().build_train_dataset()
            original = dataset.pipeline

            def pipeline(results):  # mmdet's pipeline, and the niceness of the process running it
                out = original(results)
                out["img_metas"].data["nice"] = os.nice(0)
                return out

            dataset.pipeline = pipeline
            return dataset

    exp = tiny_experiment(shapes_dir, max_batches=1, overrides={"data.workers_per_gpu": 1})
    train_local(exp, Probe)
    assert seen["worker"] == {min(os.nice(0) + CPU_NICENESS, 19)}


def test_check_refuses_a_bad_setting(shapes_dir: Path, tmp_path: Path) -> None:
    import yaml

    exp = tiny_experiment(shapes_dir, data={"worker_niceness": 40})
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    report = check_experiment(path)
    assert any("data.worker_niceness must be auto or an integer from 0" in p for p in report.problems), report.problems


def run_probe(code: str, setting: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python (its own heap) with MODEL_HUB_MMDET_WORKER_MALLOC set to ``setting``."""
    env = dict(os.environ, MODEL_HUB_MMDET_WORKER_MALLOC=setting)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)


# In a fresh Python (a heap with no large free chunk to reuse): free a 1 MiB block, then say whether the next one
# was mapped on its own (glibc's threshold fixed) or taken from the heap (its default: the threshold rose to 1 MiB).
MMAP_PROBE = """
import ctypes, ctypes.util, sys
from model_hub_mmdet import workers
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
bounded = workers.bound_heap()
libc.free(libc.malloc(1 << 20))
before = libc.mallinfo2().hblkhd
block = libc.malloc(1 << 20)
print(bounded, libc.mallinfo2().hblkhd - before >= 1 << 20)
"""


@pytest.mark.skipif(not ctypes.util.find_library("c") or not hasattr(ctypes.CDLL(ctypes.util.find_library("c")),
                                                                     "mallinfo2"), reason="glibc >= 2.33 only")
@pytest.mark.parametrize("setting", ["1", "0"])
def test_a_bounded_heap_sends_freed_image_sized_blocks_back_unless_told_not_to(setting: str) -> None:
    out = run_probe(MMAP_PROBE, setting)
    assert out.stdout.split() == [str(setting == "1")] * 2, out


class HeapReporting(torch.utils.data.Dataset):
    """Each sample says whether the worker that loaded it bounded its heap."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, idx: int) -> dict:
        from model_hub_mmdet import workers

        return {"img": DataContainer(torch.zeros(3, 4, 4), stack=True),
                "bounded": DataContainer(workers.heap_bounded, cpu_only=True)}


def test_training_and_validation_workers_bound_their_heap_and_the_training_process_does_not() -> None:
    from model_hub_mmdet import workers

    train = iter(build_train_loader(HeapReporting(), batch_size=2, num_workers=1, seed=0))
    assert set(next(train)["bounded"].data[0]) == {True}
    val = build_val_loader(HeapReporting(), batch_size=2, num_workers=1)
    assert {b for batch in val for b in batch["bounded"].data[0]} == {True}
    assert workers.heap_bounded is False


# In a fresh Python: 64 MiB of 32 KiB heap blocks written and freed, one kept at the top so glibc cannot shrink the
# heap by itself; the private memory before and after release_free_heap, in KiB.
TRIM_PROBE = """
import ctypes, ctypes.util
from model_hub_mmdet import workers
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
def private_kb():
    return sum(int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith("Private_"))
blocks = [libc.malloc(32 << 10) for _ in range(2048)]
for b in blocks:
    ctypes.memset(b, 1, 32 << 10)
for b in blocks[:-1]:
    libc.free(b)
before = private_kb()
trimmed = workers.release_free_heap()
print(trimmed, before - private_kb())
"""


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists() or not ctypes.util.find_library("c"),
                    reason="Linux with glibc only")
@pytest.mark.parametrize("setting", ["1", "0"])
def test_the_heap_freed_before_the_workers_fork_goes_back_to_the_system(setting: str) -> None:
    out = run_probe(TRIM_PROBE, setting)
    trimmed, released_kb = out.stdout.split()
    assert trimmed == str(setting == "1")
    assert (int(released_kb) > 40 << 10) == (setting == "1"), out.stdout


# In a fresh Python: 16 MiB of 2 KiB heap blocks, every other one freed (a hole in every page); then a forked child
# allocates 1,000 blocks of 2 KiB. Printed: the holes plugged before the fork, and how many of the child's blocks
# went into the old part of the heap (more than 256 KiB below the break at the fork) instead of its top.
PLUG_PROBE = """
import ctypes, ctypes.util, os
from model_hub_mmdet import workers
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
libc.sbrk.restype, libc.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_ssize_t]
blocks = [libc.malloc(2000) for _ in range(8192)]
for b in blocks[::2]:
    libc.free(b)
plugged = workers.plug_heap_holes()
top = libc.sbrk(0)
read, write = os.pipe()
if os.fork() == 0:
    new = [libc.malloc(2000) for _ in range(1000)]
    os.write(write, str(sum(b < top - (256 << 10) for b in new)).encode())
    os._exit(0)
os.wait()
print(plugged, os.read(read, 64).decode())
"""


@pytest.mark.skipif(not ctypes.util.find_library("c") or not hasattr(ctypes.CDLL(ctypes.util.find_library("c")),
                                                                     "sbrk"), reason="glibc only")
@pytest.mark.parametrize("setting", ["1", "0"])
def test_a_forked_worker_allocates_at_the_top_of_the_heap_once_the_holes_are_plugged(setting: str) -> None:
    out = run_probe(PLUG_PROBE, setting)
    plugged, in_old_pages = map(int, out.stdout.split())
    if setting == "1":
        assert plugged >= 4000 and in_old_pages == 0, out.stdout
    else:
        assert plugged == 0 and in_old_pages > 900, out.stdout  # (a few come from glibc's per-thread cache)
