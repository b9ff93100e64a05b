"""scripts/install.sh refuses a cold install on a disk too full for it, in one line, before pip starts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("python3.11") is None, reason="install.sh needs python3.11")
def test_a_cold_install_without_the_space_stops_before_pip(tmp_path: Path) -> None:
    venv = tmp_path / "env"
    env = {**os.environ, "VENV": str(venv), "MMDET": "3", "MODEL_HUB_MMDET_NEED_GIB": "1000000"}
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "install.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("install.sh: error:")]
    assert len(errors) == 1, result.stderr
    assert f"GiB free for the environment (VENV) ({venv}); a cold install needs about 1000000 GiB" in errors[0]
    # Nothing was installed: the new environment holds pip alone.
    site = next(venv.glob("lib/python*/site-packages"))
    assert not any(site.glob("torch*")), sorted(p.name for p in site.iterdir())
