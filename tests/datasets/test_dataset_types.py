"""Every dataset type MMDetection 2.28 ships, trained, validated and scored as mmdet's own runner scores it.

Per type, on a tiny generated dataset (``tests/tiny_datasets.py``) and a tiny model: ``model-hub-mmdet check``
passes with the metric validation reports and refuses one it does not; ``model-hub-mmdet train --local`` trains a
batch and validates; and the metrics it reports equal what mmdet's ``tools/test.py`` recipe (``single_gpu_test``
then ``dataset.evaluate``) gives on the exported weights. Training and validation use the same images.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import BASE_CONFIGS, CONFIGS
from tiny_datasets import CLASSES, STUFF, make

from model_hub_mmdet.tools.cli import main

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent


def _dataset(kind: str, p: dict[str, Path]) -> dict[str, Any]:
    """The ``data.train`` / ``val`` / ``test`` settings of each type (as its ``_base_/datasets`` config has them)."""
    prefix = f"{p['img_dir']}/"
    common = dict(ann_file=str(p["ann_file"]), img_prefix=prefix)
    if kind == "voc":
        return dict(type="VOCDataset", classes=CLASSES, **common)
    if kind == "wider_face":
        return dict(type="WIDERFaceDataset", classes=("face",), **common)
    if kind == "panoptic":
        return dict(type="CocoPanopticDataset", classes=(*CLASSES, STUFF), seg_prefix=f"{p['seg_dir']}/", **common)
    if kind in ("lvis_v0.5", "lvis_v1"):
        return dict(type="LVISV05Dataset" if kind == "lvis_v0.5" else "LVISV1Dataset", classes=CLASSES, **common)
    if kind == "cityscapes":
        return dict(type="CityscapesDataset", classes=CLASSES, **common)
    if kind == "objects365":
        return dict(type="Objects365V2Dataset", classes=CLASSES, **common)
    if kind == "openimages":
        return dict(type="OpenImagesDataset", label_file=str(p["label_file"]), hierarchy_file=str(p["hierarchy_file"]),
                    image_level_ann_file=str(p["image_level_ann_file"]), meta_file=str(p["meta_file"]), **common)
    if kind == "middle":
        return dict(type="CustomDataset", classes=CLASSES, **common)
    return dict(type="CocoDataset", classes=CLASSES, **common)


# type -> (tiny model, evaluation.metric, the searcher metric validation reports, a name it does not report)
TYPES: dict[str, tuple[str, Any, str, str]] = {
    "voc": ("faster_rcnn", "mAP", "mAP", "bbox_mAP"),
    "panoptic": ("panoptic_fpn", ["PQ"], "PQ", "bbox_mAP"),
    "lvis_v0.5": ("faster_rcnn", ["bbox"], "bbox_AP", "bbox_mAP"),
    "lvis_v1": ("faster_rcnn", ["bbox"], "bbox_AP", "mAP"),
    "middle": ("faster_rcnn", "mAP", "mAP", "bbox_mAP"),
    "cityscapes": ("faster_rcnn", ["bbox"], "bbox_mAP", "mAP"),
    "openimages": ("faster_rcnn", "mAP", "mAP", "bbox_mAP"),
    "objects365": ("faster_rcnn", ["bbox"], "bbox_mAP", "mAP"),
    "wider_face": ("faster_rcnn", "mAP", "mAP", "PQ"),
    "coco": ("faster_rcnn", ["bbox"], "bbox_mAP", "mAP"),
}


BATCHES = {"panoptic": 2}


def _merge_file(kind: str, paths: dict[str, Path], out: Path) -> Path:
    """A merge config: the tiny model, then the type's datasets and evaluation (what a user's config file holds)."""
    model, metric, _, _ = TYPES[kind]
    base = HERE / "configs" / "tiny_panoptic_fpn.py" if model == "panoptic_fpn" else CONFIGS / f"tiny_{model}.py"
    ds = _dataset(kind, paths)
    lines = [f"_base_ = [{str(base)!r}]", f"data = dict(train={ds!r}, val={ds!r}, test={ds!r})"]
    extra = {"nproc": 1} if kind == "panoptic" else {}  # panopticapi's pool: one process on a 2-core machine
    lines.append(f"evaluation = dict(_delete_=True, interval=1, metric={metric!r}, **{extra!r})")
    if kind == "panoptic":  # two batches at this rate give thing segments a PQ above 0 (stuff stays at 0)
        lines.append("optimizer = dict(lr=0.02)")
    if kind == "wider_face":
        lines.append("model = dict(roi_head=dict(bbox_head=dict(num_classes=1)))")
    path = out / f"{kind}.py"
    path.write_text("\n".join(lines) + "\n")
    return path


def _experiment(kind: str, merge: Path, metric: str) -> dict[str, Any]:
    model = TYPES[kind][0]
    return {
        "name": f"types-{kind}",
        "hyperparameters": {"global_batch_size": 2, "config_file": BASE_CONFIGS.get(model, "panoptic_fpn/"
                            "panoptic_fpn_r50_fpn_1x_coco.py"), "merge_config": str(merge),
                            # OpenImages' CSV holds boxes relative to the image (its _base_ config denormalises)
                            **({"override_mmdet_config": {"data.train.pipeline.1.denorm_bbox": True}}
                               if kind == "openimages" else {})},
        "searcher": {"name": "single", "metric": metric, "max_length": {"batches": BATCHES.get(kind, 1)},
                     "smaller_is_better": False},
        "reproducibility": {"experiment_seed": 2},
        "entrypoint": "model_hub_mmdet:MMDetTrial",
    }


def runner_metrics(config: Path, weights: Path) -> dict[str, float]:
    """What mmdet 2.28's ``tools/test.py`` reports for ``weights`` on the config's validation set."""
    import mmcv
    from mmcv.runner import load_checkpoint
    from mmdet.apis import single_gpu_test
    from mmdet.datasets import build_dataloader, build_dataset
    from mmdet.models import build_detector
    from mmdet.utils import build_dp

    cfg = mmcv.Config.fromfile(str(config))
    dataset = build_dataset(cfg.data.val, dict(test_mode=True))
    loader = build_dataloader(dataset, samples_per_gpu=1, workers_per_gpu=0, dist=False, shuffle=False)
    model = build_detector(cfg.model, test_cfg=cfg.get("test_cfg"))
    load_checkpoint(model, str(weights), map_location="cpu")
    results = single_gpu_test(build_dp(model, "cpu", device_ids=[0]), loader)
    kwargs = dict(cfg.get("evaluation", {}))
    for key in ("interval", "tmpdir", "start", "gpu_collect", "save_best", "rule", "dynamic_intervals"):
        kwargs.pop(key, None)
    return {k: float(v) for k, v in dataset.evaluate(results, **kwargs).items() if isinstance(v, (int, float))}


@pytest.mark.parametrize("kind", list(TYPES))
def test_dataset_type_checks_trains_and_scores_as_mmdet(
    kind: str, tmp_path: Path, det_local: Path, capsys: pytest.CaptureFixture
) -> None:
    paths = make(kind, tmp_path / "data")
    _, _, metric, wrong = TYPES[kind]
    merge = _merge_file(kind, paths, tmp_path)
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(_experiment(kind, merge, metric)))

    assert main(["check", str(exp)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{exp}: OK" in out

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_experiment(kind, merge, wrong)))
    assert main(["check", str(bad)]) == 1
    assert f"searcher.metric {wrong!r}" in capsys.readouterr().err

    assert main(["train", str(exp), "--local", "--out", "out"]) == 0
    capsys.readouterr()
    validations = json.loads(Path("out/metrics.json").read_text())["validations"]
    ours = {k: v for k, v in validations[-1].items() if k != "batches"}
    assert metric in ours, sorted(ours)

    theirs = runner_metrics(Path("out/model.py"), Path("out/model.pth"))
    shared = sorted(set(ours) & set(theirs))
    assert metric in shared and ours[metric] > 0  # a score of 0 would match anything
    for key in shared:
        assert math.isclose(ours[key], theirs[key], rel_tol=1e-6, abs_tol=1e-9), (key, ours[key], theirs[key])


UNSHIPPED = ("data.train: CrowdHumanDataset is not in the dataset registry; check the type name, or import the module"
             " that registers it with custom_imports = dict(imports=[...])")


def _crowdhuman_experiment(tmp_path: Path) -> Path:
    """An experiment on CrowdHuman data (a type mmdet 2.28 does not ship)."""
    paths = make("crowdhuman", tmp_path / "data")
    merge = tmp_path / "crowdhuman.py"
    ds = dict(type="CrowdHumanDataset", ann_file=str(paths["ann_file"]), img_prefix=f"{paths['img_dir']}/")
    merge.write_text(f"_base_ = [{str(CONFIGS / 'tiny_faster_rcnn.py')!r}]\n"
                     f"data = dict(train={ds!r}, val={ds!r}, test={ds!r})\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(_experiment("voc", merge, "mAP")))
    return exp


def test_a_dataset_type_this_generation_does_not_ship_is_refused_in_one_line(
    tmp_path: Path, det_local: Path, capsys: pytest.CaptureFixture
) -> None:
    """CrowdHuman ships with MMDetection 3.x only: 2.x's ``train`` refuses it before training, in one line."""
    exp = _crowdhuman_experiment(tmp_path)
    assert main(["train", str(exp), "--local", "--out", "out"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert err == [f"error: {UNSHIPPED}"]


def test_check_refuses_a_dataset_type_this_generation_does_not_ship(tmp_path: Path, capsys) -> None:
    """... and so does ``check``, with the same line."""
    exp = _crowdhuman_experiment(tmp_path)
    assert main(["check", str(exp)]) == 1
    assert f"  - {UNSHIPPED}" in capsys.readouterr().err.splitlines()
