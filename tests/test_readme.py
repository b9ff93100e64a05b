"""Every command in README.md runs, in a copy of the repository (training commands shortened to one batch).

Placeholders are filled in: ``CHECKPOINT_DIR_OR_UUID`` is the newest checkpoint an earlier README command wrote.
Skipped on purpose, each for a stated reason: ``make demo``/``make test`` (CI runs ``make test`` itself and
``make demo`` is the same ``train`` command as below at full length), ``det experiment create`` (needs a
Determined master), ``source .venv/bin/activate`` (a shell builtin).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
SKIP = ("make ", "det experiment create", "source ")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _commands() -> list[str]:
    commands = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith(SKIP):
                commands.append(command)
    return commands


def _shorten(command: str) -> str:
    """One batch instead of the full schedule; validation is still run."""
    if " train " in f" {command} " or " model_hub_mmdet.run " in f" {command} ":
        command = re.sub(r"--max-batches \d+", "", command) + " --max-batches 1"
    return re.sub(r"max_batches=\d+", "max_batches=1", command)


def test_readme_has_the_expected_commands() -> None:
    commands = _commands()
    assert any(c.startswith("model-hub-mmdet train examples/shapes/shapes.yaml --local") for c in commands)
    assert any("check maskrcnn.yaml" in c for c in commands)
    assert "make demo" in README and "make test" in README


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tracked files of the repository (plus uncommitted edits), without .venv, data or runs."""
    dest = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for rel in files.splitlines():
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.mark.slow
@pytest.mark.parametrize("command", _commands(), ids=lambda c: c[:60])
def test_readme_command_runs(command: str, repo_copy: Path, tmp_path: Path) -> None:
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        XDG_DATA_HOME=str(repo_copy.parent / "xdg"),
        OMP_NUM_THREADS="1",
        INTER_TRAIN_PROCESS_COMM_PORT_1=str(free_port()),
        INTER_TRAIN_PROCESS_COMM_PORT_2=str(free_port()),
    )
    env.pop("DET_MASTER", None)
    if not (repo_copy / "data" / "shapes" / "annotations" / "val.json").exists():
        subprocess.run(
            [sys.executable, "-m", "model_hub_mmdet.cli", "make-shapes", "data/shapes", "--train", "16", "--val", "4"],
            cwd=repo_copy, env=env, check=True, capture_output=True,
        )
    if "CHECKPOINT_DIR_OR_UUID" in command:
        checkpoints = sorted((repo_copy.parent / "xdg" / "determined").iterdir(), key=lambda p: p.stat().st_mtime)
        command = command.replace("CHECKPOINT_DIR_OR_UUID", checkpoints[-1].name)  # a UUID
    proc = subprocess.run(
        re.sub(r"^python3? ", f"{sys.executable} ", _shorten(command)),
        shell=True, cwd=repo_copy, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


def test_readme_python_snippets_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    for block in _blocks("python"):
        exec(compile(block, "README.md", "exec"), {})
