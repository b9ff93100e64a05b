"""Pictures of a finished local run: training loss / validation mAP curves and predictions on images."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_curves(training: Sequence[dict[str, Any]], validations: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Training loss against batches (left) and every ``*mAP`` validation metric (right), as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(11, 4))
    points = [(m["batches"], m["loss"]) for m in training if "loss" in m]
    if points:
        ax_loss.plot(*zip(*points), marker=".")
    ax_loss.set(title="training loss", xlabel="batches", ylabel="loss")
    names = sorted({k for v in validations for k in v if k.endswith("_mAP") or k in ("mAP", "PQ")})
    for name in names:
        series = [(v["batches"], v[name]) for v in validations if name in v]
        ax_map.plot(*zip(*series), marker="o", label=name)
    ax_map.set(title="validation", xlabel="batches", ylabel="mAP", ylim=(0, 1))
    if names:
        ax_map.legend()
    for ax in (ax_loss, ax_map):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def shown_detections(result: Any, score_thr: float = 0.5, iou_thr: float = 0.5) -> list[dict[str, Any]]:
    """The detections a person wants to see in one image's mmdet result: score >= ``score_thr``, and of boxes that
    overlap by IoU > ``iou_thr`` only the best (mmdet's NMS is per class, so one shape can come back as two
    classes). Each item has ``box`` (x1, y1, x2, y2), ``score``, ``label`` and ``mask`` (bool array or None)."""
    import numpy as np

    bbox_result, segm_result = result if isinstance(result, tuple) else (result, None)
    found = []
    for label, boxes in enumerate(bbox_result):
        for i, row in enumerate(boxes):
            if row[4] >= score_thr:
                mask = segm_result[label][i] if segm_result is not None and len(segm_result[label]) > i else None
                found.append({"box": row[:4], "score": float(row[4]), "label": label,
                              "mask": np.asarray(mask, bool) if mask is not None else None})
    found.sort(key=lambda d: -d["score"])
    kept: list[dict[str, Any]] = []
    for det in found:
        if all(_iou(det["box"], other["box"]) <= iou_thr for other in kept):
            kept.append(det)
    return kept


def _iou(a: Any, b: Any) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def draw_predictions(
    config: str | Path, checkpoint: str | Path, images: Sequence[str | Path], out: str | Path, score_thr: float = 0.5
) -> Path:
    """Run a native mmdet checkpoint on ``images`` (with the installed generation's inference API) and save one PNG
    with their detections side by side: masks tinted, one box and a short label per object (see
    :func:`shown_detections`), the threshold in the title."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    from model_hub_mmdet import generation

    with contextlib.redirect_stdout(io.StringIO()):  # mmcv prints "load checkpoint from local path: ..."
        classes, results = generation.adapter("predictions").predict(config, checkpoint, images)
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.6), squeeze=False, num="predictions")
    for ax, image, result in zip(axes[0], images, results):
        rgb = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        detections = shown_detections(result, score_thr)
        for det in detections:  # tint masks first, so boxes and labels stay on top
            if det["mask"] is not None and det["mask"].shape == rgb.shape[:2]:
                rgb[det["mask"]] = 0.55 * rgb[det["mask"]] + 0.45 * np.array(colors(det["label"] % 10)[:3])
        ax.imshow(rgb)
        for det in detections:
            x1, y1, x2, y2 = (float(v) for v in det["box"])
            color = colors(det["label"] % 10)
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.5))
            name = classes[det["label"]] if det["label"] < len(classes) else str(det["label"])
            ax.text(x1, max(y1 - 1, 0), f"{name} {det['score']:.2f}", fontsize=7, color="white", va="bottom",
                    bbox=dict(facecolor=color, alpha=0.85, pad=1, edgecolor="none"))
        ax.set_title(f"{Path(image).name}: {len(detections)} objects", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"detections with score >= {score_thr:g} (overlapping boxes of other classes merged)", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.86, bottom=0.01, wspace=0.05)
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
