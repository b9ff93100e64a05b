"""The shapes demo as `make demo` runs it, once per experiment seed: wall time, mAP at every validation, and the
third-party warnings that reached the console.

    OMP_NUM_THREADS=1 .venv/bin/python bench/demo_seeds.py [--seeds 0 1 2]
    OMP_NUM_THREADS=1 .venv-mmdet3/bin/python bench/demo_seeds.py --generation 3

Each run is ``model-hub-mmdet train DEMO.yaml --local --nproc 2`` (the command `make demo` runs, on the data
`make demo` generates in ``data/shapes``) in a fresh process from the repository root, with
``reproducibility.experiment_seed`` set to the run's seed in a copy of the demo's experiment file: the seed picks
the initial weights, the sample order and the augmentation draws, as another machine's floating point would pick
another trajectory. The goal (issue 22) is the *minimum* final bbox mAP over the seeds at 0.5 or more, and each
run's wall time at most 10 minutes. Runs are sequential: on 2 cores each one needs the whole machine.

The console check counts lines of the run's output that look like a Python warning (``SomethingWarning:``) or
a logger's ``WARNING`` line: the demo's console is meant to show the progress bar, validation lines and the
summary only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, check_generation, machine_line, markdown_table, write_results  # noqa: E402

DEMOS = {2: "examples/shapes/shapes.yaml", 3: "examples/shapes/shapes_mmdet3.yaml"}
WARNING_LINE = re.compile(r"\w+Warning: |(^|\s)WARNING[ :]")


def seeded_experiment(work: Path, generation: int, seed: int, batches: int | None) -> Path:
    import yaml

    exp = yaml.safe_load((REPO / DEMOS[generation]).read_text())
    exp["reproducibility"] = {"experiment_seed": seed}
    if batches:  # --quick: a shorter run, validated and checkpointed once at its end
        exp["searcher"]["max_length"] = {"batches": batches}
        exp["min_validation_period"] = exp["min_checkpoint_period"] = {"batches": batches}
    path = work / f"demo-seed-{seed}.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def console_warnings(text: str) -> list[str]:
    """Warning lines of a run's console output (the progress bar's carriage returns split into lines first)."""
    lines = re.split(r"[\r\n]+", text)
    return [line.strip() for line in lines if WARNING_LINE.search(line)]


def metric(validation: dict, name: str) -> float | None:
    """``bbox_mAP`` (2.x) or ``coco/bbox_mAP`` (3.x)."""
    for key in (name, f"coco/{name}"):
        if key in validation:
            return float(validation[key])
    return None


def run_seed(work: Path, generation: int, seed: int, nproc: int, batches: int | None = None) -> dict:
    exp = seeded_experiment(work, generation, seed, batches)
    out = work / f"run-{seed}"
    cmd = [str(Path(sys.executable).with_name("model-hub-mmdet")), "train", str(exp), "--local",
           "--nproc", str(nproc), "--out", str(out)]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed}: exit {proc.returncode}\n{proc.stdout[-3000:]}")
    validations = json.loads((out / "metrics.json").read_text())["validations"]
    curve = [(int(v["batches"]), metric(v, "bbox_mAP"), metric(v, "segm_mAP")) for v in validations]
    warnings = console_warnings(proc.stdout)
    return {"seed": seed, "wall_s": wall, "curve": curve, "bbox_mAP": curve[-1][1], "segm_mAP": curve[-1][2],
            "console_warnings": warnings, "written": sorted(p.name for p in out.iterdir())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generation", type=int, choices=(2, 3), default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--nproc", type=int, default=2, help="as `make demo` (DEMO_NPROC)")
    parser.add_argument("--quick", action="store_true", help="smoke run: seed 0 only, 60 batches")
    parser.add_argument("--json", help="write the results here (default: runs/bench/demo_seeds[-mmdet3]-TIME.json)")
    args = parser.parse_args()
    check_generation(args.generation)
    batches = 60 if args.quick else None
    if args.quick:
        args.seeds = args.seeds[:1]
    if not (REPO / "data/shapes/annotations/val.json").is_file():
        subprocess.run([str(Path(sys.executable).with_name("model-hub-mmdet")), "make-shapes", "data/shapes"],
                       cwd=REPO, check=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-demo-seeds-") as tmp:
        for seed in args.seeds:
            runs.append(run_seed(Path(tmp), args.generation, seed, args.nproc, batches))
            r = runs[-1]
            print(f"  seed {seed}: bbox/segm mAP {r['bbox_mAP']:.3f}/{r['segm_mAP']:.3f} in {r['wall_s']:.0f} s,"
                  f" {len(r['console_warnings'])} console warning line(s)", file=sys.stderr)
    points = [batches for batches, _, _ in runs[0]["curve"]]
    rows = [[r["seed"], f"{r['wall_s'] / 60:.1f}", *(f"{b:.3f} / {s:.3f}" for _, b, s in r["curve"]),
             len(r["console_warnings"])] for r in runs]
    bbox = [r["bbox_mAP"] for r in runs]
    segm = [r["segm_mAP"] for r in runs]
    walls = [r["wall_s"] / 60 for r in runs]
    title = "MMDetection 3.x" if args.generation == 3 else "MMDetection 2.x"
    print(f"\n## `make demo` over {len(runs)} experiment seeds ({title}; `{DEMOS[args.generation]}`, --nproc"
          f" {args.nproc}); {machine_line()}\n")
    print(markdown_table(["seed", "wall, min", *(f"bbox / segm mAP at {p}" for p in points), "console warnings"],
                         rows))
    print(f"\nfinal bbox mAP min / median / max: **{min(bbox):.3f}** / {statistics.median(bbox):.3f} /"
          f" {max(bbox):.3f} (goal: min >= 0.5); segm mAP {min(segm):.3f} / {statistics.median(segm):.3f} /"
          f" {max(segm):.3f}; wall {min(walls):.1f} / {statistics.median(walls):.1f} / {max(walls):.1f} min"
          " (goal: <= 10)")
    for r in runs:
        for line in r["console_warnings"][:5]:
            print(f"  seed {r['seed']} console: {line[:200]}")
    name = "demo_seeds-mmdet3" if args.generation == 3 else "demo_seeds"
    write_results(name, {"args": vars(args), "runs": runs, "machine": machine_line(),
                         "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}, args.json)


if __name__ == "__main__":
    main()
