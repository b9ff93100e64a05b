"""Pictures of a finished local run: training loss / validation mAP curves and predictions on images."""

from __future__ import annotations

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


def draw_predictions(
    config: str | Path, checkpoint: str | Path, images: Sequence[str | Path], out: str | Path, score_thr: float = 0.5
) -> Path:
    """Run a native mmdet checkpoint on ``images`` and save one PNG with the drawn detections side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mmcv
    from mmdet.apis import inference_detector, init_detector

    model = init_detector(str(config), str(checkpoint), device="cpu")
    # Draw first: mmdet's imshow_det_bboxes reuses (and resizes) any open matplotlib figure with an empty label.
    drawn = [
        model.show_result(mmcv.imread(str(image)), inference_detector(model, str(image)), score_thr=score_thr)
        for image in images
    ]
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.4), squeeze=False, num="predictions")
    for ax, image, picture in zip(axes[0], images, drawn):
        ax.imshow(mmcv.bgr2rgb(picture))
        ax.set_title(Path(image).name, fontsize=8)
        ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.01, wspace=0.05)
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
