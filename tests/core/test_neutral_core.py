"""The core imports neither mmcv, mmengine nor mmdet, and works where none of them imports.

Each test runs a fresh interpreter in which importing ``mmcv``, ``mmdet`` or ``mmengine`` raises
``ModuleNotFoundError`` (a finder placed first on ``sys.meta_path``), as in an environment without MMDetection or
with a broken build of it."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import boto3
import pytest
import yaml

import model_hub_mmdet

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(model_hub_mmdet.__file__).parent
ADAPTERS = ("model_hub_mmdet.mmdet2", "model_hub_mmdet.mmdet3")
BLOCKED = ("mmcv", "mmdet", "mmengine")

BLOCKER = """
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""


def core_modules() -> list[str]:
    """Every module of the package outside the generation adapters."""
    found = ["model_hub_mmdet"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="model_hub_mmdet."):
        if not info.name.startswith(ADAPTERS):
            found.append(info.name)
    return found


def run_without_mmdet(code: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    script = BLOCKER.format(blocked=BLOCKED) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_the_core_is_most_of_the_package() -> None:
    modules = core_modules()
    assert {"model_hub_mmdet.expconf", "model_hub_mmdet.launch", "model_hub_mmdet.storage.s3",
            "model_hub_mmdet.weights.download", "model_hub_mmdet.tools.cli", "model_hub_mmdet.sampling",
            "model_hub_mmdet.gather", "model_hub_mmdet.bad_images"} <= set(modules)


def test_every_core_module_imports_without_mmcv_mmdet_or_mmengine(tmp_path: Path) -> None:
    run = run_without_mmdet(f"""
        import importlib, sys
        for name in {core_modules()!r}:
            importlib.import_module(name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
        print("LOADED", loaded)
    """, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "LOADED []" in run.stdout


def test_the_core_never_names_mmcv_mmdet_or_mmengine_in_an_import() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        if ".".join(rel.parts).startswith(ADAPTERS):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            words = line.strip().split()
            if len(words) >= 2 and words[0] in ("import", "from") and words[1].split(".")[0] in BLOCKED:
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == []


def test_check_reports_schema_problems_then_one_line_about_the_config(tmp_path: Path) -> None:
    exp = {
        "name": "x",
        "searchr": {"name": "single"},  # misspelt
        "searcher": {"name": "single", "metric": "bbox_mAP", "max_length": {"batches": 10}},
        "hyperparameters": {"global_batch_size": 2, "config_file": "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py"},
        "entrypoint": "python3 -m determined.launch.torch_distributed python3 -m model_hub_mmdet.run",
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    run = run_without_mmdet("""
        import sys
        from model_hub_mmdet.tools import cli
        sys.exit(cli.main(["check", "exp.yaml"]))
    """, tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    problems = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("  - ")]
    assert any("searchr" in line and "searcher" in line for line in problems), problems
    config_lines = [line for line in problems if "MMDetection config was not checked" in line]
    assert len(config_lines) == 1, problems
    assert "does not import" in config_lines[0] and "make install" in config_lines[0]
    assert "Traceback" not in run.stderr


def test_migrate_runs(tmp_path: Path) -> None:
    old = REPO / "tests" / "fixtures" / "model_hub_maskrcnn.yaml"
    run = run_without_mmdet(f"""
        import sys
        from model_hub_mmdet.tools import cli
        sys.exit(cli.main(["migrate", {str(old)!r}, "-o", "new.yaml"]))
    """, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    new = yaml.safe_load((tmp_path / "new.yaml").read_text())
    assert "model_hub_mmdet.run" in new["entrypoint"]


def test_an_s3_object_is_read_through_the_core_storage_client(moto, tmp_path: Path) -> None:
    bucket = f"neutral-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1", aws_access_key_id="x",
                      aws_secret_access_key="y")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="data/a.json", Body=json.dumps({"ok": 1}).encode())
    env = {"AWS_ENDPOINT_URL_S3": moto.endpoint, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
           "AWS_DEFAULT_REGION": "us-east-1"}
    run = run_without_mmdet(f"""
        import json, sys
        from model_hub_mmdet.storage import S3Backend, object_backend
        backend = S3Backend(bucket_name={bucket!r}, cache_dir={str(tmp_path / "cache")!r})
        print("GOT", json.loads(backend.get("data/a.json")))
        shared = object_backend({{"backend": "s3", "bucket_name": {bucket!r}, "cache_dir": {str(tmp_path / "c2")!r}}})
        print("SHARED", shared.get_text("s3://{bucket}/data/a.json"))
        print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r}))
    """, tmp_path, env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "GOT {'ok': 1}" in run.stdout
    assert 'SHARED {"ok": 1}' in run.stdout
    assert "LOADED []" in run.stdout


@pytest.mark.parametrize("old, new", [("model_hub_mmdet.backends", "model_hub_mmdet.storage"),
                                      ("model_hub_mmdet.check", "model_hub_mmdet.tools.check")])
def test_moved_core_modules_keep_their_old_path_with_a_deprecation_warning(old: str, new: str, tmp_path: Path) -> None:
    run = run_without_mmdet(f"""
        import warnings
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            import importlib
            module = importlib.import_module({old!r})
        assert module is importlib.import_module({new!r})
        print("WARNED", [str(w.message) for w in caught if w.category is DeprecationWarning])
    """, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"{old} moved to {new}" in run.stdout
