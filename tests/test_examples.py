"""Every shipped experiment (maskrcnn.yaml, examples/**) runs in test mode as a user runs it
(``model-hub-mmdet train EXP --local --test``), on tiny data: the shapes demo's where it trains on shapes, a
COCO-2017-like file where it names COCO (paths, image sizes and batch rewritten here, nothing downloaded)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from coco2017 import make_coco2017_like

from model_hub_mmdet.tools.cli import main
from model_hub_mmdet.tools.shapes import make_shapes

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(
    str(p.relative_to(REPO))
    for p in [REPO / "maskrcnn.yaml", *REPO.glob("examples/**/*.yaml")]
    if "hydra/conf" not in str(p) and "mmdet3" not in p.name  # hydra: composed below; mmdet3: the 3.x suite's
)
HYDRA = {"hydra-shapes": [], "hydra-coco": ["hparams=coco_faster_rcnn"]}


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_coco2017_like(tmp_path_factory.mktemp("coco"), images=6, size=96, all_categories=True)


def on_tiny_coco(exp: dict[str, Any], ann: Path) -> dict[str, Any]:
    """An experiment naming COCO, on the tiny COCO file: local paths, 128 px images, batch 2, no download."""
    exp = copy.deepcopy(exp)
    exp.pop("data", None)  # the bucket of the real dataset: the storage backends have their own tests
    exp.pop("bind_mounts", None)
    hp = exp["hyperparameters"]
    hp.update(global_batch_size=2, use_pretrained=False)
    over = hp.setdefault("override_mmdet_config", {})
    over.update({"data_root": str(ann.parent) + "/", "data.workers_per_gpu": 0, "model.backbone.init_cfg": None,
                 "data.train.pipeline.2.img_scale": [128, 96]})
    for split in ("train", "val", "test"):
        over[f"data.{split}.ann_file"] = str(ann)
        over[f"data.{split}.img_prefix"] = str(ann.parent / "images") + "/"
        if split != "train":
            over[f"data.{split}.pipeline.1.img_scale"] = [128, 96]
    exp["resources"] = {"slots_per_trial": 1}
    return exp


def names_coco(exp: dict[str, Any]) -> bool:
    return "examples/shapes" not in str(exp["hyperparameters"].get("config_file")) and \
        "examples/custom_dataset" not in str(exp["hyperparameters"].get("config_file"))


def run_test_mode(exp: dict[str, Any], work: Path, capsys: pytest.CaptureFixture) -> str:
    path = work / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    rc = main(["train", str(path), "--local", "--test", "--out", str(work / "out")])
    out, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    return out


@pytest.fixture
def context(det_local: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A context directory as the repository's: the examples, and the shapes demo data at data/shapes (tiny)."""
    work = Path.cwd()
    shutil.copytree(REPO / "examples", work / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    make_shapes(work / "data" / "shapes", train=8, val=2, size=64, seed=0)
    monkeypatch.syspath_prepend(str(work))
    for name in [m for m in sys.modules if m == "examples" or m.startswith("examples.")]:
        monkeypatch.delitem(sys.modules, name)
    # the copy's modules are imported afresh: classes an earlier test registered from the repository's examples
    # (ShapesDataset) leave mmdet's registry for this test, as in a new process
    from mmdet.datasets import DATASETS

    monkeypatch.delitem(DATASETS._module_dict, "ShapesDataset", raising=False)
    return work


@pytest.mark.parametrize("path", EXPERIMENTS)
def test_every_shipped_experiment_runs_in_test_mode(
    path: str, context: Path, tiny_coco: Path, capsys: pytest.CaptureFixture
) -> None:
    exp = yaml.safe_load((REPO / path).read_text())
    if names_coco(exp):
        exp = on_tiny_coco(exp, tiny_coco)
    out = run_test_mode(exp, context, capsys)
    assert "final validation: bbox_mAP=" in out or "bbox_mAP" in out


@pytest.mark.parametrize("name", sorted(HYDRA))
def test_hydra_compositions_run_in_test_mode(
    name: str, context: Path, tiny_coco: Path, capsys: pytest.CaptureFixture
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DET_MASTER"}
    composed = subprocess.run([sys.executable, str(REPO / "examples/hydra/launch.py"), *HYDRA[name]],
                              capture_output=True, text=True, env=env, check=True, cwd=REPO).stdout
    exp = yaml.safe_load(composed)
    if names_coco(exp):
        exp = on_tiny_coco(exp, tiny_coco)
    run_test_mode(exp, context, capsys)


def test_every_shipped_experiment_was_found() -> None:
    assert "maskrcnn.yaml" in EXPERIMENTS and "examples/subclass/subclass.yaml" in EXPERIMENTS
    assert len(EXPERIMENTS) >= 7
