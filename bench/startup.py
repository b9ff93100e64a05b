"""Start-up on COCO-size data: time from the command to the first trained batch, ours next to the generation's runner.

    .venv/bin/python bench/startup.py [--pairs 3] [--warmup 1] [--quick]
    .venv-mmdet3/bin/python bench/startup.py --generation 3 [--pairs 3] [--warmup 1] [--quick]

Generates a COCO-2017-size training annotation file (118,287 images, 860,001 annotations, with train2017's quirks:
bench/coco_annotations.py's generator) and a val2017-size one (5,000 images, 36,781 annotations) once, laid out as
mmdet's COCO configs expect (``annotations/instances_{train,val}2017.json``, images under ``train2017/``), and
trains mmdet's ``retinanet/retinanet_r18_fpn_1x_coco.py`` (random init: no download) on it with ``data:
file_client_args: {backend: fake}`` (no image file is read), batch 2, 2 loader workers, images resized to fit
320 px (``--size``: the first batch's compute is the same on both sides and would only dilute the ratio). Each
side runs in a fresh Python process from the repository root and is stopped once its first training batch is done
(forward, backward, optimizer step):

* ``ours``: ``model-hub-mmdet train EXP --local`` (``model_hub_mmdet.tools.cli.main``, what the console script
  calls), timed to the end of the first ``MMDetTrial.train_batch``;
* ``runner``: the generation's own runner on the final config ``ours`` trains (written with the adapter's config
  text), with the config's own loop, validation and checkpoint settings: for 2.x, ``mmdet.apis.train_detector`` as
  bench/parity.py drives it (``validate=True``), for 3.x mmengine's ``Runner`` built as mmdet 3's tools/train.py
  builds it; timed to the end of the first ``after_train_iter`` hooks (mmcv 1.x steps the optimizer there). Both
  build the validation dataset and its evaluator before training, as ``ours`` does. The runner process uses
  mmdet's own COCO loading: for 2.x, whose stack needs this package's fixes (``generation.setup()``), its wrapper
  of ``CocoDataset.load_annotations`` (the annotation check) is removed again; for 3.x nothing of this package is
  applied or checked there, only the ``fake`` backend registered with mmengine's file I/O.

Runs alternate (ours, runner, then runner, ours, ...); the ratio is taken within each pair, then the median. The
time is measured by this process from ``Popen`` to the child's monotonic stamp (one clock for the machine), so it
includes the interpreter's start and every import. Peak RSS / PSS of the process tree up to that moment are
reported too. Goal (issue 22, goal 4): ours <= 1.05x the runner's. ``--no-gc-pause`` runs ``ours`` with the
garbage collector on while it builds its datasets and model, as the runner has it (``model_hub_mmdet.gc_pause``),
to show what the pause saves.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO,
    TreeSampler,
    check_generation,
    machine_line,
    markdown_table,
    median,
    paired_ratios,
    write_results,
)

PYTHON = sys.executable
SIDES = ("ours", "runner")
LABELS = {2: {"ours": "model-hub-mmdet train --local", "runner": "mmdet train_detector"},
          3: {"ours": "model-hub-mmdet train --local", "runner": "mmengine Runner (tools/train.py)"}}
CONFIG = "retinanet/retinanet_r18_fpn_1x_coco.py"  # the same name in mmdet 2.28 and 3.3
TRAIN_SIZE = (118_287, 860_001)  # COCO train2017
VAL_SIZE = (5_000, 36_781)  # COCO val2017
MAX_BATCHES = 1000  # never reached: each process stops after its first batch
OURS = {"warm": False, "gc_pause": True}  # --node-cache, --no-gc-pause


# ================================================================================= the two child processes
def _finish(marks: dict[str, Any], path: str) -> None:
    """Record the end of the first batch and leave at once (no validation, checkpoint or clean-up)."""
    marks["first_batch_end"] = time.monotonic()
    Path(path).write_text(json.dumps(marks))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the parent kills the loader workers with the process group


def drive_ours(timings_path: str, cli_args: list[str]) -> int:
    """The CLI, stopped after the first ``MMDetTrial.train_batch`` (child process)."""
    marks: dict[str, Any] = {"start": time.monotonic()}
    from model_hub_mmdet import generation, local
    from model_hub_mmdet.tools import cli

    train_local = local.train_local

    def train(*args: Any, **kwargs: Any) -> Any:
        # the trial imported here, as train_local would: after the CLI has set up logging
        trial_module = importlib.import_module(f"model_hub_mmdet.{generation.installed()}.trial")
        train_batch = trial_module.MMDetTrial.train_batch

        def first_batch(self: Any, *batch_args: Any, **batch_kwargs: Any) -> Any:
            marks["first_batch_start"] = time.monotonic()
            train_batch(self, *batch_args, **batch_kwargs)
            _finish(marks, timings_path)

        trial_module.MMDetTrial.train_batch = first_batch
        return train_local(*args, **kwargs)

    local.train_local = train
    cli.main(cli_args)
    raise SystemExit("train --local ended without training a batch")


def _plain_coco_loading(names: tuple[str, ...]) -> None:
    """Put mmdet's own ``CocoDataset`` methods back where this package wrapped them."""
    from mmdet.datasets import CocoDataset

    from model_hub_mmdet.patch_registry import MARK

    for name in names:
        original = getattr(getattr(CocoDataset, name), MARK, None)
        if original is not None:
            setattr(CocoDataset, name, original)


def _stop_after_first_iteration(runner_cls: type, marks: dict[str, Any], path: str) -> None:
    """``runner_cls.call_hook`` stamping the first ``before_train_iter`` and stopping after the first
    ``after_train_iter``."""
    call_hook = runner_cls.call_hook

    def wrapper(self: Any, fn_name: str, **kwargs: Any) -> Any:
        if fn_name == "before_train_iter":
            marks.setdefault("first_batch_start", time.monotonic())
        out = call_hook(self, fn_name, **kwargs)
        if fn_name == "after_train_iter":
            _finish(marks, path)
        return out

    runner_cls.call_hook = wrapper


def drive_runner2(timings_path: str, config_path: str, work_dir: str) -> int:
    """mmdet 2's ``train_detector`` on a config file, stopped after its first iteration (child process)."""
    marks: dict[str, Any] = {"start": time.monotonic()}
    from model_hub_mmdet import generation

    generation.setup()  # this stack's compat fixes; registers the storage backends (fake)
    _plain_coco_loading(("load_annotations",))
    from mmcv import Config
    from mmcv.runner import BaseRunner
    from mmdet.apis import set_random_seed, train_detector
    from mmdet.datasets import build_dataset
    from mmdet.models import build_detector

    _stop_after_first_iteration(BaseRunner, marks, timings_path)
    cfg = Config.fromfile(config_path)
    cfg.work_dir = work_dir
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    set_random_seed(cfg.seed)
    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    model.init_weights()
    datasets = [build_dataset(cfg.data.train)]
    model.CLASSES = datasets[0].CLASSES
    train_detector(model, datasets, cfg, distributed=False, validate=True, timestamp=time.strftime("%H%M%S"))
    raise SystemExit("train_detector ended without training a batch")


def drive_runner3(timings_path: str, config_path: str, work_dir: str) -> int:
    """mmengine's Runner built as mmdet 3's tools/train.py builds it, stopped after its first iteration (child)."""
    marks: dict[str, Any] = {"start": time.monotonic()}
    from model_hub_mmdet.mmdet3 import fileio

    fileio.register()  # the fake backend, and nothing else of model_hub_mmdet: no patch is applied or checked
    from mmdet.utils import setup_cache_size_limit_of_dynamo
    from mmengine.config import Config
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    _stop_after_first_iteration(Runner, marks, timings_path)
    setup_cache_size_limit_of_dynamo()
    cfg = Config.fromfile(config_path)
    cfg.launcher = "none"
    cfg.work_dir = work_dir
    runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
    runner.train()
    raise SystemExit("Runner.train ended without training a batch")


# ============================================================================================ the set-up
def write_data(data: Path, quick: bool) -> None:
    """COCO-2017-size annotation files under ``data/annotations`` (a tenth of the size with ``quick``); kept when
    they are there already."""
    from coco_annotations import generate

    (data / "annotations").mkdir(parents=True, exist_ok=True)
    for split, (images, anns), seed in (("train", TRAIN_SIZE, 0), ("val", VAL_SIZE, 1)):
        path = data / "annotations" / f"instances_{split}2017.json"
        if path.is_file():
            continue
        if quick:
            images, anns = images // 10, anns // 10
        started = time.monotonic()
        generate(path, images, anns, seed=seed)
        print(f"generated {path} ({images:,} images, {anns:,} annotations,"
              f" {path.stat().st_size / 2**20:.0f} MiB) in {time.monotonic() - started:.0f} s", flush=True)


def experiment(data: Path, gen: int, batch_size: int, workers: int, size: int) -> dict[str, Any]:
    """The experiment ``ours`` trains (and whose final config the runner trains); images resized to fit ``size``
    (keeping their 4:3 ratio)."""
    overrides: dict[str, Any] = {"model.backbone.init_cfg": None}
    if gen == 3:
        overrides["train_dataloader.dataset.pipeline.2.scale"] = [size, size]  # Resize in coco_detection.py
        overrides["val_dataloader.dataset.pipeline.1.scale"] = [size, size]
        overrides["test_dataloader.dataset.pipeline.1.scale"] = [size, size]
        for split, folder in (("train", "train"), ("val", "val"), ("test", "val")):
            overrides[f"{split}_dataloader.dataset.data_root"] = f"{data}/"
            overrides[f"{split}_dataloader.dataset.ann_file"] = f"annotations/instances_{folder}2017.json"
            overrides[f"{split}_dataloader.dataset.data_prefix.img"] = f"{folder}2017/"
            overrides[f"{split}_dataloader.num_workers"] = workers
            overrides[f"{split}_dataloader.persistent_workers"] = workers > 0
        for key in ("val_evaluator", "test_evaluator"):
            overrides[f"{key}.ann_file"] = str(data / "annotations" / "instances_val2017.json")
    else:
        overrides["data.train.pipeline.2.img_scale"] = [size, size]  # Resize in coco_detection.py
        overrides["data.val.pipeline.1.img_scale"] = [size, size]  # MultiScaleFlipAug
        overrides["data.test.pipeline.1.img_scale"] = [size, size]
        overrides["data.workers_per_gpu"] = workers
        for split, folder in (("train", "train"), ("val", "val"), ("test", "val")):
            overrides[f"data.{split}.ann_file"] = str(data / "annotations" / f"instances_{folder}2017.json")
            overrides[f"data.{split}.img_prefix"] = f"{data / f'{folder}2017'}/"
    return {
        "name": f"startup-retinanet-r18-coco-size-mmdet{gen}",
        "hyperparameters": {"global_batch_size": batch_size, "config_file": CONFIG,
                            "override_mmdet_config": overrides},
        "searcher": {"name": "single", "metric": "coco/bbox_mAP" if gen == 3 else "bbox_mAP",
                     "smaller_is_better": False, "max_length": {"batches": MAX_BATCHES}},
        "min_validation_period": {"batches": MAX_BATCHES},
        "min_checkpoint_period": {"batches": MAX_BATCHES},
        "data": {"file_client_args": {"backend": "fake"}},
        "resources": {"slots_per_trial": 1},
        "entrypoint": "python3 -m determined.launch.torch_distributed python3 -m model_hub_mmdet.run",
    }


def write_runner_config(exp_path: Path, out: Path, gen: int) -> Path:
    """The final config of the experiment as the generation's config text, for its own runner."""
    from model_hub_mmdet.expconf import load_experiment, local_hparams

    exp = load_experiment(exp_path)
    hp = local_hparams(exp["hyperparameters"])
    if gen == 3:
        from mmengine.config import Config

        from model_hub_mmdet.mmdet3.config import build_mmdet_config, config_text

        cfg = build_mmdet_config(hp, exp.get("data") or {}, str(REPO))  # train_dataloader.batch_size: the global
        cfg.randomness = {"seed": 0}
    else:
        from mmcv import Config

        from model_hub_mmdet.mmdet2.config import build_mmdet_config
        from model_hub_mmdet.mmdet2.config.dump import config_text

        cfg = build_mmdet_config(hp, exp.get("data") or {}, str(REPO))
        cfg.data.samples_per_gpu = hp["global_batch_size"]
        cfg.gpu_ids, cfg.device, cfg.seed = [0], "cpu", 0
    out.write_text(config_text(cfg))
    Config.fromfile(str(out))  # fail here, not in every child, if the text does not load
    return out


# ================================================================================================ one run
def run_side(side: str, index: int, work: Path, exp: Path, runner_cfg: Path, gen: int) -> dict[str, Any]:
    """Start one side's process, sample its tree's memory until its first batch is done, and return the times."""
    run = work / f"{side}-{index}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    timings = run / "timings.json"
    me = str(Path(__file__).resolve())
    if side == "ours":
        cmd = [PYTHON, me, "_ours", str(timings), "train", str(exp), "--local", "--out", str(run / "out")]
    else:
        cmd = [PYTHON, me, f"_runner{gen}", str(timings), str(runner_cfg), str(run / "work_dir")]
    env = dict(os.environ, XDG_DATA_HOME=str(run / "xdg"))
    # issue 30's node cache: a fresh folder per run (cold: each run builds its shared buffers) or one for all (warm)
    env["MODEL_HUB_MMDET_NODE_CACHE"] = str(work / "node-cache" if OURS["warm"] else run / "node-cache")
    env["MODEL_HUB_MMDET_GC_PAUSE"] = "1" if OURS["gc_pause"] else "0"  # model_hub_mmdet.gc_pause
    with open(run / "stdout.log", "wb") as out, open(run / "stderr.log", "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err, start_new_session=True)
        with TreeSampler(proc.pid) as sampler:
            rc = proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # loader workers the child left behind
        except ProcessLookupError:
            pass
    if rc != 0 or not timings.is_file():
        tail = (run / "stderr.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"{side} run {index} failed (exit {rc}); logs in {run}:\n{tail}")
    marks = json.loads(timings.read_text())
    peaks = sampler.peaks(until=marks["first_batch_end"])
    return {"side": side, "index": index, "to_first_batch_s": marks["first_batch_end"] - started,
            "to_batch_start_s": marks["first_batch_start"] - started,
            "first_batch_s": marks["first_batch_end"] - marks["first_batch_start"],
            "interpreter_s": marks["start"] - started, **peaks}


# ================================================================================================== main
KEYS = (("to_first_batch_s", "command to end of first batch, s", 1),
        ("to_batch_start_s", "command to start of first batch, s", 1),
        ("first_batch_s", "first batch (forward, backward, step), s", 2),
        ("peak_rss_mb", "peak RSS until then, process tree, MB", 0),
        ("peak_pss_mb", "peak PSS until then, process tree, MB", 0))


def summarize(runs: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    timed = [r for r in runs if r["index"] >= warmup]
    by = {s: sorted((r for r in timed if r["side"] == s), key=lambda r: r["index"]) for s in SIDES}
    out = {}
    for key, _, _ in KEYS:
        a, b = [r[key] for r in by["ours"]], [r[key] for r in by["runner"]]
        out[key] = {"ours": median(a), "runner": median(b), "ratio": median(paired_ratios(a, b)),
                    "ours_all": a, "runner_all": b}
    return out


def print_summary(s: dict[str, Any], args: argparse.Namespace, runs: list[dict[str, Any]], sizes: str) -> None:
    labels = LABELS[args.generation]
    print(f"\n### startup (MMDetection {args.generation}.x): {CONFIG} at {args.size} px, {sizes}, backend fake,"
          f" batch {args.batch_size}, {args.workers} loader workers\n")
    rows = [(label, f"{s[key]['ours']:.{digits}f}", f"{s[key]['runner']:.{digits}f}", f"{s[key]['ratio']:.3f}")
            for key, label, digits in KEYS]
    print(markdown_table(["median of pairs", labels["ours"], labels["runner"], "ours/runner (median of pair ratios)"],
                         rows))
    pairs = len([r for r in runs if r["index"] >= args.warmup and r["side"] == "ours"])
    print(f"\n{pairs} pairs after {args.warmup} warm-up pair(s); {machine_line()}. Goal: the first ratio <= 1.05.")
    pause = "on (the collector paused while the trial builds)" if OURS["gc_pause"] else "off (--no-gc-pause)"
    print(f"ours: node cache {args.node_cache}; gc pause {pause}.")
    if args.generation == 2:
        print("mmcv 1.x's EpochBasedRunner.train sleeps 2 s before an epoch's first batch (\"Prevent possible deadlock"
              " during epoch transition\"): inside the runner's times above.")
    print("\nAll runs (s to the end of the first batch / peak RSS MB):")
    for r in runs:
        tag = " (warm-up)" if r["index"] < args.warmup else ""
        print(f"  {r['index']} {r['side']:<6} {r['to_first_batch_s']:.1f} s  {r['peak_rss_mb']:.0f} MB{tag}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--generation", type=int, choices=(2, 3), default=2,
                        help="MMDetection generation (default 2, with .venv's Python; 3 needs .venv-mmdet3's)")
    parser.add_argument("--pairs", type=int, default=3, help="timed ours/runner pairs (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed pairs first (default 1)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="training (and validation) loader workers")
    parser.add_argument("--size", type=int, default=320,
                        help="Resize scale (size x size, keep ratio; default 320: the 640x480 fake images train at"
                             " 320x240, so that the first batch's compute does not hide the start-up; the config's"
                             " own is 1333)")
    parser.add_argument("--data", help="directory for the generated annotation files (kept; reused when there)")
    parser.add_argument("--quick", action="store_true", help="smoke run: a tenth of the size, 1 pair, no warm-up")
    parser.add_argument("--json", help="results file (default runs/bench/startup-TIME.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs of every run)")
    parser.add_argument("--node-cache", choices=("cold", "warm"), default="cold",
                        help="ours' shared annotation buffers (issue 30): built in every run (cold, default) or"
                             " mapped from the file an earlier run of this benchmark wrote (warm)")
    parser.add_argument("--no-gc-pause", action="store_true",
                        help="ours with the garbage collector on while it builds the datasets, as the runner has it"
                             " (MODEL_HUB_MMDET_GC_PAUSE=0: what the pause saves, A/B against a run without)")
    args = parser.parse_args(argv)
    OURS["warm"], OURS["gc_pause"] = args.node_cache == "warm", not args.no_gc_pause
    if args.quick:
        args.pairs, args.warmup = 1, 0
    check_generation(args.generation)
    from model_hub_mmdet import generation

    generation.setup()  # before mmdet is imported (the generator reads CocoDataset's class names)
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    data = Path(args.data).resolve() if args.data else work / "coco"
    try:
        write_data(data, args.quick)
        import yaml

        exp = work / "startup.yaml"
        exp.write_text(yaml.safe_dump(experiment(data, args.generation, args.batch_size, args.workers, args.size),
                                      sort_keys=False))
        runner_cfg = write_runner_config(exp, work / "runner_config.py", args.generation)
        runs = []
        for i in range(args.warmup + args.pairs):
            for side in SIDES if i % 2 == 0 else SIDES[::-1]:
                runs.append(run_side(side, i, work, exp, runner_cfg, args.generation))
                print(f"run {i} {side}: {runs[-1]['to_first_batch_s']:.1f} s to the first batch, peak RSS"
                      f" {runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
        train = json.loads((data / "annotations" / "instances_train2017.json").read_text())
        sizes = f"{len(train['images']):,} training images, {len(train['annotations']):,} annotations"
        del train
        payload: dict[str, Any] = {"args": vars(args), "sizes": sizes, "runs": runs}
        if args.pairs:
            payload["summary"] = summarize(runs, args.warmup)
            print_summary(payload["summary"], args, runs, sizes)
        name = f"startup-mmdet{args.generation}"
        print(f"\nresults: {write_results(name, payload, args.json)}")
    finally:
        if args.keep:
            print(f"work directory: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_ours":
        sys.exit(drive_ours(sys.argv[2], sys.argv[3:]))
    if len(sys.argv) > 2 and sys.argv[1] == "_runner2":
        sys.exit(drive_runner2(*sys.argv[2:5]))
    if len(sys.argv) > 2 and sys.argv[1] == "_runner3":
        sys.exit(drive_runner3(*sys.argv[2:5]))
    sys.exit(main())
