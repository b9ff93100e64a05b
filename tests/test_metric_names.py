"""MMDetection 2.x: the metric names ``check`` and ``init`` expect are the names ``dataset.evaluate`` returns.

Each rule is held against mmdet's own ``evaluate`` on tiny hand-made datasets (COCO instances, Pascal VOC XML,
COCO panoptic, LVIS v1) with predictions equal to the ground truth, for the evaluation settings that change the
names; then ``check`` is run on VOC and panoptic experiments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from kinds_data import STUFF, THINGS, make_coco_panoptic, make_voc, rgb2id

from model_hub_mmdet.metric_names import numeric_metrics
from model_hub_mmdet.mmdet2.evaluation import expected_metric_names, metric_names

CONFIGS = Path(__file__).parent / "mmdet_configs"


def _reported(dataset: Any, results: list, **kwargs: Any) -> list[str]:
    from model_hub_mmdet.mmdet2.evaluation import evaluate_predictions

    return sorted(evaluate_predictions(dataset.evaluate, results, kwargs))


def _boxes(dataset: Any, with_masks: bool = False) -> list:
    """Per image, mmdet 2.x's result with every ground-truth box found (score 0.9), masks filled boxes."""
    from mmdet.core import encode_mask_results

    out = []
    for i in range(len(dataset)):
        ann = dataset.get_ann_info(i)
        per_class = [np.zeros((0, 5), np.float32) for _ in dataset.CLASSES]
        masks: list[list] = [[] for _ in dataset.CLASSES]
        info = dataset.data_infos[i]
        for box, label in zip(ann["bboxes"], ann["labels"]):
            per_class[label] = np.vstack([per_class[label], np.append(box, 0.9)[None].astype(np.float32)])
            mask = np.zeros((info["height"], info["width"]), bool)
            x1, y1, x2, y2 = (int(v) for v in box)
            mask[y1:y2, x1:x2] = True
            masks[label].append(mask)
        out.append((per_class, encode_mask_results(masks)) if with_masks else per_class)
    return out


@pytest.fixture(scope="module")
def panoptic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_coco_panoptic(tmp_path_factory.mktemp("panoptic"))


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"))


def _coco(panoptic: dict[str, Path]) -> Any:
    from mmdet.datasets import CocoDataset

    return CocoDataset(ann_file=str(panoptic["ins_ann_file"]), img_prefix=str(panoptic["images"]), classes=THINGS,
                       pipeline=[], test_mode=True)


@pytest.mark.parametrize("kwargs", [
    {"metric": "bbox"},
    {"metric": ["bbox", "segm"]},
    {"metric": ["segm"], "metric_items": ["mAP", "mAP_50", "AR@100"]},
    {"metric": ["proposal", "bbox"]},
    {"metric": "proposal_fast", "proposal_nums": (1, 10)},
    {"metric": ["bbox", "proposal"], "metric_items": "mAP_75"},
])
def test_coco_names_are_what_evaluate_returns(panoptic: dict[str, Path], kwargs: dict) -> None:
    dataset = _coco(panoptic)
    results = _boxes(dataset, with_masks="segm" in str(kwargs["metric"]))
    if kwargs["metric"] == "proposal_fast":  # proposals: one array per image
        results = [np.vstack(r) for r in results]
    assert sorted(expected_metric_names(kwargs, {"type": "CocoDataset"})) == _reported(dataset, results, **kwargs)


@pytest.mark.parametrize("kwargs", [{}, {"metric": "mAP", "iou_thr": [0.5, 0.75]}, {"metric": "recall"},
                                    {"metric": ["recall"], "iou_thr": [0.5, 0.7], "proposal_nums": (1, 5)}])
def test_voc_names_are_what_evaluate_returns(voc: Path, kwargs: dict) -> None:
    from mmdet.datasets import VOCDataset

    dataset = VOCDataset(ann_file=str(voc / "ImageSets/Main/trainval.txt"), img_prefix=f"{voc}/", classes=THINGS,
                         pipeline=[], test_mode=True)
    results = _boxes(dataset)
    if kwargs.get("metric") in ("recall", ["recall"]):  # proposals: one array per image
        results = [np.vstack(r) for r in results]
    node = {"type": "RepeatDataset", "times": 2, "dataset": {"type": "VOCDataset", "ann_file": "x"}}
    assert sorted(expected_metric_names(kwargs, node)) == _reported(dataset, results, **kwargs)


def test_panoptic_names_are_what_evaluate_returns(panoptic: dict[str, Path]) -> None:
    pytest.importorskip("panopticapi", reason="pip install --no-deps panopticapi-lite==0.2.0")
    from mmdet.core import INSTANCE_OFFSET
    from mmdet.datasets import CocoPanopticDataset

    dataset = CocoPanopticDataset(ann_file=str(panoptic["ann_file"]), img_prefix=str(panoptic["images"]),
                                  seg_prefix=str(panoptic["panoptic"]), classes=THINGS + STUFF, pipeline=[],
                                  test_mode=True)
    results = []
    for ann in json.loads(panoptic["ann_file"].read_text())["annotations"]:
        import cv2

        ids = rgb2id(cv2.imread(str(panoptic["panoptic"] / ann["file_name"]))[..., ::-1])
        pan = np.full(ids.shape, len(dataset.CLASSES), np.int64)
        for k, seg in enumerate(ann["segments_info"]):
            pan[ids == seg["id"]] = dataset.cat2label[seg["category_id"]] + k * INSTANCE_OFFSET
        results.append({"pan_results": pan})
    expected = expected_metric_names({}, {"type": "CocoPanopticDataset"})
    assert sorted(expected) == _reported(dataset, results)
    assert expected[:3] == ["PQ", "SQ", "RQ"]
    assert dataset.evaluate(results)["PQ"] == pytest.approx(100.0)  # the ground truth scores a perfect PQ


def test_lvis_names_are_what_evaluate_returns(panoptic: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("lvis")
    from mmdet.datasets import LVISV1Dataset

    obj = json.loads(panoptic["ins_ann_file"].read_text())
    for img in obj["images"]:
        img.update(coco_url=f"http://images.cocodataset.org/{img['file_name']}", neg_category_ids=[],
                   not_exhaustive_category_ids=[])
    for cat in obj["categories"]:
        cat.update(frequency="f", image_count=3, synset=cat["name"])
    (tmp_path / "lvis.json").write_text(json.dumps(obj))
    dataset = LVISV1Dataset(ann_file=str(tmp_path / "lvis.json"), img_prefix=str(panoptic["images"]),
                            classes=THINGS, pipeline=[], test_mode=True)
    for kwargs in ({"metric": ["bbox", "segm"]}, {"metric": "proposal"}):
        results = _boxes(dataset, with_masks="segm" in str(kwargs["metric"]))
        assert sorted(expected_metric_names(kwargs, {"type": "LVISV1Dataset"})) == _reported(dataset, results,
                                                                                               **kwargs)


def test_a_users_own_evaluate_is_known_after_validation() -> None:
    from mmdet.datasets import DATASETS, CustomDataset

    class OwnMetricsDataset(CustomDataset):
        def evaluate(self, results: list, **kwargs: Any) -> dict:
            return {"my_score": 1.0}

    DATASETS.register_module(module=OwnMetricsDataset, force=True)
    names = metric_names({"metric": "anything"}, {"type": "OwnMetricsDataset"})
    assert names.names == [] and names.may_report("my_score")
    assert "OwnMetricsDataset.evaluate" in names.line()
    assert numeric_metrics({"a": np.float32(0.5), "b": "x", "c": float("nan")}) == {"a": 0.5}


# --------------------------------------------------------------------------------------------------- check


def _experiment(tmp_path: Path, config: str, overrides: dict, metric: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "name": "kinds", "entrypoint": "model_hub_mmdet:MMDetTrial",
        "hyperparameters": {"global_batch_size": 2, "config_file": config, "override_mmdet_config": overrides},
        "searcher": {"name": "single", "metric": metric, "smaller_is_better": False, "max_length": {"batches": 2}},
        "resources": {"slots_per_trial": 1},
    }))
    return path


def _dataset_overrides(node: dict, **evaluation: Any) -> dict:
    """Dotted overrides (Determined reads a mapping with ``type`` as a hyperparameter) setting every split."""
    over = {f"data.{split}.{k}": v for split in ("train", "val", "test") for k, v in node.items()}
    return {**over, **{f"evaluation.{k}": v for k, v in evaluation.items()}}


def _voc_overrides(voc: Path) -> dict:
    node = {"type": "VOCDataset", "ann_file": str(voc / "ImageSets/Main/trainval.txt"), "img_prefix": f"{voc}/",
            "classes": list(THINGS)}
    return {**_dataset_overrides(node, metric="mAP", save_best="mAP"), "model.roi_head.bbox_head.num_classes": 2}


def test_check_voc_names_the_metrics_and_refuses_a_typo(voc: Path, tmp_path: Path) -> None:
    from model_hub_mmdet.tools.check import check_experiment

    config = str(CONFIGS / "tiny_faster_rcnn.py")
    report = check_experiment(_experiment(tmp_path, config, _voc_overrides(voc), "mAP"), tmp_path)
    assert report.ok, report.problems
    assert report.summary["metrics"] == "mAP, AP50"
    report = check_experiment(_experiment(tmp_path, config, _voc_overrides(voc), "bbox_mAP"), tmp_path)
    assert report.problems == ["searcher.metric 'bbox_mAP' is not produced by this config's evaluation"
                               " (it produces mAP, AP50)"]


def test_check_passes_a_coco_panoptic_experiment(panoptic: dict[str, Path], tmp_path: Path) -> None:
    from model_hub_mmdet.tools.check import check_experiment

    node = {"type": "CocoPanopticDataset", "ann_file": str(panoptic["ann_file"]), "img_prefix": str(
        panoptic["images"]), "seg_prefix": str(panoptic["panoptic"]), "classes": list(THINGS + STUFF)}
    overrides = _dataset_overrides(node, metric="PQ", save_best="PQ")
    report = check_experiment(_experiment(tmp_path, str(CONFIGS / "tiny_faster_rcnn.py"), overrides, "PQ"), tmp_path)
    assert not [p for p in report.problems if "annotations" in p], report.problems
    if __import__("importlib").util.find_spec("panopticapi") is None:
        assert report.problems == ["CocoPanopticDataset needs panopticapi, which is not installed:"
                                   " pip install --no-deps panopticapi-lite==0.2.0"]
    else:
        assert report.ok, report.problems
    assert report.summary["metrics"].startswith("PQ, SQ, RQ, PQ_th")
    bad = check_experiment(_experiment(tmp_path, str(CONFIGS / "tiny_faster_rcnn.py"), overrides, "bbox_mAP"),
                           tmp_path)
    assert "searcher.metric 'bbox_mAP' is not produced by this config's evaluation (it produces PQ, SQ, RQ," in (
        bad.problems[-1])


def test_panopticapi_lite_gives_the_hand_computed_pq(tmp_path: Path) -> None:
    """PyPI's panopticapi-lite against PQ computed by hand on an 8 x 12 image (PQ = sum of matched IoUs over
    TP + FP/2 + FN/2 per category, averaged over the categories present)."""
    pytest.importorskip("panopticapi", reason="pip install --no-deps panopticapi-lite==0.2.0")
    import cv2
    from panopticapi.evaluation import pq_compute

    def write(folder: str, regions: list[tuple[int, int, int, int]]) -> dict:  # (segment id, category, col0, col1)
        ids = np.zeros((8, 12), np.uint32)
        for seg_id, _, c0, c1 in regions:
            ids[:, c0:c1] = seg_id
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "a.png"), np.stack([ids % 256, ids // 256, ids * 0], -1)[..., ::-1]
                    .astype(np.uint8))
        segments = [{"id": s, "category_id": c, "area": 8 * (c1 - c0), "bbox": [c0, 0, c1 - c0, 8], "iscrowd": 0}
                    for s, c, c0, c1 in regions]
        return {"image_id": 1, "file_name": "a.png", "segments_info": segments}

    categories = [{"id": 1, "name": "square", "isthing": 1}, {"id": 2, "name": "disc", "isthing": 1},
                  {"id": 3, "name": "ground", "isthing": 0}]
    gt = write("gt", [(1, 1, 0, 4), (2, 3, 4, 8), (3, 2, 8, 12)])  # square | ground | disc
    pred = write("pred", [(1, 1, 0, 3), (2, 3, 3, 8), (3, 1, 8, 12)])  # the disc is called a square
    images = [{"id": 1, "file_name": "a.jpg", "width": 12, "height": 8}]
    for name, ann in (("gt", gt), ("pred", pred)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"images": images, "annotations": [ann],
                                                           "categories": categories}))
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        result = pq_compute(str(tmp_path / "gt.json"), str(tmp_path / "pred.json"), str(tmp_path / "gt"),
                            str(tmp_path / "pred"))
    square = 0.75 / (1 + 0.5)  # IoU 24/32 matched, plus one false positive
    disc = 0.0  # one false negative
    ground = 32 / 40  # IoU 32/40 matched
    assert result["All"]["pq"] == pytest.approx((square + disc + ground) / 3)
    assert result["Things"]["pq"] == pytest.approx((square + disc) / 2)
    assert result["Stuff"]["pq"] == pytest.approx(ground)
    assert result["All"]["rq"] == pytest.approx((1 / 1.5 + 0 + 1) / 3)
