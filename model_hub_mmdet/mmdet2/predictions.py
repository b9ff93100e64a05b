"""A native mmdet 2.x checkpoint run on a few images and drawn by mmdet's own ``show_result``, for the run
summary's ``predictions.png``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("model_hub_mmdet")


def output_kind(result: Any) -> str:
    """What a 2.x result holds: ``boxes``, ``boxes and masks``, ``panoptic`` (a ``pan_results`` map, with
    instances too), ``semantic`` (``sem_results`` alone) or the type's name."""
    if isinstance(result, dict):
        if "pan_results" in result:
            return "panoptic"
        if "sem_results" in result:
            return "semantic"
        if "ins_results" in result:
            return output_kind(result["ins_results"])
    if isinstance(result, tuple) and len(result) == 2:
        return "boxes and masks"
    if isinstance(result, list):
        return "boxes"
    return type(result).__name__


def count_shown(result: Any, score_thr: float, num_classes: int) -> str:
    """How many things the picture of ``result`` shows: boxes at or above ``score_thr``, or panoptic segments."""
    if isinstance(result, dict) and "pan_results" in result:
        segments = [i for i in np.unique(result["pan_results"]) if i % 1000 != num_classes]  # INSTANCE_OFFSET 1000
        return f"{len(segments)} segments"
    if isinstance(result, dict) and "ins_results" in result:
        result = result["ins_results"]
    boxes = result[0] if isinstance(result, tuple) else result
    if isinstance(boxes, list):
        return f"{sum(int((np.asarray(b)[:, 4] >= score_thr).sum()) for b in boxes if len(b))} objects"
    return ""


def render(config: str | Path, checkpoint: str | Path, images: Sequence[str | Path],
           score_thr: float = 0.5) -> tuple[list[tuple[np.ndarray, str]], list[str]]:
    """Run the checkpoint on ``images`` and draw each result with the model's own ``show_result`` (mmdet's
    ``imshow_det_bboxes``: boxes, masks, panoptic segments). Returns (RGB picture, caption) per image and the
    notes for kinds that could not be drawn (the image is then shown as it is)."""
    import matplotlib

    matplotlib.use("Agg")
    import mmcv
    from mmdet.apis import inference_detector, init_detector

    model = init_detector(str(config), str(checkpoint), device="cpu")
    num_classes = len(model.CLASSES or [])
    drawn, notes = [], []
    for image in images:
        result = inference_detector(model, str(image))
        kind = output_kind(result)
        caption = f"{Path(image).name}: {count_shown(result, score_thr, num_classes)}".rstrip(": ")
        try:
            bgr = model.show_result(str(image), result, score_thr=score_thr, show=False)
        except Exception as err:  # noqa: BLE001 - one kind the visualiser cannot draw must not cost the picture
            notes.append(f"{kind} predictions are not drawn by {type(model).__name__}.show_result"
                         f" ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
            bgr, caption = mmcv.imread(str(image)), f"{Path(image).name}: {kind} not drawn"
        drawn.append((np.ascontiguousarray(bgr[..., ::-1]), caption))
    return drawn, list(dict.fromkeys(notes))


def validation_images(config_path: str | Path, count: int = 4) -> list[Path]:
    """Up to ``count`` readable images of the config's validation set, whatever its dataset type (the dataset
    loads its own annotations, as mmdet does); a bad image must not cost the summary."""
    import contextlib
    import io

    import cv2
    from mmcv import Config
    from mmdet.datasets import build_dataset

    cfg = Config.fromfile(str(config_path))
    val = cfg.data.val
    for node in _wrapped(val):
        node["pipeline"] = []
    val["test_mode"] = True
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            dataset = build_dataset(val)
    except Exception as err:  # noqa: BLE001 - the summary goes on without a picture, saying why
        logger.info("predictions.png: the validation set does not load here (%s: %s)", type(err).__name__, err)
        return []
    while not hasattr(dataset, "data_infos") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    prefix = Path(getattr(dataset, "img_prefix", None) or "")
    paths = []
    for info in getattr(dataset, "data_infos", [])[: 4 * count]:
        path = prefix / info["filename"]
        if cv2.imread(str(path)) is not None:
            paths.append(path)
        if len(paths) == count:
            break
    return paths


def _wrapped(node: Any) -> list:
    """``node`` and the dataset configs inside it (RepeatDataset, ConcatDataset, ...)."""
    nodes = [node]
    for key in ("dataset", "datasets"):
        inner = node.get(key) if hasattr(node, "get") else None
        for item in inner if isinstance(inner, (list, tuple)) else [inner] if inner is not None else []:
            nodes += _wrapped(item)
    return nodes
