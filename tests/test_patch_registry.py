"""The 2.x patch registry: every entry fits the installed code and documents itself, importing the package patches
nothing, and a patched function that changed stops the CLI at start in one line naming package and version."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from model_hub_mmdet.errors import SetupError
from model_hub_mmdet.mmdet2 import patches


def test_every_patch_fits_and_documents_itself() -> None:
    patches.check()
    assert len(patches.REGISTRY) >= 10
    for patch in patches.REGISTRY:
        assert patch.reason and patch.checked and patch.package and callable(patch.apply)
    fingerprinted = {t.split(":")[0] for p in patches.REGISTRY for t in p.targets}
    assert {"mmdet.datasets.coco", "mmdet.core.evaluation.recall", "mmcv.utils.logging"} <= fingerprinted


def test_a_changed_function_is_one_line_naming_package_and_version() -> None:
    coco = next(p for p in patches.REGISTRY if p.name == "coco-warning-filters")
    changed = dataclasses.replace(coco, targets={"mmdet.datasets.coco:CocoDataset.evaluate": "0" * 12})
    with pytest.raises(SetupError, match=r"^mmdet 2\.28\.2: .*CocoDataset\.evaluate changed .*'coco-warning-filters'"
                       ) as err:
        patches.check([changed])
    assert "\n" not in str(err.value)


def test_a_function_that_is_gone_is_one_line_too() -> None:
    gone = dataclasses.replace(patches.REGISTRY[0], targets={"mmdet.datasets.coco:CocoDataset.no_such_method": "x"})
    with pytest.raises(SetupError, match="no_such_method is gone"):
        patches.check([gone])


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    script = f"import sys; sys.path.insert(0, {str(cwd)!r})\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_importing_the_package_patches_nothing(tmp_path: Path) -> None:
    run = _run("""
        import numpy as np
        import model_hub_mmdet, model_hub_mmdet.mmdet2.trial as _  # the trial applies them; the package does not
    """, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    run = _run("""
        import numpy as np, sys
        import model_hub_mmdet
        from mmdet.datasets import coco
        from mmdet.core.evaluation import recall
        print("ALIASES", "int" in np.__dict__, "RECALL", type(recall.np).__name__, "COCO", coco.warnings.__name__)
    """, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ALIASES False RECALL module COCO warnings" in run.stdout


def test_the_cli_stops_at_start_when_a_patched_function_changed(tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text("name: x\n")
    (tmp_path / "future_mmdet.py").write_text("def evaluate(self, results, **kwargs):\n    return {}\n")
    run = _run("""
        import sys
        from mmdet.datasets import coco
        import future_mmdet  # a future mmdet's different CocoDataset.evaluate
        coco.CocoDataset.evaluate = future_mmdet.evaluate
        from model_hub_mmdet.tools import cli
        sys.exit(cli.main(["print-config", "exp.yaml"]))
    """, tmp_path)
    assert run.returncode == 1, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith("error: mmdet 2.28.2: mmdet.datasets.coco:CocoDataset.evaluate changed"), run.stderr
    assert "Traceback" not in run.stderr
