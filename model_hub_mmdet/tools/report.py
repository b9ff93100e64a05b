"""Pictures of a finished local run: training loss / validation curves, and predictions on a few validation images
drawn by the generation's own visualiser."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger("model_hub_mmdet")


def plot_curves(training: Sequence[dict[str, Any]], validations: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Training loss against batches (left) and every headline validation metric (right: ``*mAP`` of COCO, VOC and
    LVIS-style evaluators, whatever their prefix, and panoptic ``PQ`` divided by 100), as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(11, 4))
    points = [(m["batches"], m["loss"]) for m in training if "loss" in m]
    if points:
        ax_loss.plot(*zip(*points), marker=".")
    ax_loss.set(title="training loss", xlabel="batches", ylabel="loss")
    names = sorted({k for v in validations for k in v if _headline(k)})
    for name in names:
        scale = 100.0 if _headline(name) == "PQ" else 1.0  # mmdet reports PQ in percent, mAP as a fraction
        series = [(v["batches"], v[name] / scale) for v in validations if name in v]
        ax_map.plot(*zip(*series), marker="o", label=f"{name} / 100" if scale != 1 else name)
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


def _headline(name: str) -> str | None:
    """``mAP`` or ``PQ`` when ``name`` is a headline metric (``bbox_mAP``, ``pascal_voc/mAP``, ``coco_panoptic/PQ``,
    ``lvis/bbox_AP``), else None."""
    key = name.rsplit("/", 1)[-1]
    if key == "PQ":
        return "PQ"
    return "mAP" if key == "mAP" or key.endswith("_mAP") or key in ("bbox_AP", "segm_AP") else None


def draw_predictions(
    config: str | Path, checkpoint: str | Path, images: Sequence[str | Path], out: str | Path, score_thr: float = 0.5
) -> Path:
    """Run a native mmdet checkpoint on ``images`` and save one PNG with their predictions side by side, each
    drawn by the installed generation's own visualiser (2.x: the model's ``show_result``; 3.x: the config's
    ``DetLocalVisualizer``), whatever the model outputs: boxes, masks, panoptic or semantic maps. A kind the
    visualiser cannot draw is one INFO line, and its image is shown as it is."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from model_hub_mmdet import generation

    with contextlib.redirect_stdout(io.StringIO()):  # mmcv prints "load checkpoint from local path: ..."
        drawn, notes = generation.adapter("predictions").render(config, checkpoint, images, score_thr)
    for note in notes:
        logger.info("predictions.png: %s", note)
    fig, axes = plt.subplots(1, len(drawn), figsize=(3.2 * len(drawn), 3.6), squeeze=False, num="predictions")
    for ax, (picture, caption) in zip(axes[0], drawn):
        ax.imshow(picture)
        ax.set_title(caption, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"predictions with score >= {score_thr:g}, drawn by MMDetection's visualiser", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.86, bottom=0.01, wspace=0.05)
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def export_and_draw(checkpoint: str | Path, out: str | Path, count: int = 4) -> list[str]:
    """The run summary's native export and its picture, as the lines to print. The export and the picture fail
    apart: ``could not export`` only when the export failed, ``could not draw predictions`` when only the picture
    did; a validation set with no image to draw is said in one line too."""
    from model_hub_mmdet import generation
    from model_hub_mmdet.weights import export_checkpoint

    out = Path(out)
    try:
        native = export_checkpoint(checkpoint, out / "model.pth")
    except Exception as err:  # noqa: BLE001 - the run and its checkpoint are done; extras must not fail it
        return [f"(could not export the checkpoint: {_reason(err)})"]
    lines = [f"mmdet model: {native} (+ {native.with_suffix('.py')})"]
    try:
        images = generation.adapter("predictions").validation_images(native.with_suffix(".py"), count)
        if not images:
            return lines + ["(no predictions picture: no readable validation image)"]
        drawn = draw_predictions(native.with_suffix(".py"), native, images, out / "predictions.png")
        lines.append(f"predictions: {drawn}")
    except Exception as err:  # noqa: BLE001 - as above
        lines.append(f"(could not draw predictions: {_reason(err)})")
    return lines


def _reason(err: BaseException) -> str:
    reason = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {reason}" if reason else type(err).__name__
