"""One command for a machine with one GPU: the CUDA paths of the installed MMDetection generation, end to end.

    .venv/bin/python bench/gpu_check.py [--iters 20] [--size 256] [--batch 8]          # MMDetection 2.x
    .venv-mmdet3/bin/python bench/gpu_check.py [...]                                    # MMDetection 3.x
    python bench/gpu_check.py --cpu --iters 2 --size 64 --batch 2                       # here: all but CUDA
    python bench/gpu_check.py prepare DIR [--python-version 3.12]                       # wheelhouse (network)

1. **mmcv with CUDA ops**: kept if the installed mmcv was compiled with CUDA; else ``--mmcv-wheel W`` is
   installed, or it is built for this GPU's architecture only (scripts/install.sh ``BUILD_ONLY=1 CUDA=1``, all
   cores: a few minutes on 16) and installed. ``--wheelhouse DIR`` makes that offline: the mmcv sdist and the
   package's requirements come from DIR (``prepare`` fills it where there is network), as on a machine without
   one.
2. **CUDA ops against CPU ops** on random inputs (scripts/mmcv_ops_probe.py): NMS, RoIAlign, deformable and
   modulated deformable convolution (forward and backward), box overlaps, sigmoid focal loss and multi-scale
   deformable attention (those two against plain-torch references).
3. **Training side by side with the generation's own runner**, ``--iters`` iterations each, on the shapes data:
   2.x Faster R-CNN with fp16 (``fp16 = dict(loss_scale=512.)``) and Mask R-CNN with ``mmdet.apis.train_detector``;
   3.x RTMDet-tiny with AMP (``AmpOptimWrapper``) with mmengine's ``Runner``. The models are the test suite's
   narrow variants (tests/mmdet_configs, tests/mmdet3/configs) at ``--size`` px. Compared: the first iteration's
   loss, seconds per iteration (median after the first), and the validation metric; then ours is exported and
   the export loaded by mmdet's own ``init_detector`` and run by ``inference_detector``.
4. One table (``--json OUT`` also writes the numbers).

``--cpu`` runs everything but the CUDA parts (no build, no CUDA op comparison, no fp16/AMP): what the test suite
runs (tests/test_gpu_check.py, tests/mmdet3/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(1, str(REPO))  # model_hub_mmdet, also before (or without) its editable install
import mmcv_ops_probe  # noqa: E402

TINY = {
    "faster_rcnn": ("faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py", REPO / "tests/mmdet_configs/tiny_faster_rcnn.py"),
    "mask_rcnn": ("mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py", REPO / "tests/mmdet_configs/tiny_mask_rcnn.py"),
    # a whole config over mmdet's own (its _base_), not a file to merge
    "rtmdet_tiny": (str(REPO / "tests/mmdet3/configs/rtmdet_tiny_shapes.py"), None),
}
# (model, what it checks on the GPU, overrides that switch on half precision: only with a GPU)
MODELS = {
    2: [("faster_rcnn", "fp16", {"fp16.loss_scale": 512.0}), ("mask_rcnn", "fp32", {})],
    3: [("rtmdet_tiny", "AMP", {"optim_wrapper.type": "AmpOptimWrapper", "optim_wrapper.loss_scale": "dynamic"})],
}


def installed_generation() -> int | None:
    import importlib.metadata as md

    try:
        return int(md.version("mmdet").split(".")[0])
    except md.PackageNotFoundError:
        return None


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------ 1. mmcv with CUDA
def mmcv_cuda_version() -> str:
    code = "import mmcv.ops; print(mmcv.ops.get_compiling_cuda_version())"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return run.stdout.strip().splitlines()[-1] if run.returncode == 0 and run.stdout.strip() else "not importable"


def offline_env(wheelhouse: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if wheelhouse:
        env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(Path(wheelhouse).resolve()))
    return env


def ensure_cuda_mmcv(args: argparse.Namespace, gen: int) -> dict[str, Any]:
    """Keep, install or build the generation's mmcv with CUDA ops; what was done and how long it took."""
    started = time.monotonic()
    have = mmcv_cuda_version()
    if re.match(r"\d+\.\d+", have):
        return {"mmcv": "installed", "seconds": 0.0}
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall"]
    env = offline_env(args.wheelhouse)
    wheel = args.mmcv_wheel
    how = "given wheel"
    if not wheel:
        import torch

        # what mmcv's setup.py needs to compile (scripts/install.sh's build-only mode installs nothing itself)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "ninja", "wheel", "setuptools<70"], env=env,
                       check=True)

        major, minor = torch.cuda.get_device_capability(0)
        build_env = dict(env, MMDET=str(gen), VENV="none", PYTHON=sys.executable, CUDA="1", BUILD_ONLY="1",
                         TORCH_CUDA_ARCH_LIST=f"{major}.{minor}", MAX_JOBS=str(os.cpu_count() or 1))
        run = subprocess.run(["bash", str(REPO / "scripts/install.sh")], env=build_env, capture_output=True,
                             text=True)
        if run.returncode:
            raise SystemExit(f"gpu_check: building mmcv failed:\n{(run.stdout + run.stderr)[-4000:]}")
        wheel = re.findall(r"done: (\S+\.whl)", run.stdout)[-1]
        how = f"built for sm_{major}{minor}"
    other = "mmcv" if gen == 2 else "mmcv-full"
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", other], env=env, capture_output=True)
    subprocess.run([*pip, wheel], env=env, check=True)
    size = Path(wheel).stat().st_size / 2**20
    return {"mmcv": f"{how}, wheel {size:.1f} MiB", "seconds": time.monotonic() - started}


def ensure_stack(args: argparse.Namespace, gen: int) -> str:
    """model_hub_mmdet with the generation's extra (mmdet, determined, ...), installed if mmdet is not (the
    machine's torch kept: pinned as a constraint); mmcv must be there first (ensure_cuda_mmcv). From a wheelhouse
    (``prepare``), its wheels go in as they are, without resolving: ``prepare`` left out what the image has."""
    if installed_generation() == gen:
        return "installed"
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    env = offline_env(args.wheelhouse)
    if args.wheelhouse:
        wheels = [str(p) for p in Path(args.wheelhouse).glob("*.whl") if project(p.name) not in MMCV_DISTS]
        subprocess.run([*pip, "--no-deps", *wheels], env=env, check=True)
        subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-e", str(REPO)], env=env, check=True)
    else:
        import torch

        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as pins:
            pins.write(f"torch=={torch.__version__}\n")
        subprocess.run([*pip, "-c", pins.name, "-e", f"{REPO}[mmdet{gen}]"], env=env, check=True)
    importlib.invalidate_caches()
    return "installed now"


DEVICE_CARRY_MIB = 64  # what one device call carries (the device tool's limit on ignored paths)
DEVICE_IMAGE = REPO / "bench" / "device_image_packages.txt"
# Wanted by a requirement but never imported by a local run on disk data (checked with sys.modules after a
# --cpu run): determined's cluster-side clients, and opencv-python where the image's opencv-python-headless is cv2.
NOT_IMPORTED = {"opencv-python", "google-api-python-client", "google-auth-httplib2", "httplib2", "uritemplate",
                "azure-core", "azure-storage-blob", "isodate", "paramiko", "pynacl", "invoke", "docker"}
PINNED_FOR_THE_BUILD = {"setuptools"}  # install.sh builds mmcv with setuptools<70; the image's is newer
MMCV_DISTS = ("mmcv", "mmcv-full")  # the sdist the machine builds (ensure_cuda_mmcv), not a wheel to install


def project(filename: str) -> str:
    """A wheel's or sdist's project name, normalised (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.split(r"-\d", filename, maxsplit=1)[0]).lower()


def present_on_device(path: Path = DEVICE_IMAGE) -> set[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return {project(line) for line in lines if line and not line.startswith("#")}


def slim_wheelhouse(dest: Path, present: set[str]) -> list[str]:
    """Delete from ``dest`` what the device has or never imports (torch and its CUDA libraries, the image's
    packages, :data:`NOT_IMPORTED`), keeping the version pins a build needs; returns the names deleted."""
    dropped = []
    for path in sorted(dest.iterdir()):
        name = project(path.name)
        if name in PINNED_FOR_THE_BUILD or name in MMCV_DISTS:
            continue
        if (re.match(r"(torch|torchvision|triton|nvidia-|cuda-)", name) or name in present
                or name in NOT_IMPORTED):
            path.unlink()
            dropped.append(path.name)
    return dropped


def prepare(dest: Path, python_version: str, gen: int, present: set[str]) -> int:
    """Fill ``dest`` with what the GPU machine installs offline: the mmcv sdist and wheels of the package's
    requirements for ``python_version``, less what the machine's image already has (``present``) and what a
    local run never imports; say how much it is, and whether one device call can carry it."""
    dest.mkdir(parents=True, exist_ok=True)
    mmcv = "mmcv-full==1.7.2" if gen == 2 else "mmcv==2.1.0"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                    "--no-build-isolation", mmcv, "-d", str(dest)], check=True)
    import importlib.metadata as md

    reqs = [r for r in md.requires("model_hub_mmdet") or [] if f"extra == \"mmdet{gen}\"" in r or "extra" not in r]
    reqs = [r.split(";")[0].strip() for r in reqs]
    reqs = [r for r in reqs if not re.match(r"(torch|torchvision|mmcv)\b", r)]
    target = ["--python-version", python_version, "--only-binary", ":all:", "--platform", "manylinux2014_x86_64",
              "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64"]
    run = subprocess.run([sys.executable, "-m", "pip", "download", "-q", *target, "-d", str(dest), *reqs,
                          "setuptools<70", "wheel", "ninja"], capture_output=True, text=True)
    dropped = slim_wheelhouse(dest, present)
    total = sum(p.stat().st_size for p in dest.iterdir()) / 2**20
    fits = "fits" if total <= DEVICE_CARRY_MIB else "does NOT fit"
    print(f"{dest}: {len(list(dest.iterdir()))} files, {total:.1f} MiB ({fits} the {DEVICE_CARRY_MIB} MiB a device "
          f"call carries); left out {len(dropped)} the device has or never imports"
          + (run.stderr[-2000:] if run.returncode else ""))
    return run.returncode or int(total > DEVICE_CARRY_MIB)


# ------------------------------------------------------------------------------------ 2. CUDA ops vs CPU ops
def compare_ops(device: str) -> list[tuple[str, float, bool]]:
    cpu = mmcv_ops_probe.run_ops("cpu")
    if device == "cpu":
        return []
    return mmcv_ops_probe.compare(cpu, mmcv_ops_probe.run_ops(device))


# -------------------------------------------------------------------------------------- 3. side by side
def experiment(gen: int, model: str, data: Path, args: argparse.Namespace, half: dict[str, Any]) -> dict[str, Any]:
    base, merge = TINY[model]
    size, root = args.size, f"{data}/"
    over: dict[str, Any] = {}
    if gen == 2:
        for split, folder in (("train", "train"), ("val", "val"), ("test", "val")):
            over[f"data.{split}.ann_file"] = f"{root}annotations/{folder}.json"
            over[f"data.{split}.img_prefix"] = f"{root}{folder}/"
        over["data.train.pipeline.2.img_scale"] = [size, size]
        for split in ("val", "test"):
            over[f"data.{split}.pipeline.1.img_scale"] = [size, size]
        metric = "bbox_mAP"
    else:
        for split in ("train", "val", "test"):
            over[f"{split}_dataloader.dataset.data_root"] = root
        for key in ("val_evaluator", "test_evaluator"):
            over[f"{key}.ann_file"] = f"{root}annotations/val.json"
        over["train_dataloader.dataset.pipeline.2.scale"] = [size, size]
        over["train_dataloader.dataset.pipeline.4.size"] = [size, size]
        for split in ("val", "test"):
            over[f"{split}_dataloader.dataset.pipeline.1.scale"] = [size, size]
            over[f"{split}_dataloader.dataset.pipeline.2.size"] = [size, size]
        # The same first batch on both sides (mmengine's sampler and ours both honour it), so that the first
        # losses compare the model, not the data. (2.x's train_detector shuffles whatever the config says.)
        over["train_dataloader.sampler.shuffle"] = False
        metric = "coco/bbox_mAP"
    over.update(half)
    n = args.iters
    return {
        "name": f"gpu-check-{model}",
        "hyperparameters": {"global_batch_size": args.batch, "config_file": base, "override_mmdet_config": over,
                            **({"merge_config": str(merge)} if merge else {})},
        "searcher": {"name": "single", "metric": metric, "smaller_is_better": False, "max_length": {"batches": n}},
        "min_validation_period": {"batches": n}, "min_checkpoint_period": {"batches": n},
        "scheduling_unit": 1,  # training metrics of every batch: the first one's loss is compared
        "reproducibility": {"experiment_seed": 0},  # the runner's seed too (randomness.seed / cfg.seed)
        "resources": {"slots_per_trial": 1},
        "entrypoint": "python3 -m determined.launch.torch_distributed python3 -m model_hub_mmdet.run",
    }


def run_ours(exp: dict[str, Any], device: str, work: Path) -> dict[str, Any]:
    """model_hub_mmdet's Trial through Determined's Trainer (local mode), as ``train --local`` runs it."""
    from model_hub_mmdet import MMDetTrial
    from model_hub_mmdet.local import train_local
    from model_hub_mmdet.weights import export_checkpoint

    stamps: list[float] = []

    class Stamped(MMDetTrial):
        def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> Any:
            start = time.perf_counter()
            metrics = super().train_batch(batch, epoch_idx, batch_idx)
            sync(device)
            stamps.append(time.perf_counter() - start)
            return metrics

    Stamped.__name__ = Stamped.__qualname__ = "MMDetTrial"
    n = exp["searcher"]["max_length"]["batches"]
    os.environ["XDG_DATA_HOME"] = str(work / "xdg")
    result = train_local(exp, trial_cls=Stamped, max_batches=n, validation_period=n, checkpoint_period=n)
    first = result.training[0] if result.training else {}
    out = export_checkpoint(result.checkpoints[-1], work / "export" / "model.pth")
    return {"first_loss": first.get("loss"), "s_per_iter": statistics.median(stamps[1:] or stamps),
            "metric": (result.validations[-1] if result.validations else {}).get(exp["searcher"]["metric"]),
            "export": str(out)}


def run_runner(gen: int, exp: dict[str, Any], device: str, work: Path) -> dict[str, Any]:
    """The generation's own runner on the final config model_hub_mmdet trains (its pipeline builds it)."""
    from model_hub_mmdet.expconf import local_hparams

    hp = local_hparams(exp["hyperparameters"])
    n = exp["searcher"]["max_length"]["batches"]
    seen: dict[str, Any] = {"stamps": [], "loss": None, "metric": None, "validated": False}
    metric = exp["searcher"]["metric"]
    if gen == 2:
        from mmcv.runner import HOOKS, Hook
        from mmdet.apis import set_random_seed, train_detector
        from mmdet.datasets import build_dataset
        from mmdet.models import build_detector

        from model_hub_mmdet.mmdet2.config import build_mmdet_config

        class GpuCheckStamps(Hook):  # after the OptimizerHook's step (40), before the EvalHook (70)
            def before_train_iter(self, runner: Any) -> None:
                seen["t0"] = time.perf_counter()

            def after_train_iter(self, runner: Any) -> None:
                sync(device)
                seen["stamps"].append(time.perf_counter() - seen["t0"])
                if seen["loss"] is None:
                    seen["loss"] = float(runner.outputs["log_vars"]["loss"])

        class GpuCheckMetric(Hook):  # after the EvalHook (70), before the logger clears its output (90)
            def after_train_iter(self, runner: Any) -> None:
                if metric in runner.log_buffer.output:
                    seen["metric"], seen["validated"] = runner.log_buffer.output[metric], True

        HOOKS.register_module(module=GpuCheckStamps, force=True)
        HOOKS.register_module(module=GpuCheckMetric, force=True)
        cfg = build_mmdet_config(hp, exp.get("data") or {}, str(REPO))
        cfg.data.samples_per_gpu, cfg.data.workers_per_gpu = hp["global_batch_size"], 0
        cfg.runner = {"type": "IterBasedRunner", "max_iters": n}
        cfg.evaluation = {"interval": n, "metric": ["bbox"]}
        cfg.checkpoint_config = {"interval": n, "by_epoch": False}
        cfg.workflow, cfg.gpu_ids, cfg.device, cfg.seed = [("train", 1)], [0], device, 0
        cfg.custom_hooks = [*cfg.get("custom_hooks", []), {"type": "GpuCheckStamps", "priority": 60},
                            {"type": "GpuCheckMetric", "priority": 80}]
        cfg.work_dir = str(work / "runner")
        set_random_seed(0)
        model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
        model.init_weights()
        datasets = [build_dataset(cfg.data.train)]
        model.CLASSES = datasets[0].CLASSES
        train_detector(model, datasets, cfg, distributed=False, validate=True, timestamp=time.strftime("%H%M%S"))
    else:
        from mmengine.hooks import Hook
        from mmengine.registry import HOOKS
        from mmengine.runner import Runner

        from model_hub_mmdet.mmdet3.config import build_mmdet_config

        class GpuCheckStamps(Hook):
            def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
                seen["t0"] = time.perf_counter()

            def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                                 outputs: Any = None) -> None:
                sync(device)
                seen["stamps"].append(time.perf_counter() - seen["t0"])
                if seen["loss"] is None and outputs:
                    loss = outputs["loss"]
                    seen["loss"] = float(loss.detach() if hasattr(loss, "detach") else loss)

            def after_val_epoch(self, runner: Any, metrics: Any = None) -> None:
                # (mmdet's CocoMetric reports nothing at all when nothing was detected)
                seen["metric"], seen["validated"] = (metrics or {}).get(metric), True

        HOOKS.register_module(module=GpuCheckStamps, force=True)
        cfg = build_mmdet_config(hp, exp.get("data") or {}, str(REPO))
        cfg.train_cfg = {"type": "IterBasedTrainLoop", "max_iters": n, "val_interval": n}
        cfg.default_hooks.checkpoint = {"type": "CheckpointHook", "interval": n, "by_epoch": False}
        cfg.log_processor = {"type": "LogProcessor", "window_size": 50, "by_epoch": False}
        cfg.custom_hooks = [*cfg.get("custom_hooks", []), {"type": "GpuCheckStamps"}]
        cfg.randomness, cfg.launcher, cfg.work_dir = {"seed": 0}, "none", str(work / "runner")
        Runner.from_cfg(cfg).train()
    return {"first_loss": seen["loss"], "s_per_iter": statistics.median(seen["stamps"][1:] or seen["stamps"]),
            "metric": seen["metric"], "validated": seen["validated"]}


def load_export(export: str, data: Path, device: str) -> str:
    """mmdet's own API reads the export and detects on one validation image."""
    from mmdet.apis import inference_detector, init_detector

    image = sorted((data / "val").glob("*"))[0]
    model = init_detector(str(Path(export).with_suffix(".py")), export, device=device)
    result = inference_detector(model, str(image))
    return f"ok ({type(result).__name__})"


# ----------------------------------------------------------------------------------------------------- main
def _num(x: Any, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def check(args: argparse.Namespace) -> dict[str, Any]:
    gen = args.generation or installed_generation()
    if gen is None:
        raise SystemExit("gpu_check: MMDetection is not installed here: say --generation 2 or 3")
    device = "cpu" if args.cpu else "cuda"
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("gpu_check: no GPU visible (torch.cuda.is_available() is False); --cpu runs the rest")
    report: dict[str, Any] = {"generation": gen, "device": device, "iters": args.iters, "size": args.size,
                              "batch": args.batch}
    started = time.monotonic()
    report["mmcv"] = ensure_cuda_mmcv(args, gen) if device == "cuda" else {"mmcv": "CPU run: not checked"}
    report["stack"] = ensure_stack(args, gen)
    if device == "cuda":  # (mmcv 2.x imports mmengine, which comes with the stack)
        have = mmcv_cuda_version()
        if not re.match(r"\d+\.\d+", have):
            raise SystemExit(f"gpu_check: mmcv is installed, but mmcv.ops says it was compiled with CUDA {have!r}")
        report["mmcv"]["mmcv"] += f", compiled with CUDA {have}"
    from model_hub_mmdet import generation as gens

    gens.setup()
    report["ops"] = compare_ops(device)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-"))
    data = work / "data"
    if not (data / "annotations" / "val.json").exists():
        from model_hub_mmdet.tools.shapes import make_shapes

        make_shapes(data, train=max(args.batch * 2, 8), val=4, size=args.size, seed=0)
    report["models"] = []
    for model, half_name, half in MODELS[gen]:
        if args.models and model not in args.models.split(","):
            continue
        exp = experiment(gen, model, data, args, half if device == "cuda" else {})
        row: dict[str, Any] = {"model": model, "precision": half_name if device == "cuda" else "fp32 (CPU)"}
        with contextlib.chdir(work):
            row["ours"] = run_ours(exp, device, work / model / "ours")
            row["runner"] = run_runner(gen, exp, device, work / model / "runner")
            row["export"] = load_export(row["ours"]["export"], data, device)
        report["models"].append(row)
    report["seconds"] = time.monotonic() - started
    return report


def verdicts(report: dict[str, Any]) -> list[str]:
    """What is wrong with the numbers (empty when all is well)."""
    bad = [f"CUDA op {name} differs from the CPU (max |diff| {diff:.3g})" for name, diff, ok in report["ops"]
           if not ok]
    for row in report["models"]:
        a, b = row["ours"]["first_loss"], row["runner"]["first_loss"]
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            bad.append(f"{row['model']}: first-iteration loss missing or not finite (ours {a}, runner {b})")
        elif not 0.1 <= a / b <= 10.0:
            # Each side draws its initial weights from its own seeding (and 2.x's runner its own batch order):
            # the same model and loss give the same magnitude, not the same number.
            bad.append(f"{row['model']}: first-iteration losses differ more than 10x (ours {a:.4g}, runner {b:.4g})")
        if row["ours"]["metric"] is None:
            bad.append(f"{row['model']}: no validation metric from model_hub_mmdet")
    return bad


def print_table(report: dict[str, Any]) -> None:
    gen, dev = report["generation"], report["device"]
    print(f"\ngpu_check: MMDetection {gen}.x on {dev}, {report['iters']} iterations of batch {report['batch']} at "
          f"{report['size']} px; mmcv: {report['mmcv']['mmcv']}; {report['seconds']:.0f} s in all")
    runner = "train_detector" if gen == 2 else "mmengine Runner"
    print(f"| model | precision | first loss ours / {runner} | s/iter ours / {runner} | val metric ours / "
          f"{runner} | export loaded by mmdet |")
    print("|---|---|---|---|---|---|")
    for row in report["models"]:
        o, r = row["ours"], row["runner"]
        ratio = f" ({o['s_per_iter'] / r['s_per_iter']:.2f}x)" if o["s_per_iter"] and r["s_per_iter"] else ""
        print(f"| {row['model']} | {row['precision']} | {_num(o['first_loss'])} / {_num(r['first_loss'])} | "
              f"{_num(o['s_per_iter'], 3)} / {_num(r['s_per_iter'], 3)}{ratio} | {_num(o['metric'], 3)} / "
              f"{_num(r['metric'], 3)} | {row['export']} |")
    if report["ops"]:
        worst = max(report["ops"], key=lambda row: row[1])
        print(f"| CUDA vs CPU ops | {sum(ok for _, _, ok in report['ops'])}/{len(report['ops'])} outputs within "
              f"tolerance | largest |diff| {worst[1]:.3g} ({worst[0]}) | | | |")
    else:
        print("| CUDA vs CPU ops | not run (no GPU) | | | | |")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["prepare"]:
        parser = argparse.ArgumentParser(prog="gpu_check.py prepare")
        parser.add_argument("dest", type=Path)
        parser.add_argument("--python-version", default="3.12")
        parser.add_argument("--generation", type=int, choices=(2, 3), default=installed_generation())
        parser.add_argument("--present", type=Path, default=DEVICE_IMAGE,
                            help="packages the GPU machine already has, one a line (default: %(default)s)")
        args = parser.parse_args(argv[1:])
        return prepare(args.dest, args.python_version, args.generation, present_on_device(args.present))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="no GPU: everything but the CUDA parts")
    parser.add_argument("--generation", type=int, choices=(2, 3), help="default: the installed mmdet's")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--size", type=int, default=256, help="image size (px)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--models", help="only these, comma-separated (" + ", ".join(
        f"{gen}.x: {','.join(m for m, _, _ in models)}" for gen, models in MODELS.items()) + ")")
    parser.add_argument("--work", help="working folder (default: a new temporary one)")
    parser.add_argument("--mmcv-wheel", help="install this mmcv wheel with CUDA ops instead of building one")
    parser.add_argument("--wheelhouse", help="offline: pip takes the mmcv sdist and requirements from here")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = check(args)
    print_table(report)
    bad = verdicts(report)
    for line in bad:
        print(f"FAIL: {line}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 1 if bad else 0


if __name__ == "__main__":
    importlib.invalidate_caches()
    sys.exit(main())
