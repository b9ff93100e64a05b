"""A native mmdet 3.x checkpoint run on a few images and drawn by mmdet's ``DetLocalVisualizer`` (the config's
``visualizer``), for the run summary's ``predictions.png``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("model_hub_mmdet")


def output_kind(sample: Any) -> str:
    """What a ``DetDataSample`` holds: ``boxes``, ``boxes and masks``, ``panoptic``, ``semantic``, joined by
    ``+``, or ``nothing``."""
    kinds = []
    if "pred_instances" in sample:
        kinds.append("boxes and masks" if "masks" in sample.pred_instances else "boxes")
    if "pred_panoptic_seg" in sample:
        kinds.append("panoptic")
    if "pred_sem_seg" in sample:
        kinds.append("semantic")
    return " + ".join(kinds) or "nothing"


def count_shown(sample: Any, score_thr: float, num_classes: int) -> str:
    """How many things the picture shows: instances at or above ``score_thr``, or panoptic segments."""
    if "pred_panoptic_seg" in sample:
        ids = np.unique(sample.pred_panoptic_seg.sem_seg.cpu().numpy())
        return f"{sum(1 for i in ids if i % 1000 != num_classes)} segments"  # mmdet's INSTANCE_OFFSET is 1000
    if "pred_instances" in sample:
        return f"{int((sample.pred_instances.scores >= score_thr).sum())} objects"
    return ""


def render(config: str | Path, checkpoint: str | Path, images: Sequence[str | Path],
           score_thr: float = 0.5) -> tuple[list[tuple[np.ndarray, str]], list[str]]:
    """Run the checkpoint on ``images`` and draw each ``DetDataSample`` with the config's visualizer
    (``DetLocalVisualizer``: boxes, masks, panoptic and semantic maps), predictions only. Returns (RGB picture,
    caption) per image and the notes for kinds that could not be drawn (the image is then shown as it is)."""
    import copy
    import uuid

    import mmcv
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS

    model = init_detector(str(config), str(checkpoint), device="cpu")
    meta = model.dataset_meta or {}
    vis_cfg = copy.deepcopy(dict(model.cfg.get("visualizer") or {"type": "DetLocalVisualizer"}))
    vis_cfg.update(name=f"model_hub_mmdet_summary_{uuid.uuid4().hex[:8]}", vis_backends=None, save_dir=None)
    visualizer = VISUALIZERS.build(vis_cfg)
    visualizer.dataset_meta = meta
    drawn, notes = [], []
    for image in images:
        sample = inference_detector(model, str(image))
        rgb = mmcv.imread(str(image), channel_order="rgb")
        kind = output_kind(sample)
        caption = f"{Path(image).name}: {count_shown(sample, score_thr, len(meta.get('classes') or []))}"
        try:
            visualizer.add_datasample("prediction", rgb, data_sample=sample, draw_gt=False, show=False,
                                      pred_score_thr=score_thr)
            picture = visualizer.get_image()
        except Exception as err:  # noqa: BLE001 - one kind the visualiser cannot draw must not cost the picture
            notes.append(f"{kind} predictions are not drawn by {type(visualizer).__name__}"
                         f" ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
            picture, caption = rgb, f"{Path(image).name}: {kind} not drawn"
        drawn.append((np.ascontiguousarray(picture), caption.rstrip(": ")))
    return drawn, list(dict.fromkeys(notes))


def validation_images(config_path: str | Path, count: int = 4) -> list[Path]:
    """Up to ``count`` readable images of the config's validation set, whatever its dataset type (the dataset
    loads its own annotations, as mmdet does); a bad image must not cost the summary."""
    import contextlib
    import copy
    import io

    import cv2
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    register_all_modules()
    cfg = Config.fromfile(str(config_path))
    dataset_cfg = copy.deepcopy(cfg.val_dataloader.dataset)
    node = dataset_cfg
    while "dataset" in node:
        node["pipeline"] = []
        node = node["dataset"]
    node.update(pipeline=[], lazy_init=False)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            dataset = DATASETS.build(node)
    except Exception as err:  # noqa: BLE001 - the summary goes on without a picture, saying why
        logger.info("predictions.png: the validation set does not load here (%s: %s)", type(err).__name__, err)
        return []
    paths = []
    for i in range(min(len(dataset), 4 * count)):
        path = Path(dataset.get_data_info(i)["img_path"])
        if cv2.imread(str(path)) is not None:
            paths.append(path)
        if len(paths) == count:
            break
    return paths
