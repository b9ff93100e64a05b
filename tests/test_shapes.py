"""The embedded shapes dataset (``model_hub_mmdet.tools.shapes``) and the demo config that learns it
(``examples/shapes/mask_rcnn_shapes.py``)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.tools.shapes import (
    CLASSES,
    MIN_PIXELS,
    SPLIT_SEED_OFFSET,
    ShapesSpec,
    annotate,
    is_annotated,
    make_shapes,
    render_image,
)

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "examples" / "shapes" / "mask_rcnn_shapes.py"


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    make_shapes(out, train=24, val=8)
    return out


def _decoded_masks(coco, ann_ids: list[int]) -> list[np.ndarray]:
    return [coco.annToMask(coco.anns[i]).astype(bool) for i in ann_ids]


# ---- determinism ---------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_files(tmp_path, shapes_dir):
    make_shapes(tmp_path, train=24, val=8)
    assert _digests(tmp_path) == _digests(shapes_dir)
    assert len(_digests(tmp_path)) == 24 + 8 + 2


def test_other_seed_gives_other_images(tmp_path, shapes_dir):
    make_shapes(tmp_path, train=24, val=8, seed=1)
    ours, theirs = _digests(tmp_path), _digests(shapes_dir)
    assert all(ours[name] != theirs[name] for name in ours if name.endswith(".png"))


def test_train_and_val_differ(shapes_dir):
    assert (shapes_dir / "train" / "000000.png").read_bytes() != (shapes_dir / "val" / "000000.png").read_bytes()


# ---- valid COCO ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split,count", [("train", 24), ("val", 8)])
def test_pycocotools_loads_the_annotations(shapes_dir, split, count):
    from pycocotools.coco import COCO

    coco = COCO(str(shapes_dir / "annotations" / f"{split}.json"))
    assert [coco.cats[i]["name"] for i in sorted(coco.cats)] == list(CLASSES)
    assert len(coco.imgs) == count
    assert len(coco.anns) >= count  # the top shape of every image is fully visible
    for img in coco.imgs.values():
        assert (img["width"], img["height"]) == (128, 128)
        assert (shapes_dir / split / img["file_name"]).is_file()
    for ann in coco.anns.values():
        assert ann["image_id"] in coco.imgs and ann["category_id"] in coco.cats and ann["iscrowd"] == 0
        assert all(len(poly) >= 6 and len(poly) % 2 == 0 for poly in ann["segmentation"])


def test_every_class_occurs(shapes_dir):
    anns = json.loads((shapes_dir / "annotations" / "train.json").read_text())["annotations"]
    assert {a["category_id"] for a in anns} == {1, 2, 3}


def test_images_are_rgb_pngs_of_the_declared_size(shapes_dir):
    import cv2

    img = cv2.imread(str(shapes_dir / "val" / "000003.png"), cv2.IMREAD_UNCHANGED)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert img.std() > 10  # not a blank canvas


def test_mmdet_cocodataset_reads_the_split(shapes_dir):
    from mmdet.datasets import CocoDataset

    ds = CocoDataset(
        ann_file=str(shapes_dir / "annotations" / "train.json"),
        img_prefix=str(shapes_dir / "train"),
        classes=CLASSES,
        pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True, with_mask=True)],
    )
    item = ds[0]
    assert item["img"].shape == (128, 128, 3)
    assert len(item["gt_masks"]) == len(item["gt_bboxes"]) == len(item["gt_labels"]) > 0


# ---- boxes, masks and the visible-area rule --------------------------------------------------------------------


def test_boxes_and_areas_match_the_decoded_masks(shapes_dir):
    from pycocotools.coco import COCO

    coco = COCO(str(shapes_dir / "annotations" / "train.json"))
    for ann, mask in zip(coco.anns.values(), _decoded_masks(coco, list(coco.anns))):
        ys, xs = np.nonzero(mask)
        tight = [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
        assert ann["bbox"] == [float(v) for v in tight], ann["id"]
        assert ann["area"] == mask.sum() >= MIN_PIXELS, ann["id"]


def _replay(split: str, count: int, seed: int = 0, spec: ShapesSpec = ShapesSpec()):
    """Re-draw the shapes of a split as make_split drew them: the generator is one RNG stream per split."""
    rng = np.random.RandomState(seed + SPLIT_SEED_OFFSET[split])
    return [render_image(rng, spec)[1] for _ in range(count)]


def test_masks_are_exactly_the_visible_part(shapes_dir):
    from pycocotools.coco import COCO

    coco = COCO(str(shapes_dir / "annotations" / "train.json"))
    assert any(
        s.visible.sum() < s.full.sum()
        for shapes in _replay("train", 24)
        for s in shapes
        if is_annotated(s, ShapesSpec())
    )
    for image_id, shapes in enumerate(_replay("train", 24), start=1):
        kept = [s for s in shapes if is_annotated(s, ShapesSpec())]
        ann_ids = coco.getAnnIds(imgIds=[image_id])
        assert [coco.anns[i]["category_id"] - 1 for i in ann_ids] == [s.label for s in kept]
        masks = _decoded_masks(coco, ann_ids)
        for shape, mask in zip(kept, masks):
            assert (mask == shape.visible).all()  # the polygons decode to exactly the visible pixels
            assert (shape.full & ~shape.visible).sum() <= (1 - ShapesSpec().min_visible) * shape.full.sum()
        covered = np.zeros((128, 128), int)
        for mask in masks:
            covered += mask
        assert covered.max() <= 1  # visible parts never overlap


def test_visible_area_rule_drops_mostly_hidden_shapes():
    spec = ShapesSpec()
    seen = {"kept": 0, "dropped": 0, "occluded_kept": 0}
    for shapes in _replay("train", 60):
        for shape in shapes:
            visible, full = int(shape.visible.sum()), int(shape.full.sum())
            assert not (shape.visible & ~shape.full).any()
            kept = visible >= MIN_PIXELS and visible >= spec.min_visible * full
            assert is_annotated(shape, spec) is kept
            seen["kept" if kept else "dropped"] += 1
            seen["occluded_kept"] += kept and visible < full
        assert shapes[-1].visible.sum() == shapes[-1].full.sum()  # the top shape is whole
    # The rule is exercised both ways, and partly hidden shapes are still annotated.
    assert min(seen.values()) > 0, seen


def test_min_visible_one_keeps_only_whole_shapes():
    spec = ShapesSpec(min_visible=1.0)
    rng = np.random.RandomState(5)
    for _ in range(20):
        img, shapes = render_image(rng, spec)
        anns = annotate(shapes, spec)
        whole = [s for s in shapes if (s.visible == s.full).all()]
        assert len(anns) == len(whole)


def test_spec_options_change_the_data(tmp_path):
    ann = make_shapes(tmp_path, train=10, val=1, size=64, min_objects=1, max_objects=1, min_visible=1.0)["train"]
    coco = json.loads(ann.read_text())
    assert len(coco["annotations"]) == 10
    assert all(img["width"] == img["height"] == 64 for img in coco["images"])


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(max_objcts=3), "max_objcts"),
        (dict(size=16), "size=16"),
        (dict(min_objects=4, max_objects=2), "min_objects=4"),
        (dict(min_extent=0.6, max_extent=0.5), "min_extent=0.6"),
        (dict(min_visible=1.5), "min_visible=1.5"),
    ],
)
def test_bad_options_raise_config_error(tmp_path, kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        make_shapes(tmp_path, train=1, val=1, **kwargs)
    assert not (tmp_path / "annotations").exists()  # checked before anything is written


# ---- the demo config -------------------------------------------------------------------------------------------


def _demo_config(data_dir: Path, **overrides):
    """The demo config through the library's own pipeline, pointed at ``data_dir``."""
    from model_hub_mmdet.mmdet2.config import build_mmdet_config

    paths = {}
    for split, folder in (("train", "train"), ("val", "val"), ("test", "val")):
        paths[f"data.{split}.ann_file"] = str(data_dir / "annotations" / f"{folder}.json")
        paths[f"data.{split}.img_prefix"] = str(data_dir / folder) + "/"
    hparams = {"config_file": "examples/shapes/mask_rcnn_shapes.py", "override_mmdet_config": {**paths, **overrides}}
    cfg = build_mmdet_config(hparams, context_dir=REPO)
    cfg.device, cfg.gpu_ids, cfg.seed = "cpu", [0], 0
    return cfg


def _model(cfg):
    import torch
    from mmdet.models import build_detector

    torch.manual_seed(0)
    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    model.init_weights()
    model.CLASSES = CLASSES
    return model


def test_demo_config_is_small_and_randomly_initialised(shapes_dir):
    cfg = _demo_config(shapes_dir)
    assert cfg.model.backbone.init_cfg is None and not cfg.get("load_from")
    assert cfg.model.backbone.norm_eval is False  # BN statistics must be learned from scratch
    # Counted in batches, like Determined's searcher.max_length.
    assert cfg.runner.type == "IterBasedRunner" and cfg.lr_config.by_epoch is False
    n_params = sum(p.numel() for p in _model(cfg).parameters())
    assert n_params < 5_000_000, n_params


def test_the_demo_roi_align_from_torchvision_equals_mmcvs(shapes_dir):
    """The demo asks mmcv's RoIAlign for torchvision's kernel (faster on the CPU): same values, same gradients."""
    import torch
    from mmcv.ops import RoIAlign

    layer = _demo_config(shapes_dir).model.roi_head.bbox_roi_extractor.roi_layer
    assert layer.use_torchvision is True
    args = dict(output_size=layer.output_size, spatial_scale=0.25, sampling_ratio=layer.sampling_ratio)
    torch.manual_seed(0)
    feats = torch.randn(2, 8, 32, 32)
    xy = torch.rand(12, 2) * 90
    wh = torch.rand(12, 2) * 40 + 4
    rois = torch.cat([torch.randint(0, 2, (12, 1)).float(), xy, xy + wh], dim=1)
    outs, grads = [], []
    for use_torchvision in (False, True):
        x = feats.clone().requires_grad_()
        out = RoIAlign(**args, use_torchvision=use_torchvision)(x, rois.clone())
        out.pow(2).sum().backward()
        outs.append(out.detach())
        grads.append(x.grad)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("samples_per_gpu", [1, 3])
def test_demo_config_trains_and_predicts_at_any_batch_size(shapes_dir, samples_per_gpu):
    """Determined's global_batch_size replaces samples_per_gpu: one real step and one prediction must work."""
    import torch
    from mmdet.apis import single_gpu_test
    from mmdet.datasets import build_dataloader, build_dataset
    from mmdet.utils import build_dp

    torch.set_num_threads(1)
    cfg = _demo_config(shapes_dir, **{"data.samples_per_gpu": samples_per_gpu})
    model = build_dp(_model(cfg), "cpu")
    loader = build_dataloader(
        build_dataset(cfg.data.train),
        samples_per_gpu=samples_per_gpu,
        workers_per_gpu=0,
        num_gpus=1,
        dist=False,
        seed=0,
    )
    outputs = model.train_step(next(iter(loader)), None)
    assert outputs["num_samples"] == samples_per_gpu
    assert set(outputs["log_vars"]) >= {"loss_rpn_cls", "loss_cls", "loss_bbox", "loss_mask"}
    outputs["loss"].backward()
    assert math.isfinite(outputs["loss"].item())
    grads = [p.grad for p in model.module.backbone.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)

    val = build_dataset(cfg.data.val)
    val_loader = build_dataloader(val, samples_per_gpu=1, workers_per_gpu=0, dist=False, shuffle=False)
    results = single_gpu_test(model, val_loader)
    assert len(results) == len(val)
    bbox, segm = results[0]
    assert len(bbox) == len(segm) == len(CLASSES)


@pytest.mark.slow
def test_demo_config_learns_the_shapes(tmp_path):
    """A short real run of mmdet's own training (200 batches of 4, about a minute of one idle core): box and mask
    mAP on held-out images rise clearly above an untrained model's 0. The full demo is measured in
    bench/demo_tuning.md; this guards against a config that stops learning at all."""
    import torch
    from mmdet.apis import train_detector
    from mmdet.datasets import build_dataset

    torch.set_num_threads(1)
    make_shapes(tmp_path / "data", train=200, val=30)
    iters = 200
    cfg = _demo_config(
        tmp_path / "data",
        **{
            "data.samples_per_gpu": 4,
            "data.workers_per_gpu": 0,
            "runner.max_iters": iters,
            "evaluation.interval": iters,
            "checkpoint_config.interval": iters,
        },
    )
    cfg.work_dir = str(tmp_path / "work")
    model = _model(cfg)
    train_detector(model, [build_dataset(cfg.data.train)], cfg, distributed=False, validate=True, meta={})
    logs = [json.loads(line) for line in next(Path(cfg.work_dir).glob("*.log.json")).read_text().splitlines()[1:]]
    val = [entry for entry in logs if entry.get("mode") == "val"]
    assert val and val[-1]["bbox_mAP"] >= 0.05 and val[-1]["segm_mAP"] >= 0.05, val
