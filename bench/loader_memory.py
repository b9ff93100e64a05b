"""Memory of the training loaders on COCO-size annotations, by loader worker count: the trial's and the runner's.

    .venv/bin/python bench/loader_memory.py [--workers 0,4,8] [--per-worker 1830] [--nproc 2] [--quick]
    .venv-mmdet3/bin/python bench/loader_memory.py --generation 3 [...]

Generates a COCO-2017-size training file (118,287 images, 860,001 annotations: bench/coco_annotations.py's
generator) once, reads no image (``backend: fake``: every image is the package's 640x480 JPEG), and for each loader
and worker count starts a fresh process that builds the dataset, builds the loader and iterates it, shuffled,
until it has seen ``workers x --per-worker`` samples (``--per-worker`` for 0 workers; default 1,830: one worker's
share of an epoch on an 8-GPU x 8-worker node) or ``--samples``. Meanwhile this process reads
``/proc/PID/smaps_rollup`` of the child and all its descendants every ``--interval`` seconds (2): PSS (shared pages
divided among the processes sharing them, so forked workers are not counted once per worker), USS (private pages)
and private dirty pages. The table gives the values at the end of the run, the peak PSS, the growth per 10,000
samples (least squares of PSS against samples seen over the second half of the run, once the workers have warmed
up) and the PSS as a multiple of the same loader's with 0 workers. ``--from-json FILE`` prints the tables of an
earlier run's result file again.

Loaders (``--loaders``):

* ``runner``: the generation's runner's loader. 2.x: ``mmdet.datasets.build_dataloader`` as ``train_detector`` calls
  it (group sampler, fresh workers every epoch); 3.x: mmengine's ``Runner.build_dataloader`` with mmdet 3's COCO
  settings (``DefaultSampler``, ``AspectRatioBatchSampler``, persistent workers);
* ``ours``: the trial's loader (``model_hub_mmdet.mmdetN.data.build_train_loader``: endless, resumable, persistent
  workers) on the dataset after the trial's sharing step: 2.x ``share_annotations``
  (model_hub_mmdet/mmdet2/datasets/flat.py), 3.x ``share_serialized`` (model_hub_mmdet/mmdet3/shared_data.py),
  with a fresh node cache folder per run (so each run builds its buffers, as a first run does);
* ``plain``: the trial's loader without the sharing step (the project before issue 30);
* ``runner-shared``: the runner's loader on the dataset after the sharing step (what the sharing alone does).

``--nproc N`` adds the node view: N processes started together on the same file, each with ``--nproc-workers``
loader workers (default 2), like the local ranks of one node, for ``runner`` and ``ours`` (one node cache folder
shared by the N processes): the PSS of all of them together and each one's seconds from start to its first batch.

The pipeline is mmdet's COCO detection pipeline at ``--size`` px (default 320; the memory in question is the
annotations', not the images'). ``--quick``: a hundredth of the file, workers 0 and 2, 40 samples per worker.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO,
    VENVS,
    installed_generation,
    least_squares_slope,
    machine_line,
    markdown_table,
    process_tree,
    smaps_rollup,
    write_results,
)

COCO_SIZE = (118_287, 860_001)  # train2017
PER_WORKER = 1_830  # 118,287 / (8 GPUs x 8 workers)
MB = 2**20
LOADERS = {2: ("runner", "ours", "plain", "runner-shared"), 3: ("runner", "ours", "plain", "runner-shared")}
LABELS = {2: {"runner": "mmdet 2.28 build_dataloader (train_detector)", "ours": "trial loader, share_annotations",
              "plain": "trial loader, no sharing", "runner-shared": "mmdet 2.28 build_dataloader, share_annotations"},
          3: {"runner": "mmengine Runner.build_dataloader", "ours": "trial loader, share_serialized",
              "plain": "trial loader, no sharing", "runner-shared": "Runner.build_dataloader, share_serialized"}}
SHARED = ("ours", "runner-shared")  # loaders whose dataset goes through the sharing step
ENV_CACHE = "MODEL_HUB_MMDET_NODE_CACHE"


# ============================================================================================== the child
def _mark(name: str, **extra: Any) -> None:
    print(json.dumps({"mark": name, "t": time.monotonic(), **extra}), flush=True)


def _dataset2(data: Path, size: int) -> Any:
    from mmdet.datasets import build_dataset

    norm = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
    pipeline = [dict(type="LoadImageFromFile", file_client_args={"backend": "fake"}),
                dict(type="LoadAnnotations", with_bbox=True),
                dict(type="Resize", img_scale=(size, size), keep_ratio=True),
                dict(type="RandomFlip", flip_ratio=0.5), dict(type="Normalize", **norm),
                dict(type="Pad", size_divisor=32), dict(type="DefaultFormatBundle"),
                dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels"])]
    cfg = dict(type="CocoDataset", ann_file=str(data / "annotations" / "instances_train2017.json"),
               img_prefix=f"{data / 'train2017'}/", pipeline=pipeline, file_client_args={"backend": "fake"})
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' prints
        return build_dataset(cfg)


def _dataset3(data: Path, size: int) -> Any:
    from mmdet.registry import DATASETS

    fake = {"backend": "fake"}
    cfg = dict(type="CocoDataset", data_root=f"{data}/", ann_file="annotations/instances_train2017.json",
               data_prefix=dict(img="train2017/"), filter_cfg=dict(filter_empty_gt=True, min_size=32),
               backend_args=fake,
               pipeline=[dict(type="LoadImageFromFile", backend_args=fake),
                         dict(type="LoadAnnotations", with_bbox=True),
                         dict(type="Resize", scale=(size, size), keep_ratio=True), dict(type="RandomFlip", prob=0.5),
                         dict(type="PackDetInputs")])
    with contextlib.redirect_stdout(io.StringIO()):
        dataset = DATASETS.build(cfg)
        dataset.full_init()
    return dataset


def _batch_samples(batch: Any) -> int:
    if isinstance(batch, dict):
        if "inputs" in batch:  # 3.x pseudo_collate
            return len(batch["inputs"])
        metas = batch.get("img_metas")  # 2.x: a DataContainer holding chunks of metas
        if metas is not None:
            return sum(len(chunk) for chunk in metas.data)
    return 1


def child(gen: int, loader: str, workers: int, samples: int, data: Path, batch: int, size: int) -> None:
    """Build the dataset and the loader, iterate until ``samples`` samples; marks and progress on stdout."""
    _mark("start")
    from model_hub_mmdet.gc_pause import gc_paused

    # ours builds as the trial does, with the collector paused; the runner's side as its runner does, with it on
    with gc_paused() if loader == "ours" else contextlib.nullcontext():
        if gen == 2:
            from model_hub_mmdet import generation

            generation.setup()  # this stack's fixes; the fake backend
            dataset = _dataset2(data, size)
        else:
            from mmdet.utils import register_all_modules

            from model_hub_mmdet.mmdet3 import fileio

            register_all_modules()
            fileio.register()  # the fake backend
            dataset = _dataset3(data, size)
        _mark("built", records=len(dataset))
        if loader in SHARED:
            if gen == 2:
                from model_hub_mmdet.mmdet2.datasets.flat import share_annotations

                share_annotations(dataset)
            else:
                from model_hub_mmdet.mmdet3.shared_data import share_serialized

                share_serialized(dataset)
            _mark("shared")
    if loader.startswith("runner") and gen == 2:
        from mmdet.datasets import build_dataloader

        dl = build_dataloader(dataset, batch, workers, num_gpus=1, dist=False, seed=0,
                              runner_type="EpochBasedRunner", persistent_workers=False)
        batches = (b for _ in itertools.count() for b in dl)  # an epoch-based runner: fresh workers per epoch
    elif loader.startswith("runner"):
        from mmengine.runner import Runner

        dl = Runner.build_dataloader(dict(batch_size=batch, num_workers=workers, persistent_workers=workers > 0,
                                          sampler=dict(type="DefaultSampler", shuffle=True),
                                          batch_sampler=dict(type="AspectRatioBatchSampler"), dataset=dataset), seed=0)
        batches = (b for _ in itertools.count() for b in dl)
    else:
        module = __import__(f"model_hub_mmdet.mmdet{gen}.data", fromlist=["build_train_loader"])
        batches = iter(module.build_train_loader(dataset, batch, num_workers=workers, seed=0))
    seen = 0
    for b in batches:
        if not seen:
            _mark("first_batch")
        seen += _batch_samples(b)
        print(json.dumps({"seen": seen, "t": time.monotonic()}), flush=True)
        if seen >= samples:
            break
    _mark("done", seen=seen)
    sys.stdout.flush()
    os._exit(0)  # the parent kills the loader workers with the process group


# ============================================================================================= the parent
def run_one(args: argparse.Namespace, loader: str, workers: int, samples: int, data: Path, procs: int = 1,
            cache: Path | None = None) -> dict[str, Any]:
    """Start ``procs`` children together, sample their trees until all are done; the timeline and marks."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env[ENV_CACHE] = str(cache) if cache is not None else "off"
    cmd = [sys.executable, str(Path(__file__).resolve()), "_child", str(args.generation), loader, str(workers),
           str(samples), str(data), str(args.batch_size), str(args.size)]
    started = time.monotonic()
    children = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True) for _ in range(procs)]
    state = [{"seen": 0, "marks": {}, "err": []} for _ in children]

    def read(i: int) -> None:
        for line in children[i].stdout:
            with contextlib.suppress(ValueError):
                msg = json.loads(line)
                if "mark" in msg:
                    state[i]["marks"][msg["mark"]] = msg["t"] - started
                    state[i]["records"] = msg.get("records", state[i].get("records", 0))
                elif "seen" in msg:
                    state[i]["seen"] = msg["seen"]

    def read_err(i: int) -> None:
        for line in children[i].stderr:
            state[i]["err"].append(line)
            del state[i]["err"][:-40]

    threads = [threading.Thread(target=f, args=(i,), daemon=True) for i in range(procs) for f in (read, read_err)]
    for t in threads:
        t.start()
    timeline = []
    try:
        while any(c.poll() is None for c in children):
            roll: dict[str, int] = {"procs": 0, "workers_private_dirty": 0, "workers": 0,
                                    "alive": sum(c.poll() is None for c in children)}
            for c in children:
                for j, pid in enumerate(process_tree(c.pid)):  # the child first, then its loader workers
                    one = smaps_rollup(pid)
                    if not one:
                        continue
                    roll["procs"] += 1
                    if j:
                        roll["workers"] += 1
                        roll["workers_private_dirty"] += one["Private_Dirty"]
                    for key, value in one.items():
                        roll[key] = roll.get(key, 0) + value
            if roll["procs"]:
                timeline.append({"t": time.monotonic() - started, "seen": sum(s["seen"] for s in state), **roll})
            if time.monotonic() - started > args.timeout:
                raise SystemExit(f"{loader} with {workers} workers ran past --timeout {args.timeout} s")
            time.sleep(args.interval)
    finally:
        for c in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.pid, signal.SIGKILL)
            c.wait()
        for t in threads:
            t.join(timeout=5)
    for i, c in enumerate(children):
        if "done" not in state[i]["marks"]:
            raise SystemExit(f"{loader} with {workers} workers failed (exit {c.returncode}):\n"
                             + "".join(state[i]["err"][-20:]))
    return {"loader": loader, "workers": workers, "procs": procs, "target": samples, "timeline": timeline,
            "marks": [s["marks"] for s in state], "seen": sum(s["seen"] for s in state),
            "records": state[0].get("records", 0)}


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    """End values (the last sample with every child still iterating), peak PSS, slope per 10k samples."""
    first_done = min(m.get("done", float("inf")) for m in run["marks"])
    points = [p for p in run["timeline"] if p["seen"] > 0 and p["t"] < first_done and p["alive"] == run["procs"]]
    points = points or run["timeline"]
    end = points[-1]
    iterating = [p for p in points if p["seen"] >= run["target"] * run["procs"] / 2]  # after the workers' warm-up
    slope = least_squares_slope([p["seen"] for p in iterating], [p["Pss"] / MB for p in iterating]) * 10_000
    first = max(m.get("first_batch", float("nan")) for m in run["marks"])
    return {"pss_mb": end["Pss"] / MB, "peak_pss_mb": max(p["Pss"] for p in run["timeline"]) / MB,
            "uss_mb": end.get("Uss", 0) / MB, "private_dirty_mb": end.get("Private_Dirty", 0) / MB,
            "workers_private_dirty_mb": end["workers_private_dirty"] / MB, "workers_seen": end["workers"],
            "slope_mb_per_10k": slope, "seen": run["seen"],
            "seconds": max(m.get("done", float("nan")) for m in run["marks"]), "to_first_batch_s": first,
            "built_s": [m.get("built") for m in run["marks"]], "shared_s": [m.get("shared") for m in run["marks"]],
            "first_batch_s": [m.get("first_batch") for m in run["marks"]], "points": len(iterating)}


def table(gen: int, runs: list[dict[str, Any]]) -> str:
    base = {r["loader"]: r["summary"]["pss_mb"] for r in runs if r["workers"] == 0 and r["procs"] == 1}
    rows = []
    for r in runs:
        if r["procs"] != 1:
            continue
        s = r["summary"]
        ratio = s["pss_mb"] / base[r["loader"]] if r["loader"] in base else float("nan")
        per_worker = s["workers_private_dirty_mb"] / s["workers_seen"] if s["workers_seen"] else 0
        rows.append((LABELS[gen][r["loader"]], r["workers"], f"{s['seen']:,}", f"{s['seconds']:.0f}",
                     f"{s['pss_mb']:.0f}", f"{s['peak_pss_mb']:.0f}", f"{s['uss_mb']:.0f}",
                     f"{s['private_dirty_mb']:.0f}", f"{per_worker:.0f}" if r["workers"] else "",
                     f"{s['slope_mb_per_10k']:+.0f}", f"{ratio:.2f}"))
    return markdown_table(["loader", "workers", "samples seen", "s", "PSS MB (end)", "peak PSS MB", "USS MB",
                           "private dirty MB", "private dirty per worker MB",
                           "PSS slope MB/10k samples", "PSS / 0 workers"], rows, "lrrrrrrrrrr")


def node_table(gen: int, runs: list[dict[str, Any]]) -> str:
    rows = []
    for r in runs:
        if r["procs"] == 1:
            continue
        s = r["summary"]
        starts = ", ".join(f"{t:.1f}" for t in s["first_batch_s"])
        rows.append((LABELS[gen][r["loader"]], f"{r['procs']} x {r['workers']}", f"{s['seen']:,}",
                     f"{s['pss_mb']:.0f}", f"{s['peak_pss_mb']:.0f}", f"{s['pss_mb'] / r['procs']:.0f}", starts))
    return markdown_table(["loader", "processes x workers", "samples seen", "PSS MB, all (end)", "peak PSS MB, all",
                           "PSS MB per process", "s from start to first batch, each process"], rows, "lrrrrrl")


def print_tables(gen: int, args: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    records = runs[0]["records"] if runs else 0
    print(f"\n### loader memory (MMDetection {gen}.x): batch {args['batch_size']}, {args['size']} px, backend fake,"
          f" memory every {args['interval']:g} s\n")
    print(table(gen, runs))
    if any(r["procs"] > 1 for r in runs):
        print(f"\n{args['nproc']} processes together (the ranks of one node), {args['nproc_workers']} workers each:\n")
        print(node_table(gen, runs))
    caches = [f"{r['node_cache_mb']:.0f}" for r in runs if r.get("node_cache_mb")]
    print(f"\n{machine_line()}. Node cache file (page cache, mapped; in PSS where touched):"
          f" {', '.join(caches) or '-'} MiB. {records:,} training images after mmdet's filter.")


def write_data(data: Path, quick: bool) -> None:
    from coco_annotations import generate

    path = data / "annotations" / "instances_train2017.json"
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    images, anns = (COCO_SIZE[0] // 100, COCO_SIZE[1] // 100) if quick else COCO_SIZE
    started = time.monotonic()
    generate(path, images, anns)
    print(f"generated {path} ({images:,} images, {anns:,} annotations, {path.stat().st_size / MB:.0f} MiB) in"
          f" {time.monotonic() - started:.0f} s", flush=True)


def reexec(gen: int) -> None:
    """Run this script again with the Python of generation ``gen``'s environment when this one holds another."""
    if installed_generation() == gen:
        return
    python = REPO / VENVS[gen] / "bin" / "python"
    if not python.is_file() or Path(sys.executable).resolve() == python.resolve():
        raise SystemExit(f"--generation {gen} needs MMDetection {gen}.x: run it with {VENVS[gen]}/bin/python")
    os.execv(str(python), [str(python), *sys.argv])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--generation", type=int, choices=(2, 3),
                        help="MMDetection generation (default: this Python's; re-runs itself in the other's venv)")
    parser.add_argument("--workers", default="0,4,8", help="loader worker counts (default 0,4,8)")
    parser.add_argument("--loaders", default="runner,ours", help="runner, ours, plain (default runner,ours)")
    parser.add_argument("--per-worker", type=int, default=PER_WORKER, help="samples per worker (default 1830)")
    parser.add_argument("--samples", type=int, help="samples per run instead of workers x --per-worker")
    parser.add_argument("--nproc", type=int, default=0, help="also N processes together (the ranks of a node)")
    parser.add_argument("--nproc-workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between memory samples")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one run may take")
    parser.add_argument("--data", help="folder of the generated annotation file (kept; reused when there)")
    parser.add_argument("--quick", action="store_true", help="smoke run: a hundredth of the file, workers 0,2")
    parser.add_argument("--json", help="results file (default runs/bench/loader_memory-mmdetN-TIME.json)")
    parser.add_argument("--from-json", help="print the tables of this result file again (nothing is run)")
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        for run in saved["runs"]:
            run["summary"] = summarize(run)
        print_tables(saved["args"]["generation"], saved["args"], saved["runs"])
        return 0
    args.generation = args.generation or installed_generation() or 2
    reexec(args.generation)
    if args.quick:
        args.workers, args.per_worker, args.interval = "0,2", 40, min(args.interval, 0.5)
        args.nproc = min(args.nproc, 2)
    workers = [int(w) for w in args.workers.split(",")]
    loaders = [name for name in args.loaders.split(",") if name]
    unknown = [name for name in loaders if name not in LOADERS[args.generation]]
    if unknown:
        raise SystemExit(f"--loaders: unknown {', '.join(unknown)}; choose from {', '.join(LOADERS[args.generation])}")
    if args.generation == 2:
        from model_hub_mmdet import generation

        generation.setup()  # the generator reads CocoDataset's class names
    work = Path(tempfile.mkdtemp(prefix="bench-loader-memory-"))
    data = Path(args.data).resolve() if args.data else work / "coco"
    runs: list[dict[str, Any]] = []
    try:
        write_data(data, args.quick)
        plan = [(loader, w, 1) for w in workers for loader in loaders]
        if args.nproc > 1:
            plan += [(loader, args.nproc_workers, args.nproc) for loader in loaders if loader in ("runner", "ours")]
        for i, (loader, w, procs) in enumerate(plan):
            samples = args.samples or max(w, 1) * args.per_worker
            cache = work / f"node-cache-{i}" if loader in SHARED else None
            run = run_one(args, loader, w, samples, data, procs, cache)
            run["summary"] = summarize(run)
            if cache is not None and cache.is_dir():
                run["node_cache_mb"] = sum(f.stat().st_size for f in cache.glob("*.flat")) / MB
            runs.append(run)
            s = run["summary"]
            print(f"{loader} {procs}x{w} workers: {s['seen']:,} samples in {s['seconds']:.0f} s, PSS {s['pss_mb']:.0f}"
                  f" MB (peak {s['peak_pss_mb']:.0f}), slope {s['slope_mb_per_10k']:+.0f} MB/10k", flush=True)
        print_tables(args.generation, vars(args), runs)
        name = f"loader_memory-mmdet{args.generation}"
        print(f"results: {write_results(name, {'args': vars(args), 'runs': runs}, args.json)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        g, loader_name, w, n, d, b, sz = sys.argv[2:9]
        child(int(g), loader_name, int(w), int(n), Path(d), int(b), int(sz))
    sys.exit(main())
