"""Seconds per training batch of the shapes demo under different ways of using the machine's cores.

    .venv/bin/python bench/demo_speed.py [--batches 40] [--rounds 1] [--variants NAME ...]

Each variant is one ``model-hub-mmdet train examples/shapes/shapes.yaml --local`` process (``--nproc`` and
``OMP_NUM_THREADS`` as the variant says, ``override_mmdet_config`` entries added to the demo's), run from the
repository root on ``data/shapes`` (``make demo``'s data; made if missing) for ``--batches`` batches. The trial is
``bench/timed_trial.py``, which stamps every training batch: the table gives the median time between batches after
the first ``--warmup`` (the steady state the whole demo runs at) and the process's start-up time (start to first
batch). Loader workers run at the default ``data.worker_niceness`` (19 on the CPU) unless the variant says "normal
priority". Variants alternate round by round, so a noisy stretch of the machine hits them all.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_line, markdown_table, write_results  # noqa: E402

SAMPLERS_32 = {"model.train_cfg.rpn.sampler.num": 32, "model.train_cfg.rcnn.sampler.num": 32}
TORCHVISION_ROI = {"model.roi_head.bbox_roi_extractor.roi_layer.use_torchvision": True,
                   "model.roi_head.mask_roi_extractor.roi_layer.use_torchvision": True}
NORMAL_PRIORITY = {"worker_niceness": 0}  # the experiment's data section: workers at the trainer's priority
# name -> (processes, OpenMP threads per process, overrides[, the experiment's data section])
VARIANTS: dict[str, tuple] = {
    "1 process x 2 threads, 2 loader workers": (1, 2, {"data.workers_per_gpu": 2}),
    "1 process x 2 threads, no workers": (1, 2, {"data.workers_per_gpu": 0}),
    "2 processes x 1 thread, no workers": (2, 1, {"data.workers_per_gpu": 0}),
    "2 processes x 1 thread, 1 worker each": (2, 1, {"data.workers_per_gpu": 1}),
    "2 processes x 1 thread, 1 worker each at normal priority": (2, 1, {"data.workers_per_gpu": 1}, NORMAL_PRIORITY),
    "1 process x 2 threads, 1 worker": (1, 2, {"data.workers_per_gpu": 1}),
    "1 process x 2 threads, 1 worker at normal priority": (1, 2, {"data.workers_per_gpu": 1}, NORMAL_PRIORITY),
    "2 processes x 1 thread, no workers, samplers 32": (2, 1, {"data.workers_per_gpu": 0, **SAMPLERS_32}),
    "1 process x 2 threads, no workers, samplers 32": (1, 2, {"data.workers_per_gpu": 0, **SAMPLERS_32}),
    "2 processes x 1 thread, no workers, samplers 32, torchvision RoIAlign": (
        2, 1, {"data.workers_per_gpu": 0, **SAMPLERS_32, **TORCHVISION_ROI}),
}


def experiment_yaml(work: Path, overrides: dict, batches: int, data: dict | None = None) -> Path:
    import yaml

    exp = yaml.safe_load((REPO / "examples/shapes/shapes.yaml").read_text())
    if data:
        exp["data"] = {**(exp.get("data") or {}), **data}
    hp = exp["hyperparameters"]
    hp["override_mmdet_config"] = {**(hp.get("override_mmdet_config") or {}), **overrides}
    exp["searcher"]["max_length"] = {"batches": batches}
    exp["min_validation_period"] = {"batches": 10 * batches}  # only the final validation
    exp["min_checkpoint_period"] = {"batches": 10 * batches}
    path = work / f"exp-{len(list(work.glob('exp-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def run_variant(work: Path, name: str, batches: int, warmup: int) -> dict:
    nproc, threads, overrides, *data = VARIANTS[name]
    stamps = work / "stamps.txt"
    stamps.unlink(missing_ok=True)
    exp = experiment_yaml(work, overrides, batches, data[0] if data else None)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), BENCH_STAMPS=str(stamps), XDG_DATA_HOME=str(work / "xdg"))
    cmd = [str(Path(sys.executable).with_name("model-hub-mmdet")), "train", str(exp), "--local",
           "--trial", "bench.timed_trial:TimedTrial", "--out", str(work / "run"), "--nproc", str(nproc)]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    times = [float(line) for line in stamps.read_text().split()]
    gaps = [b - a for a, b in zip(times[warmup:], times[warmup + 1:])]
    return {"s_per_batch": statistics.median(gaps), "mean_s_per_batch": statistics.fmean(gaps), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME")
    parser.add_argument("--json", help="write the results here (default: runs/bench/demo_speed-TIME.json)")
    args = parser.parse_args()
    if not (REPO / "data/shapes/annotations/val.json").is_file():
        subprocess.run([str(Path(sys.executable).with_name("model-hub-mmdet")), "make-shapes", "data/shapes"],
                       cwd=REPO, check=True)
    runs: dict[str, list[dict]] = {name: [] for name in args.variants}
    with tempfile.TemporaryDirectory(prefix="bench-demo-speed-") as tmp:
        for round_ in range(args.rounds):
            order = args.variants if round_ % 2 == 0 else list(reversed(args.variants))
            for name in order:
                runs[name].append(run_variant(Path(tmp), name, args.batches, args.warmup))
                print(f"  {name}: {runs[name][-1]['s_per_batch']:.3f} s/batch", file=sys.stderr)
    base = statistics.median(r["s_per_batch"] for r in runs[args.variants[0]])
    rows = []
    for name, results in runs.items():
        s = statistics.median(r["s_per_batch"] for r in results)
        rows.append([name, f"{s:.3f}", f"{statistics.median(r['mean_s_per_batch'] for r in results):.3f}",
                     f"{base / s:.2f}x", f"{1800 * s / 60:.1f}"])
    print(f"\n{args.batches} batches of 8 per run ({args.warmup} left out), {args.rounds} round(s); {machine_line()}\n")
    print(markdown_table(["variant", "median s/batch", "mean s/batch", "speed vs first", "1800 batches, min"], rows))
    write_results("demo_speed", {"args": vars(args), "runs": runs}, args.json)


if __name__ == "__main__":
    main()
