"""Whole-run parity: ``model-hub-mmdet train EXP --local`` next to MMDetection's own runner, same experiment.

    OMP_NUM_THREADS=2 .venv/bin/python bench/parity.py [--pairs 5] [--batches 100] [--profile] [--quick]
    OMP_NUM_THREADS=2 .venv-mmdet3/bin/python bench/parity.py --generation 3 [--pairs 5] [--profile] [--quick]

Both sides train the same RetinaNet R18 (tests/mmdet_configs/tiny_retinanet.py over mmdet's RetinaNet config,
images resized to 96 px) on the same shapes dataset, for the same number of batches, with one validation and
one checkpoint at the end, each in a fresh Python process:

* ``ours``: the ``model-hub-mmdet`` CLI (``model_hub_mmdet.tools.cli.main``, what the console script calls) with
  ``train EXP --local --max-batches N --validation-period N``, run from the repository root as ``make demo`` is
  (Determined copies that directory, filtered by .detignore, into the checkpoint). The process is started through
  this file so that the extras ``train --local`` adds at the end (metrics.json + curves.png, the native mmdet
  export, predictions.png) are timed by wrapping those functions; nothing else changes.
* ``mmdet``: ``mmdet.apis.train_detector`` (what mmdet's tools/train.py calls, minus its environment report) on
  the final mmdet config ``ours`` trains, with an ``IterBasedRunner`` of N iterations, an ``EvalHook`` and a
  ``CheckpointHook`` every N iterations. It imports ``model_hub_mmdet`` first: this stack (numpy 2, torch 2.14)
  needs its compat fixes to run mmdet at all.

``--generation 3`` (MMDetection 3.3, run with .venv-mmdet3's Python) trains the same RetinaNet R18, written with
3.x's keys (bench/configs/retinanet_r18_shapes_mmdet3.py over mmdet 3's RetinaNet config), and its ``mmdet`` side
is mmengine's ``Runner`` built as mmdet 3's tools/train.py builds it (``setup_cache_size_limit_of_dynamo``,
``Config.fromfile``, ``launcher``, ``work_dir``, ``Runner.from_cfg`` or ``RUNNERS.build``, ``train``) on the final
config ``ours`` trains, with an ``IterBasedTrainLoop`` of N iterations validating once at N, a ``CheckpointHook``
saving once at N and the ``LogProcessor`` counting iterations (as mmdet's iteration-based configs set it). That
process imports nothing of ``model_hub_mmdet``: mmengine and mmdet 3 run on this stack without its fixes.

Measured per run: wall time of the whole process (interpreter start to exit) and the peak memory of its process
tree (data-loader workers included), sampled every 50 ms: the sum of RSS and the sum of PSS (RSS counts pages
that forked workers share with the main process once per worker; PSS divides them). Runs alternate ``ours``,
``mmdet`` then ``mmdet``, ``ours``, ... and ratios are taken within each pair, then the median; one warm-up pair
(page cache, bytecode) is run first and left out. ``--profile`` adds one run of each side under
``python -X importtime`` and one under cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
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
    timed_into,
    write_results,
)

PYTHON = sys.executable
GENERATION = 2  # set by main from --generation
SIDES = ("ours", "mmdet")
LABELS = {"ours": "model-hub-mmdet train --local", "mmdet": "mmdet train_detector"}
LABELS_3 = {"ours": "model-hub-mmdet train --local", "mmdet": "mmengine Runner (tools/train.py)"}
MERGE_CONFIG_3 = Path(__file__).resolve().parent / "configs" / "retinanet_r18_shapes_mmdet3.py"
EXTRAS = ("metrics.json + curves", "native export", "predictions picture")


# ================================================================================= the two child processes
def drive_ours(timings_path: str, cli_args: list[str]) -> int:
    """The CLI, with its end-of-run extras and train_local timed (child process)."""
    start = time.monotonic()
    profile = _start_profile()
    from model_hub_mmdet import local
    from model_hub_mmdet.tools import cli

    marks: dict[str, Any] = {"start": start}
    spent = dict.fromkeys(EXTRAS, 0.0)

    def timed(fn: Any, label: str) -> Any:
        return timed_into(spent, label, fn, clock=time.monotonic)

    finish, train_local = cli._finish_run, local.train_local

    def finish_run(*args: Any, **kwargs: Any) -> None:
        from model_hub_mmdet import weights
        from model_hub_mmdet.tools import report

        marks["extras_start"] = time.monotonic()
        report.plot_curves = timed(report.plot_curves, EXTRAS[0])
        report.draw_predictions = timed(report.draw_predictions, EXTRAS[2])
        weights.export_checkpoint = timed(weights.export_checkpoint, EXTRAS[1])
        t0 = time.monotonic()
        finish(*args, **kwargs)
        marks["extras_end"] = time.monotonic()
        # metrics.json is written just before the curves, inside _finish_run: count it with them
        spent[EXTRAS[0]] += (marks["extras_end"] - t0) - sum(spent.values())

    def train(*args: Any, **kwargs: Any) -> Any:
        marks["train_start"] = time.monotonic()
        from model_hub_mmdet import generation

        # imported here, as train_local would: after logging is set; the installed generation's trial
        MMDetTrial = importlib.import_module(f"model_hub_mmdet.{generation.installed()}.trial").MMDetTrial  # noqa: N806

        MMDetTrial.train_batch = _stamped(MMDetTrial.train_batch, marks)
        try:
            return train_local(*args, **kwargs)
        finally:
            marks["train_end"] = time.monotonic()

    cli._finish_run, local.train_local = finish_run, train
    try:
        rc = cli.main(cli_args)
    finally:
        _stop_profile(profile)
        marks["extras"] = spent
        marks["end"] = time.monotonic()
        Path(timings_path).write_text(json.dumps(marks))
    return rc


def drive_mmdet(timings_path: str, config_path: str, work_dir: str) -> int:
    """MMDetection's own training entry point on a config file (child process)."""
    start = time.monotonic()
    profile = _start_profile()
    marks: dict[str, Any] = {"start": start}
    try:
        from model_hub_mmdet import generation  # noqa: E402,I001

        generation.setup()  # the generation's fixes before mmcv/mmdet are used; registers s3/gcs
        from mmcv import Config
        from mmcv.runner import IterBasedRunner
        from mmdet.apis import set_random_seed, train_detector
        from mmdet.datasets import build_dataset
        from mmdet.models import build_detector

        IterBasedRunner.train = _stamped(IterBasedRunner.train, marks)  # one call per training iteration
        cfg = Config.fromfile(config_path)
        cfg.work_dir = work_dir
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        set_random_seed(cfg.seed)
        model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
        model.init_weights()
        datasets = [build_dataset(cfg.data.train)]
        model.CLASSES = datasets[0].CLASSES
        marks["train_start"] = time.monotonic()
        train_detector(model, datasets, cfg, distributed=False, validate=True, timestamp=time.strftime("%H%M%S"))
        marks["train_end"] = time.monotonic()
    finally:
        _stop_profile(profile)
        marks["end"] = time.monotonic()
        Path(timings_path).write_text(json.dumps(marks))
    return 0


def drive_runner3(timings_path: str, config_path: str, work_dir: str) -> int:
    """mmengine's Runner on a config file, built as MMDetection 3's tools/train.py builds it (child process)."""
    start = time.monotonic()
    profile = _start_profile()
    marks: dict[str, Any] = {"start": start, "validations": 0, "bbox_mAP": None}
    try:
        # Plain mmengine and mmdet 3: unlike 2.x, this stack runs them without model_hub_mmdet's fixes, so none is
        # applied (nor checked) here.
        from mmdet.utils import setup_cache_size_limit_of_dynamo
        from mmengine.config import Config
        from mmengine.registry import RUNNERS
        from mmengine.runner import Runner
        from mmengine.runner.loops import IterBasedTrainLoop, ValLoop

        IterBasedTrainLoop.run_iter = _stamped(IterBasedTrainLoop.run_iter, marks)  # one call per training batch
        ValLoop.run = _counted_validation(ValLoop.run, marks)
        setup_cache_size_limit_of_dynamo()
        cfg = Config.fromfile(config_path)
        cfg.launcher = "none"
        cfg.work_dir = work_dir
        runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
        marks["train_start"] = time.monotonic()
        runner.train()
        marks["train_end"] = time.monotonic()
    finally:
        _stop_profile(profile)
        marks["end"] = time.monotonic()
        Path(timings_path).write_text(json.dumps(marks))
    return 0


def _counted_validation(fn: Any, marks: dict[str, Any]) -> Any:
    """mmengine's ``ValLoop.run`` counting the validations and keeping the last bbox mAP."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        metrics = fn(*args, **kwargs)
        marks["validations"] += 1
        marks["bbox_mAP"] = (metrics or {}).get("coco/bbox_mAP")
        return metrics

    return wrapper


def _stamped(fn: Any, marks: dict[str, Any]) -> Any:
    """``fn`` (one training batch) recording when the first batch started and the last one ended."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        marks.setdefault("first_batch", time.monotonic())
        try:
            return fn(*args, **kwargs)
        finally:
            marks["last_batch_end"] = time.monotonic()

    return wrapper


def _start_profile() -> Any:
    path = os.environ.get("BENCH_CPROFILE")
    if not path:
        return None
    import cProfile

    profile = cProfile.Profile()
    profile.enable()
    return profile


def _stop_profile(profile: Any) -> None:
    if profile is not None:
        profile.disable()
        profile.dump_stats(os.environ["BENCH_CPROFILE"])


# ============================================================================================ the set-up
def write_experiment(work: Path, batches: int, batch_size: int, workers: int, size: int, train: int, val: int,
                     gen: int = 2) -> Path:
    """The shapes data and the experiment YAML both sides train (``ours`` reads the YAML, ``mmdet`` the final
    config built from it)."""
    import yaml

    from model_hub_mmdet.tools.shapes import make_shapes

    data = work / "data"
    make_shapes(data, train=train, val=val, size=size, seed=0)
    if gen == 3:
        exp = experiment_3(data, batches, batch_size, workers, size)
        path = work / "parity.yaml"
        path.write_text(yaml.safe_dump(exp, sort_keys=False))
        return path
    overrides: dict[str, Any] = {"data.workers_per_gpu": workers}
    for split, folder in (("train", "train"), ("val", "val"), ("test", "val")):
        overrides[f"data.{split}.ann_file"] = str(data / "annotations" / f"{folder}.json")
        overrides[f"data.{split}.img_prefix"] = f"{data / folder}/"
    overrides["data.train.pipeline.2.img_scale"] = [size, size]  # Resize in tests/mmdet_configs/_tiny_data.py
    overrides["data.val.pipeline.1.img_scale"] = [size, size]  # MultiScaleFlipAug
    overrides["data.test.pipeline.1.img_scale"] = [size, size]
    exp = {
        "name": f"parity-retinanet-r18-{size}px",
        "hyperparameters": {
            "global_batch_size": batch_size,
            "config_file": "retinanet/retinanet_r50_fpn_1x_coco.py",
            "merge_config": str(REPO / "tests/mmdet_configs/tiny_retinanet.py"),
            "override_mmdet_config": overrides,
        },
        "searcher": {"name": "single", "metric": "bbox_mAP", "smaller_is_better": False,
                     "max_length": {"batches": batches}},
        "min_validation_period": {"batches": batches},
        "min_checkpoint_period": {"batches": batches},
        "resources": {"slots_per_trial": 1},
        "entrypoint": "python3 -m determined.launch.torch_distributed python3 -m model_hub_mmdet.run",
    }
    path = work / "parity.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def experiment_3(data: Path, batches: int, batch_size: int, workers: int, size: int) -> dict[str, Any]:
    """The 3.x experiment: RetinaNet R18 (MERGE_CONFIG_3 over mmdet 3's RetinaNet config) on the shapes in ``data``,
    ``workers`` loader workers for training and validation, images resized to ``size``."""
    overrides: dict[str, Any] = {}
    for split, folder in (("train", "train"), ("val", "val"), ("test", "val")):
        overrides[f"{split}_dataloader.dataset.data_root"] = f"{data}/"
        overrides[f"{split}_dataloader.dataset.ann_file"] = f"annotations/{folder}.json"
        overrides[f"{split}_dataloader.dataset.data_prefix.img"] = f"{folder}/"
        overrides[f"{split}_dataloader.num_workers"] = workers
        overrides[f"{split}_dataloader.persistent_workers"] = workers > 0  # torch refuses it without workers
    for key in ("val_evaluator", "test_evaluator"):
        overrides[f"{key}.ann_file"] = str(data / "annotations" / "val.json")
    overrides["train_dataloader.dataset.pipeline.2.scale"] = [size, size]  # Resize in mmdet 3's coco_detection.py
    overrides["val_dataloader.dataset.pipeline.1.scale"] = [size, size]
    overrides["test_dataloader.dataset.pipeline.1.scale"] = [size, size]
    return {
        "name": f"parity-retinanet-r18-{size}px-mmdet3",
        "hyperparameters": {
            "global_batch_size": batch_size,
            "config_file": "retinanet/retinanet_r50_fpn_1x_coco.py",
            "merge_config": str(MERGE_CONFIG_3),
            "override_mmdet_config": overrides,
        },
        "searcher": {"name": "single", "metric": "coco/bbox_mAP", "smaller_is_better": False,
                     "max_length": {"batches": batches}},
        "min_validation_period": {"batches": batches},
        "min_checkpoint_period": {"batches": batches},
        "resources": {"slots_per_trial": 1},
        "entrypoint": "python3 -m determined.launch.torch_distributed python3 -m model_hub_mmdet.run",
    }


def write_runner_config_3(exp_path: Path, out: Path, batches: int) -> Path:
    """The final mmdet 3 config of the experiment, with mmengine's loop, checkpoint hook and log processor set to
    ``batches`` iterations, one validation and one checkpoint at the end."""
    from mmengine.config import Config

    from model_hub_mmdet.expconf import load_experiment, local_hparams
    from model_hub_mmdet.mmdet3.config import build_mmdet_config, config_text

    exp = load_experiment(exp_path)
    hp = local_hparams(exp["hyperparameters"])
    cfg = build_mmdet_config(hp, exp.get("data") or {}, str(REPO))  # train_dataloader.batch_size = the global one
    cfg.train_cfg = {"type": "IterBasedTrainLoop", "max_iters": batches, "val_interval": batches}
    cfg.default_hooks.checkpoint = {"type": "CheckpointHook", "interval": batches, "by_epoch": False}
    cfg.log_processor = {"type": "LogProcessor", "window_size": 50, "by_epoch": False}
    cfg.randomness = {"seed": 0}
    out.write_text(config_text(cfg))
    Config.fromfile(str(out))  # fail here, not in every child, if the text does not load
    return out


def write_mmdet_config(exp_path: Path, out: Path, batches: int) -> Path:
    """The final mmdet config of the experiment, with MMDetection's runner, eval and checkpoint hooks set to one
    validation and one checkpoint after ``batches`` iterations (no ``save_best``: that would write a second one)."""
    from mmcv import Config

    from model_hub_mmdet.expconf import load_experiment, local_hparams
    from model_hub_mmdet.mmdet2.config import build_mmdet_config
    from model_hub_mmdet.mmdet2.config.dump import config_text

    exp = load_experiment(exp_path)
    hp = local_hparams(exp["hyperparameters"])
    cfg = build_mmdet_config(hp, exp.get("data") or {}, str(REPO))
    cfg.data.samples_per_gpu = hp["global_batch_size"]
    cfg.runner = {"type": "IterBasedRunner", "max_iters": batches}
    cfg.evaluation = {"interval": batches, "metric": ["bbox"]}
    cfg.checkpoint_config = {"interval": batches, "by_epoch": False}
    cfg.workflow = [("train", 1)]
    cfg.gpu_ids, cfg.device, cfg.seed = [0], "cpu", 0
    out.write_text(config_text(cfg))
    Config.fromfile(str(out))  # fail here, not in every child, if the text does not load
    return out


# ================================================================================================ one run
def run_side(side: str, index: int, work: Path, exp: Path, mmdet_cfg: Path, batches: int,
             extra_python: list[str] | None = None, env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Start one side's process, sample its tree's memory until it exits, and return what was measured."""
    run = work / f"{side}-{index}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    timings = run / "timings.json"
    me = str(Path(__file__).resolve())
    if side == "ours":
        args = ["train", str(exp), "--local", "--max-batches", str(batches), "--validation-period", str(batches),
                "--out", str(run / "out")]
        cmd = [PYTHON, *(extra_python or []), me, "_ours", str(timings), *args]
    else:
        child = "_runner3" if GENERATION == 3 else "_mmdet"
        cmd = [PYTHON, *(extra_python or []), me, child, str(timings), str(mmdet_cfg), str(run / "work_dir")]
    env = dict(os.environ, XDG_DATA_HOME=str(run / "xdg"), **(env_extra or {}))
    with open(run / "stdout.log", "wb") as out, open(run / "stderr.log", "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err)
        with TreeSampler(proc.pid) as sampler:
            rc = proc.wait()
        wall = time.monotonic() - started
    if rc != 0:
        tail = (run / "stderr.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"{side} run {index} failed (exit {rc}); logs in {run}:\n{tail}")
    marks = json.loads(timings.read_text())
    result: dict[str, Any] = {"side": side, "index": index, "wall_s": wall, **sampler.peaks()}
    result["startup_s"] = marks["first_batch"] - started  # imports, config, datasets, model, loader start
    result["batches_s"] = marks["last_batch_end"] - marks["first_batch"]
    result["after_batches_s"] = wall - (marks["last_batch_end"] - started)  # validation, checkpoint, extras, exit
    if side == "ours":
        extras = marks.get("extras") or {}
        result["extras_s"] = {k: round(v, 3) for k, v in extras.items()}
        result["extras_total_s"] = marks["extras_end"] - marks["extras_start"]
        result["wall_without_extras_s"] = wall - result["extras_total_s"]
        result.update({f"{k}_before_extras": v for k, v in sampler.peaks(until=marks["extras_start"]).items()})
        metrics = json.loads((run / "out" / "metrics.json").read_text())
        result["validations"] = len(metrics["validations"])
        result["checkpoints"] = len(list((run / "xdg" / "determined").glob("*/metadata.json")))
        last = (metrics["validations"] or [{}])[-1]
        result["bbox_mAP"] = last.get("bbox_mAP", last.get("coco/bbox_mAP"))
    else:
        if "validations" in marks:  # mmengine's runner: counted in the child
            result["validations"], result["bbox_mAP"] = marks["validations"], marks["bbox_mAP"]
        else:
            result["validations"], result["bbox_mAP"] = _mmdet_validations(run / "work_dir")
        result["checkpoints"] = len(list((run / "work_dir").glob("iter_*.pth")))
        result["wall_without_extras_s"] = wall
    shutil.rmtree(run / "xdg", ignore_errors=True)  # checkpoints: counted, no longer needed
    for ckpt in (run / "work_dir").glob("*.pth"):
        ckpt.unlink()
    return result


def _mmdet_validations(work_dir: Path) -> tuple[int, float | None]:
    """Validations logged by mmdet's runner (its .log.json has one line per logged interval)."""
    count, last = 0, None
    for log in work_dir.glob("*.log.json"):
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("mode") == "val":
                count += 1
                last = entry.get("bbox_mAP")
    return count, last


# ================================================================================================ profile
PROFILE_ITEMS = [  # label, path fragment of the function's file, function name ("/trial.py": the adapter's)
    ("imports (all, in the main process)", "<frozen importlib._bootstrap>", "_find_and_load"),
    ("determined pytorch.init (enter + exit)", "determined/pytorch/_trainer.py", "init"),
    ("MMDetTrial.__init__ (config, datasets, model)", "/trial.py", "__init__"),
    ("Trainer.fit", "determined/pytorch/_trainer.py", "fit"),
    ("MMDetTrial.train_batch", "/trial.py", "train_batch"),
    ("Determined _validate", "determined/pytorch/_pytorch_trial.py", "_validate"),
    ("MMDetTrial.evaluate (COCO eval)", "/trial.py", "evaluate"),
    ("Determined _checkpoint", "determined/pytorch/_pytorch_trial.py", "_checkpoint"),
    ("working-directory copy (write_user_code)", "determined/util.py", "write_user_code"),
    ("TensorBoard upload (_upload_tb_files)", "determined/pytorch/_pytorch_trial.py", "_upload_tb_files"),
    ("extras: cli._finish_run", "model_hub_mmdet/tools/cli.py", "_finish_run"),
    ("extras: plot_curves", "model_hub_mmdet/tools/report.py", "plot_curves"),
    ("extras: export_checkpoint", "/export.py", "export_checkpoint"),
    ("extras: draw_predictions", "model_hub_mmdet/tools/report.py", "draw_predictions"),
    ("mmengine Runner.from_cfg", "mmengine/runner/runner.py", "from_cfg"),
    ("mmengine Runner.train", "mmengine/runner/runner.py", "train"),
    ("mmengine IterBasedTrainLoop.run_iter (batches)", "mmengine/runner/loops.py", "run_iter"),
    ("mmdet 3 CocoMetric.compute_metrics", "mmdet/evaluation/metrics/coco_metric.py", "compute_metrics"),
    ("mmengine Runner.save_checkpoint", "mmengine/runner/runner.py", "save_checkpoint"),
    ("mmdet train_detector", "mmdet/apis/train.py", "train_detector"),
    ("mmcv IterBasedRunner.run", "mmcv/runner/iter_based_runner.py", "run"),
    ("mmcv IterBasedRunner.train (batches)", "mmcv/runner/iter_based_runner.py", "train"),
    ("mmdet EvalHook._do_evaluate", "mmdet/core/evaluation/eval_hooks.py", "_do_evaluate"),
    ("mmcv save_checkpoint", "mmcv/runner/iter_based_runner.py", "save_checkpoint"),
    ("torch.save", "torch/serialization.py", "save"),
    ("build_detector", "mmdet/models/builder.py", "build_detector"),
    ("init_weights", "mmcv/runner/base_module.py", "init_weights"),
]


def cprofile_items(path: Path) -> dict[str, float]:
    """Cumulative seconds of each PROFILE_ITEMS function in one cProfile dump (largest match)."""
    import pstats

    stats = pstats.Stats(str(path)).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    found: dict[str, float] = {}
    for label, fragment, name in PROFILE_ITEMS:
        times = [v[3] for (file, _, fn), v in stats.items() if fn == name and fragment in file.replace("\\", "/")]
        if times:
            found[label] = max(times)
    return found


def cprofile_top(path: Path, count: int = 15, packages: tuple[str, ...] = ("model_hub_mmdet/", "determined/",
                 "mmdet/", "mmcv/", "mmengine/")) -> list[tuple[str, float]]:
    """The functions of these packages with the largest cumulative time."""
    import pstats

    stats = pstats.Stats(str(path)).stats
    rows = []
    for (file, line, fn), v in stats.items():
        norm = file.replace("\\", "/")
        hit = next((p for p in packages if p in norm), None)
        if hit:
            rows.append((f"{hit}{norm.split(hit, 1)[1]}:{line}({fn})", v[3]))
    return sorted(rows, key=lambda r: -r[1])[:count]


def importtime_by_package(stderr_text: str) -> tuple[float, dict[str, float]]:
    """Total import seconds and self time per top-level package from ``python -X importtime`` output."""
    per: dict[str, float] = {}
    total = 0.0
    for line in stderr_text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line.split(":", 1)[1].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        self_us, name = parts[0].strip(), parts[2].strip()
        seconds = int(self_us) / 1e6
        total += seconds
        root = name.split(".")[0]
        per[root] = per.get(root, 0.0) + seconds
    return total, per


def profile_runs(work: Path, exp: Path, mmdet_cfg: Path, batches: int) -> dict[str, Any]:
    """One importtime run and one cProfile run of each side."""
    out: dict[str, Any] = {}
    for side in SIDES:
        r = run_side(side, 900, work, exp, mmdet_cfg, batches, extra_python=["-X", "importtime"])
        stderr = (work / f"{side}-900" / "stderr.log").read_text(errors="replace")
        total, per = importtime_by_package(stderr)
        out[f"{side}_importtime"] = {"wall_s": r["wall_s"], "total_import_s": total,
                                     "by_package_s": dict(sorted(per.items(), key=lambda kv: -kv[1]))}
        prof = work / f"{side}.prof"
        r = run_side(side, 901, work, exp, mmdet_cfg, batches, env_extra={"BENCH_CPROFILE": str(prof)})
        out[f"{side}_cprofile"] = {"wall_s": r["wall_s"], "items_s": cprofile_items(prof),
                                   "top": cprofile_top(prof), "file": str(prof)}
    return out


def print_profile(prof: dict[str, Any]) -> None:
    print("\n### Where the time goes (one run of each side under cProfile, which slows Python code)\n")
    ours, mm = prof["ours_cprofile"], prof["mmdet_cprofile"]
    labels = [label for label, _, _ in PROFILE_ITEMS if label in ours["items_s"] or label in mm["items_s"]]
    rows = [(label, _fmt(ours["items_s"].get(label)), _fmt(mm["items_s"].get(label))) for label in labels]
    rows.append(("whole process (wall, profiled)", _fmt(ours["wall_s"]), _fmt(mm["wall_s"])))
    print(markdown_table(["cumulative seconds", "ours", "mmdet"], rows))
    for side in SIDES:
        print(f"\nLargest cumulative times in {side} (package functions):\n")
        print(markdown_table(["function", "s"], [(name, f"{s:.2f}") for name, s in prof[f"{side}_cprofile"]["top"]]))
    print("\n### Imports (`python -X importtime`, self time summed per top-level package)\n")
    oi, mi = prof["ours_importtime"], prof["mmdet_importtime"]
    names = list(dict.fromkeys([*list(oi["by_package_s"])[:12], *list(mi["by_package_s"])[:12]]))
    rows = [(n, _fmt(oi["by_package_s"].get(n)), _fmt(mi["by_package_s"].get(n))) for n in names]
    rows.append(("all imports", _fmt(oi["total_import_s"]), _fmt(mi["total_import_s"])))
    print(markdown_table(["package", "ours s", "mmdet s"], rows))


def _fmt(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{x:.{digits}f}"


# ================================================================================================== main
def summarize(runs: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    timed = [r for r in runs if r["index"] >= warmup]
    by = {s: sorted((r for r in timed if r["side"] == s), key=lambda r: r["index"]) for s in SIDES}
    out: dict[str, Any] = {}
    for key in ("wall_s", "wall_without_extras_s", "startup_s", "batches_s", "after_batches_s", "peak_rss_mb",
                "peak_pss_mb", "peak_main_rss_mb"):
        a = [r[key] for r in by["ours"]]
        b = [r[key] for r in by["mmdet"]]
        out[key] = {"ours": median(a), "mmdet": median(b), "ratio": median(paired_ratios(a, b)),
                    "ours_all": a, "mmdet_all": b}
    for key in ("peak_rss_mb_before_extras", "peak_pss_mb_before_extras"):
        a = [r[key] for r in by["ours"]]
        b = [r[key.replace("_before_extras", "")] for r in by["mmdet"]]
        out[key] = {"ours": median(a), "mmdet": median(b), "ratio": median(paired_ratios(a, b))}
    out["extras_s"] = {k: median(r["extras_s"][k] for r in by["ours"]) for k in EXTRAS}
    out["extras_total_s"] = median(r["extras_total_s"] for r in by["ours"])
    return out


def print_summary(s: dict[str, Any], args: argparse.Namespace, runs: list[dict[str, Any]]) -> None:
    pairs = len([r for r in runs if r["index"] >= args.warmup and r["side"] == "ours"])
    labels = LABELS_3 if args.generation == 3 else LABELS
    print(f"\n### parity{' (MMDetection 3.x)' if args.generation == 3 else ''}: RetinaNet R18, {args.size} px,"
          f" batch {args.batch_size}, {args.batches} batches + one validation ({args.val} images) + one checkpoint,"
          f" {args.workers} loader workers\n")
    rows = []
    for key, label, digits in (("wall_s", "whole process, wall s", 1),
                               ("wall_without_extras_s", "wall s without ours' extras", 1),
                               ("startup_s", "process start to first batch, s", 1),
                               ("batches_s", "first batch to end of last batch, s", 1),
                               ("after_batches_s", "after the last batch: validation, checkpoint, extras, exit", 1),
                               ("peak_rss_mb", "peak RSS, sum over the process tree, MB", 0),
                               ("peak_pss_mb", "peak PSS, sum over the process tree, MB", 0),
                               ("peak_rss_mb_before_extras", "peak RSS (tree) before ours' extras, MB", 0),
                               ("peak_main_rss_mb", "peak RSS of the main process, MB", 0)):
        v = s[key]
        rows.append((label, _fmt(v["ours"], digits), _fmt(v["mmdet"], digits), f"{v['ratio']:.3f}"))
    print(markdown_table(["median of pairs", labels["ours"], labels["mmdet"], "ours/mmdet (median of pair ratios)"],
                         rows))
    print(f"\n{pairs} pairs after {args.warmup} warm-up pair(s); {machine_line()}. Goal: both ratios <= 1.00.")
    print("\nExtras at the end of `train --local` (median seconds, inside the ours wall time above):\n")
    rows = [(k, f"{v:.2f}") for k, v in s["extras_s"].items()] + [("all extras", f"{s['extras_total_s']:.2f}")]
    print(markdown_table(["extra", "s"], rows))
    print("\nAll runs (wall s / peak RSS MB / validations / checkpoints / bbox_mAP):")
    for r in runs:
        tag = " (warm-up)" if r["index"] < args.warmup else ""
        print(f"  {r['index']} {r['side']:<5} {r['wall_s']:.1f} s  {r['peak_rss_mb']:.0f} MB  val={r['validations']}"
              f"  ckpt={r['checkpoints']}  mAP={r['bbox_mAP']}{tag}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--generation", type=int, choices=(2, 3), default=2,
                        help="MMDetection generation (default 2, with .venv's Python; 3 needs .venv-mmdet3's)")
    parser.add_argument("--pairs", type=int, default=5, help="timed ours/mmdet pairs (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed pairs first (default 1)")
    parser.add_argument("--batches", type=int, default=100, help="training batches per run (default 100)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="data.workers_per_gpu (default 2)")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels (default 96)")
    parser.add_argument("--train", type=int, default=200, help="training images (default 200)")
    parser.add_argument("--val", type=int, default=20, help="validation images (default 20)")
    parser.add_argument("--profile", action="store_true", help="also profile one run of each side")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 pair, no warm-up, 10 batches")
    parser.add_argument("--json", help="results file (default runs/bench/parity-TIME.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, profiles)")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.warmup, args.batches, args.train, args.val = 1, 0, 10, 40, 4
    global GENERATION
    GENERATION = args.generation
    check_generation(args.generation)
    work = Path(tempfile.mkdtemp(prefix="bench-parity-"))
    try:
        exp = write_experiment(work, args.batches, args.batch_size, args.workers, args.size, args.train, args.val,
                               gen=args.generation)
        if args.generation == 3:
            mmdet_cfg = write_runner_config_3(exp, work / "runner_config.py", args.batches)
        else:
            mmdet_cfg = write_mmdet_config(exp, work / "mmdet_config.py", args.batches)
        runs = []
        for i in range(args.warmup + args.pairs):
            for side in SIDES if i % 2 == 0 else SIDES[::-1]:
                runs.append(run_side(side, i, work, exp, mmdet_cfg, args.batches))
                print(f"run {i} {side}: {runs[-1]['wall_s']:.1f} s, peak RSS {runs[-1]['peak_rss_mb']:.0f} MB",
                      flush=True)
        payload: dict[str, Any] = {"args": vars(args), "runs": runs}
        if args.pairs:
            payload["summary"] = summarize(runs, args.warmup)
            print_summary(payload["summary"], args, runs)
        if args.profile:
            payload["profile"] = profile_runs(work, exp, mmdet_cfg, args.batches)
            print_profile(payload["profile"])
        name = "parity-mmdet3" if args.generation == 3 else "parity"
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
    if len(sys.argv) > 2 and sys.argv[1] == "_mmdet":
        sys.exit(drive_mmdet(*sys.argv[2:5]))
    if len(sys.argv) > 2 and sys.argv[1] == "_runner3":
        sys.exit(drive_runner3(*sys.argv[2:5]))
    sys.exit(main())
