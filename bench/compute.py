"""Training throughput of MMDetTrial under Determined's Trainer next to pure compute, side by side in one process.

    OMP_NUM_THREADS=2 .venv/bin/python bench/compute.py [--cases demo coco] [--rounds 3] [--quick]
    OMP_NUM_THREADS=2 .venv-mmdet3/bin/python bench/compute.py --generation 3 [--cases rtmdet coco] [--quick]

For each case two things run alternately (trial, pure, then pure, trial, ...), and the ratio of their batches per
second is taken within each round, then the median:

* ``trial``: ``model_hub_mmdet.local.train_local`` (Determined's ``Trainer``, MMDetTrial's real training loader
  with its data-loader workers, DataContainer unwrapping, the LR schedule hook, the non-finite guard, metrics)
  with ``data.file_client_args: {backend: fake}``, so no image is read from disk; timed from the end of the last
  warm-up batch to the end of the last timed batch;
* ``pure``: forward + backward + optimizer step (gradient clipping as configured) of the same model built the
  same way, on the very batches the trial trained on, already unwrapped and in memory, with the learning rates
  the trial's schedule used: the ceiling the trial can reach.

The batches and learning rates come from one extra trial run made first (it also warms up the process). A timed
run stops right after its last timed batch, so the validation and checkpoint at the end of a Determined run are
not part of it. Cases:

* ``demo``: the Mask R-CNN of examples/shapes (128 px, batch 8) on the shapes annotations;
* ``coco``: mmdet's faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py at its real 1333x800 scale (random init, no
  download), on a generated COCO annotation file of 1333x800 images (boxes only, no image files).

With ``--generation 3`` (MMDetection 3.3, .venv-mmdet3's Python) the trial is the 3.x MMDetTrial and ``pure`` is
the model's ``data_preprocessor``, ``forward(mode='loss')``, ``parse_losses``, backward and the step of the optimizer
mmengine's ``build_optim_wrapper`` builds from ``optim_wrapper`` (``paramwise_cfg`` included; ``clip_grad`` as
configured), on the batches as the loader collated them. Hooks (RTMDet's EMAHook) run in the trial only: they are
what the trial adds. Cases:

* ``rtmdet``: mmdet 3's rtmdet/rtmdet_tiny_8xb32-300e_coco.py at its 640x640 training scale (its own Mosaic, MixUp
  pipeline; random init, SyncBN as BN on the CPU), batch 2 by default, on generated COCO annotations of 640x640
  images;
* ``coco``: mmdet 3's faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py at 1333x800, as the 2.x case.

Goal (issues 13 and 22): trial >= 0.95x pure.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_line, markdown_table, median, paired_ratios, write_results  # noqa: E402,I001

from model_hub_mmdet import generation  # noqa: E402,I001

generation.setup()  # the generation's fixes before mmcv/mmdet are used; registers s3/gcs
import torch  # noqa: E402

from model_hub_mmdet.expconf import load_experiment, local_hparams  # noqa: E402
from model_hub_mmdet.local import train_local  # noqa: E402

GENERATION = int((generation.installed() or "mmdet2")[-1])  # this Python's MMDetection generation
COCO_CONFIG = "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py"
COCO_CONFIG_3 = "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"
RTMDET_CONFIG_3 = "rtmdet/rtmdet_tiny_8xb32-300e_coco.py"


class _Stop(Exception):
    """Raised after the last batch a run needs: skips the validation and checkpoint that end a Determined run."""


# ============================================================================================ experiments
def demo_experiment(work: Path, workers: int | None = None) -> dict[str, Any]:
    """examples/shapes/shapes.yaml on generated shapes annotations, images from the fake backend (``workers``:
    data.workers_per_gpu, default the demo's own)."""
    from model_hub_mmdet.tools.shapes import make_shapes

    data = work / "shapes"
    make_shapes(data, train=64, val=2, size=128, seed=0)
    exp = load_experiment(REPO / "examples/shapes/shapes.yaml")
    hp = exp["hyperparameters"]
    hp["config_file"] = str(REPO / hp["config_file"])
    hp["override_mmdet_config"] = {**(hp.get("override_mmdet_config") or {}), **_data_paths(data, "train", "val")}
    if workers is not None:
        hp["override_mmdet_config"]["data.workers_per_gpu"] = workers
    exp["data"] = {"file_client_args": {"backend": "fake"}}
    return exp


def write_coco_annotations(path: Path, images: int, width: int = 1333, height: int = 800, seed: int = 0) -> Path:
    """A COCO instances file of ``images`` images of ``width`` x ``height`` with 2-8 random boxes each, over
    COCO's 80 categories (no image files: the fake backend serves an image of the annotated size)."""
    from mmdet.datasets import CocoDataset

    names = getattr(CocoDataset, "CLASSES", None) or CocoDataset.METAINFO["classes"]  # 2.x, 3.x
    rng = random.Random(seed)
    categories = [{"id": i + 1, "name": name, "supercategory": "thing"} for i, name in enumerate(names)]
    imgs, anns = [], []
    for i in range(images):
        imgs.append({"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": width, "height": height})
        for _ in range(rng.randint(2, 8)):
            w, h = rng.uniform(32, width / 3), rng.uniform(32, height / 3)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": rng.randint(1, 80),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                         "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": imgs, "annotations": anns, "categories": categories}))
    return path


def coco_experiment(work: Path, batch_size: int, workers: int) -> dict[str, Any]:
    """Faster R-CNN R50-FPN at 1333x800 on generated COCO-size annotations, images from the fake backend."""
    data = work / "coco"
    write_coco_annotations(data / "annotations" / "train.json", images=32)
    write_coco_annotations(data / "annotations" / "val.json", images=1, seed=1)
    overrides = {**_data_paths(data, "train", "val"), "model.backbone.init_cfg": None,  # no torchvision download
                 "data.workers_per_gpu": workers}
    return {
        "name": "compute-faster-rcnn-coco-size",
        "hyperparameters": {"global_batch_size": batch_size, "config_file": COCO_CONFIG,
                            "override_mmdet_config": overrides},
        "searcher": {"name": "single", "metric": "bbox_mAP", "smaller_is_better": False,
                     "max_length": {"batches": 100}},
        "data": {"file_client_args": {"backend": "fake"}},
        "entrypoint": "python3 -m determined.launch.torch_distributed python3 -m model_hub_mmdet.run",
    }


def experiment_3(work: Path, name: str, config_file: str, batch_size: int, workers: int, size: tuple[int, int],
                 images: int = 32) -> dict[str, Any]:
    """A 3.x experiment: ``config_file`` on generated annotations of ``images`` images of ``size`` (width, height),
    random init (no download), images from the fake backend."""
    data = work / name
    write_coco_annotations(data / "annotations" / "train.json", images=images, width=size[0], height=size[1])
    write_coco_annotations(data / "annotations" / "val.json", images=1, width=size[0], height=size[1], seed=1)
    overrides: dict[str, Any] = {"model.backbone.init_cfg": None}
    for split, folder in (("train", "train"), ("val", "val"), ("test", "val")):
        overrides[f"{split}_dataloader.dataset.data_root"] = f"{data}/"
        overrides[f"{split}_dataloader.dataset.ann_file"] = f"annotations/{folder}.json"
        overrides[f"{split}_dataloader.dataset.data_prefix.img"] = f"{folder}/"
    for key in ("val_evaluator", "test_evaluator"):
        overrides[f"{key}.ann_file"] = str(data / "annotations" / "val.json")
    overrides["train_dataloader.num_workers"] = workers
    overrides["train_dataloader.persistent_workers"] = workers > 0
    overrides["val_dataloader.num_workers"] = overrides["test_dataloader.num_workers"] = 0  # no validation runs
    overrides["val_dataloader.persistent_workers"] = overrides["test_dataloader.persistent_workers"] = False
    return {
        "name": f"compute-{name}",
        "hyperparameters": {"global_batch_size": batch_size, "config_file": config_file,
                            "override_mmdet_config": overrides},
        "searcher": {"name": "single", "metric": "coco/bbox_mAP", "smaller_is_better": False,
                     "max_length": {"batches": 100}},
        "data": {"file_client_args": {"backend": "fake"}},
        "entrypoint": "python3 -m determined.launch.torch_distributed python3 -m model_hub_mmdet.run",
    }


def _data_paths(root: Path, train: str, val: str) -> dict[str, str]:
    out = {}
    for split, folder in (("train", train), ("val", val), ("test", val)):
        out[f"data.{split}.ann_file"] = str(root / "annotations" / f"{folder}.json")
        out[f"data.{split}.img_prefix"] = f"{root / folder}/"
    return out


# ================================================================================================ the trial
def trial_run(exp: dict[str, Any], batches: int, capture: bool = False) -> dict[str, Any]:
    """Train ``batches`` batches through train_local; per-batch end times, and with ``capture`` the unwrapped
    batches, learning rates and losses."""
    if GENERATION == 3:
        from model_hub_mmdet.mmdet3.data import strip_bookkeeping
        from model_hub_mmdet.mmdet3.trial import MMDetTrial

        def unwrap_batch(batch: Any, device: Any) -> Any:  # the preprocessor moves the batch, in both runs
            return strip_bookkeeping(batch)
    else:
        from model_hub_mmdet.mmdet2.data import unwrap_batch
        from model_hub_mmdet.mmdet2.trial import MMDetTrial

    out: dict[str, Any] = {"stamps": [], "batches": [], "lrs": [], "losses": []}

    class Timed(MMDetTrial):
        def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> Any:
            if capture:
                kept = copy.deepcopy(unwrap_batch(batch, self.context.device))
            metrics = super().train_batch(batch, epoch_idx, batch_idx)
            out["stamps"].append(time.perf_counter())
            if capture:
                out["batches"].append(kept)
                out["lrs"].append([group["lr"] for group in self.optimizer.param_groups])
                out["losses"].append(float(metrics["loss"]))
            if len(out["stamps"]) == batches:
                raise _Stop
            return metrics

    try:
        # one batch more than needed: the run never reaches its end (validation, checkpoint)
        train_local(exp, Timed, max_batches=batches + 1, validation_period=10**6, checkpoint_period=10**6)
    except _Stop:
        pass
    gc.collect()  # the trial, its loader and its workers
    return out


# ================================================================================================ pure compute
def pure_run(exp: dict[str, Any], batches: list[Any], lrs: list[list[float]]) -> dict[str, Any]:
    """Forward, backward and optimizer step of a freshly built model over ``batches`` (in memory)."""
    if GENERATION == 3:
        return pure_run_3(exp, batches, lrs)
    from mmcv.runner import build_optimizer
    from mmdet.models import build_detector

    from model_hub_mmdet.mmdet2.config import build_mmdet_config

    hp = local_hparams(exp["hyperparameters"])
    cfg = build_mmdet_config(hp, exp.get("data") or {}, os.getcwd())
    seed = int((exp.get("reproducibility") or {}).get("experiment_seed", cfg.get("seed") or 0))  # as MMDetTrial
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    torch.manual_seed(seed)
    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    level = logging.getLogger("mmcv").level
    logging.getLogger("mmcv").setLevel(logging.WARNING)
    model.init_weights()
    logging.getLogger("mmcv").setLevel(level)
    model.train()
    optimizer = build_optimizer(model, cfg.optimizer)
    clip = (cfg.get("optimizer_config") or {}).get("grad_clip")
    params = [p for p in model.parameters() if p.requires_grad]
    out: dict[str, Any] = {"stamps": [], "losses": []}
    for data, lr in zip(batches, lrs):
        for group, value in zip(optimizer.param_groups, lr):
            group["lr"] = value
        loss, _ = model._parse_losses(model(**data))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, **clip)
        optimizer.step()
        out["stamps"].append(time.perf_counter())
        out["losses"].append(float(loss.detach()))
    del model, optimizer
    gc.collect()
    return out


def pure_run_3(exp: dict[str, Any], batches: list[Any], lrs: list[list[float]]) -> dict[str, Any]:
    """3.x: data_preprocessor, forward, backward and optimizer step of a freshly built model over ``batches``."""
    from mmdet.registry import MODELS
    from mmengine.logging import MMLogger
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import set_random_seed

    from model_hub_mmdet.mmdet3.config import build_mmdet_config

    hp = local_hparams(exp["hyperparameters"])
    cfg = build_mmdet_config(hp, exp.get("data") or {}, os.getcwd())
    randomness = dict(cfg.get("randomness") or {})
    exp_seed = (exp.get("reproducibility") or {}).get("experiment_seed")  # as MMDetTrial off-cluster
    seed = int(exp_seed if exp_seed is not None else randomness.get("seed") or 0)
    set_random_seed(seed, deterministic=bool(randomness.get("deterministic", False)))
    mm_logger = MMLogger.get_current_instance()
    level = mm_logger.level
    mm_logger.setLevel(logging.ERROR)  # every initialiser and paramwise option is logged (INFO, WARNING)
    model = MODELS.build(cfg.model)
    model.init_weights()
    if not torch.cuda.is_available():
        model = revert_sync_batchnorm(model)  # as MMDetTrial on the CPU
    model.train()
    ow_cfg = copy.deepcopy(cfg.optim_wrapper)
    ow_cfg.pop("accumulative_counts", None)
    optimizer = build_optim_wrapper(model, ow_cfg).optimizer
    mm_logger.setLevel(level)
    clip = dict(cfg.optim_wrapper.get("clip_grad") or {})
    clip_type = clip.pop("type", "norm")
    params = [p for p in model.parameters() if p.requires_grad]
    out: dict[str, Any] = {"stamps": [], "losses": []}
    for data, lr in zip(batches, lrs):
        for group, value in zip(optimizer.param_groups, lr):
            group["lr"] = value
        data = model.data_preprocessor(data, True)
        loss, _ = model.parse_losses(model(**data, mode="loss"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip and clip_type == "norm":
            torch.nn.utils.clip_grad_norm_(params, **clip)
        elif clip:
            torch.nn.utils.clip_grad_value_(params, **clip)
        optimizer.step()
        out["stamps"].append(time.perf_counter())
        out["losses"].append(float(loss.detach()))
    del model, optimizer
    gc.collect()
    return out


def seconds_per_batch(stamps: list[float], warmup: int) -> float:
    """Mean seconds per batch after ``warmup`` batches (from the end of the last warm-up batch)."""
    return (stamps[-1] - stamps[warmup - 1]) / (len(stamps) - warmup)


# ================================================================================================== main
def run_case(name: str, exp: dict[str, Any], warmup: int, timed: int, rounds: int) -> dict[str, Any]:
    total = warmup + timed
    print(f"{name}: capturing {total} batches from the trial's loader", flush=True)
    captured = trial_run(exp, total, capture=True)
    trial_s, pure_s = [], []
    losses: dict[str, list[float]] = {"capture": captured["losses"]}
    for r in range(rounds):
        for side in ("trial", "pure") if r % 2 == 0 else ("pure", "trial"):
            if side == "trial":
                got = trial_run(exp, total)
                trial_s.append(seconds_per_batch(got["stamps"], warmup))
            else:
                got = pure_run(exp, captured["batches"], captured["lrs"])
                pure_s.append(seconds_per_batch(got["stamps"], warmup))
                losses.setdefault("pure", got["losses"])
            print(f"  round {r} {side}: {(trial_s if side == 'trial' else pure_s)[-1]:.3f} s/batch", flush=True)
    ratios = paired_ratios(pure_s, trial_s)  # throughput trial / pure = (s/batch pure) / (s/batch trial)
    return {"case": name, "trial_s_per_batch": trial_s, "pure_s_per_batch": pure_s, "throughput_ratios": ratios,
            "median_trial": median(trial_s), "median_pure": median(pure_s), "median_ratio": median(ratios),
            "first_losses": {k: v[:3] for k, v in losses.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--generation", type=int, choices=(2, 3), default=2,
                        help="MMDetection generation (default 2, with .venv's Python; 3 needs .venv-mmdet3's)")
    parser.add_argument("--cases", nargs="+", choices=["demo", "coco", "rtmdet"],
                        help="default: demo coco (2.x), rtmdet coco (3.x); demo is 2.x only, rtmdet 3.x only")
    parser.add_argument("--rounds", type=int, default=3, help="alternating trial/pure rounds (default 3)")
    parser.add_argument("--demo-batches", type=int, default=20, help="timed demo batches per run (default 20)")
    parser.add_argument("--demo-warmup", type=int, default=3)
    parser.add_argument("--coco-batches", type=int, default=6, help="timed COCO-size batches per run (default 6)")
    parser.add_argument("--coco-warmup", type=int, default=2)
    parser.add_argument("--coco-batch-size", type=int, default=2)
    parser.add_argument("--demo-workers", type=int, help="data.workers_per_gpu for the demo case (default: its own)")
    parser.add_argument("--coco-workers", type=int, default=2, help="data.workers_per_gpu for the COCO case")
    parser.add_argument("--rtmdet-batches", type=int, default=6, help="timed RTMDet-tiny batches per run (default 6)")
    parser.add_argument("--rtmdet-warmup", type=int, default=2)
    parser.add_argument("--rtmdet-batch-size", type=int, default=2)
    parser.add_argument("--rtmdet-workers", type=int, default=2, help="train_dataloader.num_workers for RTMDet")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 round, 3+1 demo, 2+1 COCO and 2+1 RTMDet batches, COCO batch 1")
    parser.add_argument("--json", help="results file (default runs/bench/compute-TIME.json)")
    args = parser.parse_args(argv)
    if args.generation != GENERATION:
        from common import check_generation

        check_generation(args.generation)
    args.cases = args.cases or (["rtmdet", "coco"] if args.generation == 3 else ["demo", "coco"])
    wrong = {"demo": 3, "rtmdet": 2}
    if any(wrong.get(case) == args.generation for case in args.cases):
        parser.error(f"--cases: demo is a 2.x case and rtmdet a 3.x one (this is --generation {args.generation})")
    if args.quick:
        args.rounds, args.demo_batches, args.demo_warmup = 1, 3, 1
        args.coco_batches, args.coco_warmup, args.coco_batch_size = 2, 1, 1
        args.rtmdet_batches, args.rtmdet_warmup = 2, 1
    work = Path(tempfile.mkdtemp(prefix="bench-compute-"))
    os.environ["XDG_DATA_HOME"] = str(work / "xdg")  # no checkpoint is written, but keep Determined's dir out of ~
    (work / "cwd").mkdir()
    os.chdir(work / "cwd")  # an empty working directory (Determined would copy it into checkpoints)
    logging.getLogger("determined").setLevel(logging.WARNING)
    results = []
    try:
        for case in args.cases:
            if case == "demo":
                exp = demo_experiment(work, args.demo_workers)
                results.append(run_case("demo", exp, args.demo_warmup, args.demo_batches, args.rounds))
                results[-1]["setup"] = "Mask R-CNN of examples/shapes, 128 px, batch 8"
            elif case == "rtmdet":
                exp = experiment_3(work, "rtmdet", RTMDET_CONFIG_3, args.rtmdet_batch_size, args.rtmdet_workers,
                                   (640, 640))
                results.append(run_case("rtmdet", exp, args.rtmdet_warmup, args.rtmdet_batches, args.rounds))
                results[-1]["setup"] = f"RTMDet-tiny (mmdet 3), 640x640, batch {args.rtmdet_batch_size}"
            elif args.generation == 3:
                exp = experiment_3(work, "coco", COCO_CONFIG_3, args.coco_batch_size, args.coco_workers, (1333, 800))
                results.append(run_case("coco", exp, args.coco_warmup, args.coco_batches, args.rounds))
                results[-1]["setup"] = f"Faster R-CNN R50-FPN (mmdet 3), 1333x800, batch {args.coco_batch_size}"
            else:
                exp = coco_experiment(work, args.coco_batch_size, args.coco_workers)
                results.append(run_case("coco", exp, args.coco_warmup, args.coco_batches, args.rounds))
                results[-1]["setup"] = f"Faster R-CNN R50-FPN, 1333x800, batch {args.coco_batch_size}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gen = " (MMDetection 3.x)" if args.generation == 3 else ""
    print(f"\n### compute{gen}: trial vs pure compute ({args.rounds} alternating rounds, median)\n")
    rows = [(r["setup"], f"{r['median_trial']:.3f}", f"{r['median_pure']:.3f}", f"{r['median_ratio']:.3f}",
             ", ".join(f"{x:.3f}" for x in r["throughput_ratios"])) for r in results]
    print(markdown_table(["case", "trial s/batch", "pure s/batch", "throughput trial/pure", "per round"], rows))
    print(f"\n{machine_line()}; torch threads {torch.get_num_threads()}. Goal: trial/pure >= 0.95.")
    for r in results:
        print(f"first losses ({r['case']}): " + "; ".join(f"{k} {', '.join(f'{x:.4f}' for x in v)}"
                                                        for k, v in r["first_losses"].items()))
    name = "compute-mmdet3" if args.generation == 3 else "compute"
    print(f"\nresults: {write_results(name, {'args': vars(args), 'results': results}, args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
