"""A stand-in for a Determined task image, to run ``startup-hook.sh`` as Determined runs it, with no network.

* **The image**: a fresh virtual environment that holds only torch and torchvision (and what they require), as
  Determined's images hold a CUDA torch. They are not copied (5.5 GB, ~50 s of pip): a ``.pth`` file puts a
  folder of symlinks to exactly those distributions, taken from this test run's environment, on the image's path.
  That folder is outside the image's prefix, so pip can never remove or replace them there: a hook that tried
  to change torch would install another one into the image itself, which :func:`torch_is_untouched` sees.
* **The wheelhouse**: every distribution the hook installs (the package's extras' requirements, minus the
  image's), repacked from this environment's installed files into wheels, once per set of versions, under the
  wheel cache. pip then installs with ``--no-index`` from it: the same versions as ``make install``, offline.
  (The mmcv wheel itself comes from scripts/install.sh's wheel cache, as on a cluster.)
* **The entrypoint**: ``python3 -m model_hub_mmdet.run`` with a ``det.ClusterInfo`` built from the experiment as
  the master would send it (as tests/test_launch.py does). Only ``model_hub_mmdet.run`` sees it; Determined's own
  ``pytorch.init`` and ``Trainer`` see no cluster and train locally (no master here).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata as md
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import yaml
from pip._vendor.packaging import tags
from pip._vendor.packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
IMAGE_DISTS = ("torch", "torchvision")
MMCV_DISTS = {"mmcv", "mmcv-full"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed() -> dict[str, md.Distribution]:
    return {_norm(d.metadata["Name"]): d for d in md.distributions()}


def closure(roots: Iterable[str], extras: Iterable[str] = ()) -> set[str]:
    """The installed distributions ``roots`` need (``extras`` of the first root included), by normalised name."""
    dists = _installed()
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo = [(_norm(r), tuple(extras) if i == 0 else ()) for i, r in enumerate(roots)]
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen or name not in dists:
            continue
        seen.add((name, wanted))
        for spec in dists[name].requires or []:
            req = Requirement(spec)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in ("", *wanted)):
                continue
            todo.append((_norm(req.name), tuple(sorted(req.extras))))
    return {name for name, _ in seen}


def _top_levels(dist: md.Distribution) -> set[str]:
    return {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")} - {"__pycache__"}


def make_image(dest: Path, image_dists: Iterable[str] = IMAGE_DISTS) -> Path:
    """A virtual environment whose Python sees only ``image_dists`` (torch and torchvision unless told) and their
    requirements; returns its ``bin`` folder."""
    site = dest / "image-torch"
    site.mkdir(parents=True)
    dists = _installed()
    for name in sorted(closure(image_dists)):
        dist = dists[name]
        for top in _top_levels(dist):
            link = site / top
            if not link.exists():
                link.symlink_to(Path(dist.locate_file(top)).resolve())
    venv = dest / "image"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "image_torch.pth").write_text(f"{site}\n")
    return venv / "bin"


def _wheel_tag(dist: md.Distribution) -> str:
    """The first of the dist's wheel tags this Python supports (``py2-none-any`` may come before ``py3``)."""
    supported = {str(t) for t in tags.sys_tags()}
    listed = re.findall(r"^Tag: (\S+)$", dist.read_text("WHEEL") or "", re.M)
    return next((t for t in listed if t in supported), "py3-none-any")


def _repack(dist: md.Distribution, out: Path) -> None:
    """``dist``'s installed files as a wheel in ``out`` (its scripts come back from its entry points)."""
    name, version = dist.metadata["Name"], dist.version
    info_dir = Path(dist._path).name  # type: ignore[attr-defined]
    wheel = out / f"{re.sub(r'[-_.]+', '_', name)}-{version}-{_wheel_tag(dist)}.whl"
    skip = {f"{info_dir}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:
        for f in dist.files or []:
            path = str(f)
            if path.startswith("..") or path.endswith(".pyc") or path in skip:
                continue
            src = Path(dist.locate_file(f))
            if src.is_file():
                zf.write(src, path)
                record.append(f"{path},,")
        record.append(f"{info_dir}/RECORD,,")
        zf.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")


def wheelhouse(extras: list[str], cache_root: Path, also: Iterable[str] = ()) -> Path:
    """The wheels ``pip install -e .[extras]`` needs beside the image's torch (and the build of an editable
    install: setuptools, wheel; ``also``: more by name), repacked from this environment once per set of versions
    under ``cache_root``."""
    dists = _installed()
    wanted = (closure(["model_hub_mmdet"], extras) - closure(IMAGE_DISTS) - MMCV_DISTS - {"model-hub-mmdet"}) | {
        "setuptools", "wheel", *map(_norm, also)}
    pins = sorted(f"{name}=={dists[name].version}" for name in wanted)
    key = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:16]
    out = cache_root / f"{'-'.join(extras)}-{key}"
    if not out.is_dir():
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in wanted:
            _repack(dists[name], tmp)
        (tmp / "pins.txt").write_text("\n".join(pins) + "\n")
        tmp.rename(out)
        for old in cache_root.iterdir():  # this extras' wheelhouses of versions no longer installed
            if old != out and re.fullmatch(rf"{re.escape('-'.join(extras))}-[0-9a-f]{{16}}", old.name):
                shutil.rmtree(old, ignore_errors=True)
    return out


def context_copy(dest: Path) -> Path:
    """The context directory as ``det experiment create .`` uploads it (``.detignore`` honoured)."""
    from determined.common import context

    with contextlib.redirect_stdout(io.StringIO()):  # its progress line, once per file
        files = context.read_v1_context(REPO)
    for f in files:
        path = dest / f.path
        if f.type == ord(tarfile.DIRTYPE):
            path.mkdir(parents=True, exist_ok=True)
            continue
        if f.type != ord(tarfile.REGTYPE):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(f.content or ""))
        path.chmod(f.mode & 0o777 or 0o644)
    return dest


def hook_env(bin_dir: Path, wheels: Path, variables: Iterable[str], **extra: str) -> dict[str, str]:
    """The environment Determined gives the hook: the image's Python first on PATH, the experiment's
    ``environment_variables``, and pip pointed at the wheelhouse only (no index, no pip configuration)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels),
               PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
    for entry in variables:
        key, _, value = entry.partition("=")
        env[key.strip()] = value.strip()
    env.update(extra)
    return env


# The cluster entrypoint under a ClusterInfo only model_hub_mmdet.run sees; then what the image ended up with.
DRIVER = r"""
import json, logging, os, runpy, sys
import determined as det
logging.basicConfig(level=logging.INFO)  # Determined's local core logs the reported metrics
from model_hub_mmdet.expconf import local_hparams, with_defaults

conf = json.loads(os.environ["STANDIN_EXPERIMENT"])
trial = det.TrialInfo(trial_id=1, experiment_id=1, trial_seed=0, hparams=local_hparams(conf["hyperparameters"]),
                      config=with_defaults(conf), steps_completed=0, trial_run_id=1, debug=False,
                      inter_node_network_interface=None)
info = det.ClusterInfo(master_url="http://127.0.0.1:9", cluster_id="standin", agent_id="a", slot_ids=[0],
                       task_id="t", allocation_id="al", session_token="s", task_type="TRIAL",
                       latest_checkpoint=None, trial_info=trial)
real = det.get_cluster_info
def get_cluster_info():
    caller = sys._getframe(1).f_code.co_filename
    return info if caller.endswith(os.path.join("model_hub_mmdet", "run.py")) else real()
det.get_cluster_info = get_cluster_info
sys.argv = ["python3 -m model_hub_mmdet.run"]
try:
    runpy.run_module("model_hub_mmdet.run", run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as exit:
    code = exit.code or 0
import importlib.metadata as md, torch, mmcv, mmdet
from model_hub_mmdet import generation
print("STANDIN " + json.dumps({
    "exit": code, "torch": torch.__version__, "torch_file": torch.__file__, "mmdet": mmdet.__version__,
    "mmcv": mmcv.__version__, "mmcv_file": mmcv.__file__, "generation": generation.installed(),
    "dists": sorted(d.metadata["Name"].lower() for d in md.distributions()),
    "adapters": sorted(m for m in sys.modules if m in ("model_hub_mmdet.mmdet2", "model_hub_mmdet.mmdet3")),
}))
"""


def run_entrypoint(bin_dir: Path, context: Path, conf: dict, env: dict[str, str]) -> tuple[dict, str]:
    """``python3 -m model_hub_mmdet.run`` in the context as on a cluster; (what the image imported, the log)."""
    proc = subprocess.run([str(bin_dir / "python3"), "-c", DRIVER], cwd=context, capture_output=True, text=True,
                          timeout=900, env={**env, "STANDIN_EXPERIMENT": json.dumps(conf)})
    log = proc.stdout + proc.stderr
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("STANDIN ")), None)
    assert proc.returncode == 0 and line, log[-5000:]
    return json.loads(line[len("STANDIN "):]), log


def torch_is_untouched(bin_dir: Path, image_root: Path) -> list[str]:
    """What the hook changed about the image's torch/torchvision (nothing, if it kept them)."""
    problems = []
    out = subprocess.run([str(bin_dir / "python3"), "-c", "import importlib.metadata as md, json; print(json.dumps("
                          "{d.metadata['Name'].lower(): str(d._path) for d in md.distributions()}))"],
                         capture_output=True, text=True, check=True).stdout
    where = json.loads(out)
    for name in IMAGE_DISTS:
        if not where.get(name, "").startswith(str(image_root / "image-torch")):
            problems.append(f"{name} is now at {where.get(name)}, not the image's")
    for link in (image_root / "image-torch").iterdir():
        if link.name == "__pycache__":  # Python's own, for the single-module distributions there
            continue
        if not link.is_symlink() or not link.exists():
            problems.append(f"{link} was replaced")
    return problems


def cached_mmcv_wheel(dist: str) -> Path:
    """The wheel this environment's mmcv was installed from (scripts/install.sh's cache, by its build key)."""
    marker = Path(md.distribution(dist).locate_file("mmcv/.model_hub_mmdet_build_key"))
    assert marker.exists(), f"{dist} was not installed by scripts/install.sh (make install): no wheel to reuse"
    wheels = sorted(Path(marker.read_text().strip()).glob("*.whl"))
    assert wheels, f"scripts/install.sh's cached wheel is gone from {marker.read_text().strip()}"
    return wheels[0]


def hook_then_train(generation: str, work: Path, shapes_dir: Path, overrides: dict, *, via_install_sh: bool) -> dict:
    """The whole cluster path of the generation's shapes example: a fresh image, the experiment's environment
    variables, ``startup-hook.sh`` in a copy of the context (mmcv from ``MMCV_WHEEL``, or ``via_install_sh``
    from scripts/install.sh's wheel cache as in an image that has it), then the entrypoint trains 2 batches,
    validates and checkpoints. Returns what the image imported (run_entrypoint's summary) plus the hook's log."""
    example = REPO / "examples" / "shapes" / ("shapes.yaml" if generation == "2" else "shapes_mmdet3.yaml")
    conf = yaml.safe_load(example.read_text())
    variables = (conf.get("environment") or {}).get("environment_variables") or []
    mmcv_dist = "mmcv-full" if generation == "2" else "mmcv"
    wheel = cached_mmcv_wheel(mmcv_dist)
    cache_root = wheel.parents[2]  # $MODEL_HUB_MMDET_WHEEL_CACHE
    bin_dir = make_image(work)
    extras = [f"mmdet{generation}"] + (["test"] if via_install_sh else [])  # install.sh installs [mmdetN,test]
    # Both install panopticapi-lite without its dependencies; scripts/install.sh also checks for the tools an mmcv
    # build needs (ninja), even with the wheel cached.
    wheels = wheelhouse(extras, cache_root.parent / "standin-wheelhouse",
                       ["panopticapi-lite"] + (["ninja"] if via_install_sh else []))
    context = context_copy(work / "context")
    (context / "data").mkdir(exist_ok=True)
    (context / "data" / "shapes").symlink_to(shapes_dir)
    extra = {"MODEL_HUB_MMDET_WHEEL_CACHE": str(cache_root)}
    if not via_install_sh:
        extra["MMCV_WHEEL"] = str(wheel)
    env = hook_env(bin_dir, wheels, variables, **extra)
    hook = subprocess.run(["bash", "startup-hook.sh"], cwd=context, env=env, capture_output=True, text=True,
                          timeout=900)
    assert hook.returncode == 0, (hook.stdout + hook.stderr)[-5000:]
    untouched = torch_is_untouched(bin_dir, work)
    conf["hyperparameters"]["global_batch_size"] = 2
    conf["hyperparameters"]["override_mmdet_config"] = overrides
    conf["searcher"]["max_length"] = {"batches": 2}
    conf["min_validation_period"] = {"batches": 2}
    conf["min_checkpoint_period"] = {"batches": 2}
    env["XDG_DATA_HOME"] = str(work / "xdg")
    summary, log = run_entrypoint(bin_dir, context, conf, env)
    return {**summary, "untouched": untouched, "hook_log": hook.stdout + hook.stderr, "log": log,
            "checkpoints": sorted(p.parent.name for p in (work / "xdg").rglob("metadata.json")),
            "wheel": str(wheel)}
