"""Each fix in ``model_hub_mmdet.mmdet2.patches`` exercised through the code path that needed it.

Every test also shows, where it can be shown in-process, that the path really fails without the fix, so the
test cannot pass by accident."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model_hub_mmdet import generation
from model_hub_mmdet.mmdet2 import patches as compat
from model_hub_mmdet.tools.shapes import CLASSES, make_shapes

generation.setup()  # applies the fixes


# ------------------------------------------------------------------------------------------ numpy 2 aliases
def test_aliases_are_the_builtins_and_restoring_is_idempotent() -> None:
    assert (np.int, np.float, np.object, np.str) == (int, float, object, str)
    assert compat.restore_numpy_aliases() == []  # already there: nothing added twice
    assert np.bool is np.bool_  # numpy 2 brought np.bool back as its own type: left alone


@pytest.fixture(scope="module")
def middle_format_ann(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shapes dataset in mmdet's "middle" format (a pickle), which plain ``CustomDataset`` reads."""
    root = tmp_path_factory.mktemp("compat_shapes")
    coco = json.loads(make_shapes(root, train=8, val=1, size=64, seed=0)["train"].read_text())
    labels = {c["id"]: i for i, c in enumerate(coco["categories"])}
    infos = []
    for image in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
        infos.append(
            {
                "filename": image["file_name"],
                "width": image["width"],
                "height": image["height"],
                "ann": {
                    "bboxes": np.array(boxes, np.float32).reshape(-1, 4),
                    "labels": np.array([labels[a["category_id"]] for a in anns], np.int64),
                },
            }
        )
    path = root / "train.pkl"
    path.write_bytes(pickle.dumps(infos))
    return path


def test_class_balanced_dataset_calls_custom_get_cat_ids(middle_format_ann: Path, monkeypatch) -> None:
    from mmdet.datasets import ClassBalancedDataset, CustomDataset

    dataset = CustomDataset(str(middle_format_ann), pipeline=[], classes=CLASSES, img_prefix="unused/")
    assert len(dataset) == 8
    expected = sorted({int(c) for info in dataset.data_infos for c in info["ann"]["labels"]})
    assert sorted(set(dataset.get_cat_ids(0)) | {c for i in range(8) for c in dataset.get_cat_ids(i)}) == expected
    balanced = ClassBalancedDataset(dataset, oversample_thr=1.0)  # every class is rarer than 100%: repeats
    assert len(balanced) > len(dataset)

    monkeypatch.delattr(np, "int")  # without the fix: mmdet's astype(np.int)
    with pytest.raises(AttributeError, match="int"):
        ClassBalancedDataset(dataset, oversample_thr=1.0)


def test_libra_iou_balanced_sampler_uses_np_int(monkeypatch) -> None:
    from mmdet.core.bbox.samplers import IoUBalancedNegSampler

    sampler = IoUBalancedNegSampler(num=64, pos_fraction=0.25, floor_thr=0, num_bins=3)
    overlaps = np.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.45], np.float32)
    picked = sampler.sample_via_interval(overlaps, set(range(7)), num_expected=30)
    assert sorted(picked.tolist()) == [0, 1, 2, 3, 4, 5, 6]
    monkeypatch.delattr(np, "int")
    with pytest.raises(AttributeError, match="int"):
        sampler.sample_via_interval(overlaps, set(range(7)), num_expected=30)


# ------------------------------------------------------------------------------ torch.load weights_only=True
def _checkpoint_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _numpy_state() -> dict:
    return {
        "rng": np.random.RandomState(7).get_state(),  # what Determined's trial_state holds
        "f64": np.float64(1.5),
        "f32": np.float32(0.25),
        "i64": np.int64(3),
        "u8": np.uint8(200),
        "flag": np.bool_(True),
        "arr": np.arange(6, dtype=np.float32).reshape(2, 3),
        "meta": {"epoch": np.int64(12), "iter": 1000, "mmdet_version": "2.28.2"},  # an mmcv checkpoint's meta
        "state_dict": {"w": torch.ones(2)},
    }


def _assert_same(loaded: dict, original: dict) -> None:
    name, keys, pos, has_gauss, cached = loaded["rng"]
    assert (name, pos, has_gauss, cached) == original["rng"][:1] + original["rng"][2:]
    np.testing.assert_array_equal(keys, original["rng"][1])
    for key in ("f64", "f32", "i64", "u8", "flag"):
        assert loaded[key] == original[key] and type(loaded[key]) is type(original[key])
    np.testing.assert_array_equal(loaded["arr"], original["arr"])
    assert loaded["meta"] == original["meta"]
    assert torch.equal(loaded["state_dict"]["w"], original["state_dict"]["w"])


def test_numpy_state_loads_with_weights_only() -> None:
    original = _numpy_state()
    data = _checkpoint_bytes(original)
    _assert_same(torch.load(io.BytesIO(data), weights_only=True), original)
    _assert_same(torch.load(io.BytesIO(data)), original)  # the default (Determined passes nothing) is safe mode
    state = np.random.RandomState()
    state.set_state(torch.load(io.BytesIO(data), weights_only=True)["rng"])
    assert state.randint(0, 10**9) == np.random.RandomState(7).randint(0, 10**9)  # a usable RNG state


def test_without_the_allow_list_the_same_load_fails() -> None:
    data = _checkpoint_bytes(_numpy_state())
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            torch.load(io.BytesIO(data), weights_only=True)
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)
    assert torch.load(io.BytesIO(data), weights_only=True)["i64"] == 3


class Executable:
    """A class a malicious checkpoint might smuggle in inside an object array."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_object_arrays_of_arbitrary_objects_stay_refused() -> None:
    evil = np.empty(1, dtype=object)
    evil[0] = Executable()
    with pytest.raises(pickle.UnpicklingError, match="print|builtins"):
        torch.load(io.BytesIO(_checkpoint_bytes({"x": evil})), weights_only=True)


def test_allow_list_holds_only_numpy_data_types() -> None:
    allowed = compat.numpy_safe_globals()
    assert np.ndarray in allowed and np.dtype in allowed
    assert all(getattr(g, "__module__", "").startswith("numpy") for g in allowed)
    assert not any(getattr(g, "__name__", "") == "StringDType" for g in allowed)


# ----------------------------------------------------------------------------------------------- mmcv banner
BANNER = "MMCV will release v2.0.0"


def _stderr_of(code: str) -> str:
    run = subprocess.run(
        [sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return run.stderr


def test_importing_mmcv_after_the_package_prints_no_banner() -> None:
    assert BANNER not in _stderr_of("import model_hub_mmdet, mmcv")


def test_plain_mmcv_import_does_print_the_banner() -> None:
    assert BANNER in _stderr_of("import mmcv")  # the warning this fix exists for


# ------------------------------------------------------------------------- warning filters after COCO evaluation
_EVALUATE_THEN_WARN = """
import sys, warnings
import numpy as np, pycocotools.mask as mask_util
from model_hub_mmdet import generation; generation.setup()  # applies the fixes
from mmdet.datasets import CocoDataset, coco
if sys.argv[2] == "unfixed":
    coco.warnings = warnings
dataset = CocoDataset(ann_file=sys.argv[1], pipeline=[], test_mode=True, classes=("rectangle", "ellipse", "triangle"))
results = []
for info in dataset.data_infos:
    mask = np.zeros((info["height"], info["width"]), np.uint8, order="F")
    mask[2:10, 2:10] = 1
    box = np.array([[2, 2, 10, 10, 0.9]], np.float32)
    empty = np.zeros((0, 5), np.float32)
    results.append(([box, empty, empty], [[mask_util.encode(mask)], [], []]))
print(dataset.evaluate(results, metric=["bbox", "segm"])["segm_mAP"] >= 0)
import pathspec
pathspec.PathSpec.from_lines(pathspec.patterns.GitWildMatchPattern, ["*.py"])  # what Determined's .detignore does
"""


@pytest.mark.parametrize("variant", ["fixed", "unfixed"])
def test_coco_evaluation_leaves_the_warning_filters_alone(tmp_path: Path, variant: str) -> None:
    ann = make_shapes(tmp_path, train=1, val=2, size=32, seed=0)["val"]
    run = subprocess.run([sys.executable, "-c", _EVALUATE_THEN_WARN, str(ann), variant],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith("True")
    if variant == "fixed":  # neither mmdet's bbox-key warning nor pathspec's deprecation reaches the console
        assert 'The key "bbox" is deleted' not in run.stderr and "GitWildMatchPattern" not in run.stderr, run.stderr
    else:  # mmdet's simplefilter('once') overrides the package's filters: what the fix exists for
        assert "GitWildMatchPattern" in run.stderr
