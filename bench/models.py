"""CPU seconds per training batch of MMDetTrial under Determined's Trainer, next to a plain mmdet loop.

For each model the same config, data, batch size and seed run two ways in this one process, alternately:

* ``trial``: ``model_hub_mmdet.local.train_local`` (Determined ``Trainer``, our sampler/loader, schedule, metrics);
* ``plain``: the loop MMDetection's runner boils down to: mmdet's ``build_dataloader`` + ``train_step`` +
  ``optimizer.step()``, no Determined.

The ratio trial/plain is the overhead this library adds. Run: ``python bench/models.py [--batches 20]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from helpers import data_overrides, tiny_experiment  # noqa: E402

from model_hub_mmdet import generation  # noqa: E402,I001

generation.setup()  # the generation's fixes before mmcv/mmdet are used; registers s3/gcs
from model_hub_mmdet.expconf import load_experiment, local_hparams  # noqa: E402
from model_hub_mmdet.local import train_local  # noqa: E402
from model_hub_mmdet.mmdet2.config import build_mmdet_config  # noqa: E402
from model_hub_mmdet.tools.shapes import make_shapes  # noqa: E402

MODELS = ("faster_rcnn", "mask_rcnn", "retinanet")
DEMO = "demo"  # examples/shapes: the real demo Mask R-CNN, 128 px images, batch 8


def demo_experiment(data_dir: Path) -> dict:
    """The demo's experiment YAML, with the config path made absolute and the data pointed at ``data_dir``."""
    exp = load_experiment(REPO / "examples/shapes/shapes.yaml")
    hp = exp["hyperparameters"]
    hp["config_file"] = str(REPO / hp["config_file"])
    hp["override_mmdet_config"] = {**hp.get("override_mmdet_config", {}), **data_overrides(data_dir)}
    return exp


def plain_seconds_per_batch(exp: dict, batches: int, warmup: int) -> float:
    """mmdet's own data loader and train_step with a plain optimizer loop."""
    import torch
    from mmcv.runner import build_optimizer
    from mmdet.datasets import build_dataloader, build_dataset
    from mmdet.models import build_detector

    hp = local_hparams(exp["hyperparameters"])
    cfg = build_mmdet_config(hp, {}, ".")
    torch.manual_seed(0)
    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    model.init_weights()
    dataset = build_dataset(cfg.data.train)
    loader = build_dataloader(dataset, hp["global_batch_size"], 0, num_gpus=1, dist=False, seed=0)
    optimizer = build_optimizer(model, cfg.optimizer)
    from mmcv.parallel import MMDataParallel

    wrapped = MMDataParallel(model, device_ids=None)  # CPU: unwraps DataContainers like mmcv's runner
    wrapped.train()
    done, started = 0, None
    while done < batches + warmup:
        for data in loader:
            if done == warmup:
                started = time.perf_counter()
            outputs = wrapped.train_step(data, optimizer)
            optimizer.zero_grad()
            outputs["loss"].backward()
            optimizer.step()
            done += 1
            if done == batches + warmup:
                break
    return (time.perf_counter() - started) / batches


def trial_seconds_per_batch(exp: dict, batches: int, warmup: int) -> float:
    """The full trial; timed between the first and last batch by the trial's own progress callback."""
    from model_hub_mmdet.mmdet2.trial import MMDetTrial

    stamps: list[float] = []

    class Timed(MMDetTrial):
        def train_batch(self, batch, epoch_idx, batch_idx):
            metrics = super().train_batch(batch, epoch_idx, batch_idx)
            stamps.append(time.perf_counter())
            return metrics

    train_local(exp, Timed, max_batches=batches + warmup, validation_period=10**6)
    return (stamps[-1] - stamps[warmup - 1]) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternate trial/plain this many times")
    parser.add_argument("--models", nargs="+", default=[*MODELS, DEMO], choices=[*MODELS, DEMO])
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    work = Path(tempfile.mkdtemp(prefix="bench-models-"))
    os.environ["XDG_DATA_HOME"] = str(work / "xdg")  # checkpoints: outside the copied working directory
    (work / "run").mkdir()
    os.chdir(work / "run")
    make_shapes(work / "data", train=32, val=4, size=64, seed=0)
    make_shapes(work / "demo-data", train=64, val=4, size=128, seed=0)
    rows = []
    for model in args.models:
        if model == DEMO:
            exp = demo_experiment(work / "demo-data")
        else:
            exp = tiny_experiment(work / "data", model=model, global_batch_size=2)
        trial, plain = [], []
        for _ in range(args.rounds):
            trial.append(trial_seconds_per_batch(exp, args.batches, args.warmup))
            plain.append(plain_seconds_per_batch(exp, args.batches, args.warmup))
        rows.append((model, min(trial), min(plain)))
    print(f"\n{'model (tiny: 64 px, batch 2)':<30}{'trial s/batch':>15}{'plain s/batch':>15}{'trial/plain':>13}")
    for model, t, p in rows:
        print(f"{model:<30}{t:>15.4f}{p:>15.4f}{t / p:>13.3f}")


if __name__ == "__main__":
    main()
