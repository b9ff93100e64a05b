"""Where the RTMDet-tiny trial spends its time beyond pure compute: the data pipeline and the EMA update, apart.

    OMP_NUM_THREADS=2 .venv-mmdet3/bin/python bench/rtmdet_split.py [--samples 40]

``compute.py --generation 3`` compares the trial with pure compute (forward, backward and step on batches already
in memory). The trial also runs two things the pure side does not: the training pipeline of mmdet's
rtmdet_tiny_8xb32-300e_coco.py (``CachedMosaic``, ``RandomResize``, ``RandomCrop``, ``YOLOXHSVRandomAug``,
``RandomFlip``, ``Pad``, ``CachedMixUp``, ``PackDetInputs`` at 640x640, images from the fake backend, as in
``compute.py``) and its ``EMAHook`` (``ExpMomentumEMA`` over every parameter and buffer after each step). This
times both in this process, one transform at a time, and the EMA update of mmengine next to the same average done
with one fused ``torch._foreach_lerp_`` (what a rewrite could save at most). Each is the mean over ``--samples``
calls after a warm-up.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import check_generation, machine_line, markdown_table, timed_into, write_results  # noqa: E402,I001

check_generation(3)
import compute  # noqa: E402  (its experiment: the same config, data and backend as the compute benchmark)
import torch  # noqa: E402

from model_hub_mmdet.expconf import local_hparams  # noqa: E402
from model_hub_mmdet.mmdet3.config import build_mmdet_config  # noqa: E402


def time_pipeline(cfg: Any, samples: int) -> dict[str, float]:
    """Milliseconds per sample for each transform of the training pipeline, and in all."""
    from mmdet.registry import DATASETS

    dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    spent: dict[str, float] = {}
    for step in dataset.pipeline.transforms:
        step.transform = timed_into(spent, type(step).__name__, step.transform)
    for i in range(10):  # fills the Mosaic and MixUp caches
        dataset[i % len(dataset)]
    spent.clear()
    start = time.perf_counter()
    for i in range(samples):
        dataset[i % len(dataset)]
    total = time.perf_counter() - start
    out = {name: 1000 * seconds / samples for name, seconds in spent.items()}
    out["whole pipeline"] = 1000 * total / samples
    return out


def time_ema(cfg: Any, samples: int) -> dict[str, float]:
    """Milliseconds per update: mmengine's ExpMomentumEMA.update_parameters, and one fused lerp over the same
    tensors (taking the model's state_dict, as mmengine's does)."""
    from mmdet.models.layers import ExpMomentumEMA
    from mmdet.registry import MODELS
    from mmengine.model import revert_sync_batchnorm

    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    hook = next(h for h in cfg.custom_hooks if h["type"] == "EMAHook")
    ema = ExpMomentumEMA(model, momentum=hook.get("momentum", 0.0002), update_buffers=hook.get("update_buffers"))
    for _ in range(3):
        ema.update_parameters(model)
    start = time.perf_counter()
    for _ in range(samples):
        ema.update_parameters(model)
    mmengine_ms = 1000 * (time.perf_counter() - start) / samples
    names = [k for k, p in ema.avg_parameters.items() if p.dtype.is_floating_point]
    averaged = [ema.avg_parameters[k] for k in names]
    start = time.perf_counter()
    for _ in range(samples):
        state = model.state_dict()
        torch._foreach_lerp_(averaged, [state[k] for k in names], 0.0002)
    fused_ms = 1000 * (time.perf_counter() - start) / samples
    return {"mmengine ExpMomentumEMA.update_parameters": mmengine_ms, "one torch._foreach_lerp_": fused_ms,
            "tensors": float(len(names)), "parameters (M)": sum(p.numel() for p in model.parameters()) / 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--samples", type=int, default=40, help="timed pipeline samples and EMA updates (default 40)")
    parser.add_argument("--json", help="results file (default runs/bench/rtmdet_split-TIME.json)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-rtmdet-split-"))
    exp = compute.experiment_3(work, "rtmdet", compute.RTMDET_CONFIG_3, 2, 0, (640, 640))
    cfg = build_mmdet_config(local_hparams(exp["hyperparameters"]), exp["data"], os.getcwd())
    from mmengine.logging import MMLogger

    MMLogger.get_current_instance().setLevel("ERROR")  # every initialiser is logged
    pipeline = time_pipeline(cfg, args.samples)
    ema = time_ema(cfg, args.samples)
    print("### RTMDet-tiny 640x640: what the trial runs beyond pure compute\n")
    print(markdown_table(["pipeline step", "ms per sample"], [(k, f"{v:.1f}") for k, v in pipeline.items()]))
    print()
    print(markdown_table(["EMA update", "ms per step (tensors and parameters: counts)"],
                         [(k, f"{v:.1f}") for k, v in ema.items()]))
    print(f"\n{machine_line()}")
    print(f"\nresults: {write_results('rtmdet_split', {'pipeline_ms': pipeline, 'ema': ema}, args.json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
