"""Every command in README.md and docs/*.md runs, in a copy of the repository (training commands shortened to
one batch).

Commands run in reading order: README.md first, then the pages of docs/ by name; a command that appears twice
runs once. Placeholders are filled in: ``CHECKPOINT_DIR_OR_UUID`` is the newest checkpoint an earlier command
wrote. Skipped on purpose, each for a stated reason: ``make ...`` (CI runs ``make test`` itself, ``make demo`` is
the same ``train`` command as below at full length, ``make install`` is what made this environment),
``det experiment create`` (needs a Determined master), ``source .venv/bin/activate`` (a shell builtin).

The text itself is checked too: the README fits on one screen, every relative link resolves, and no measured
figure (a duration, a speed-up) is quoted outside bench/RESULTS.md.
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
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TEXTS = {page.relative_to(REPO).as_posix(): page.read_text() for page in PAGES}
SKIP = ("make ", "det experiment create", "source ")
README_MAX_LINES = 70


def _blocks(lang: str) -> list[tuple[str, str]]:
    """(page, block) for every ```lang block of the README and docs/, in reading order."""
    return [
        (name, block)
        for name, text in TEXTS.items()
        for block in re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)
    ]


def _commands() -> list[str]:
    commands: list[str] = []
    for _, block in _blocks("bash"):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith(SKIP) and command not in commands:
                commands.append(command)
    return commands


def _shorten(command: str) -> str:
    """One batch instead of the full schedule; validation is still run."""
    if " train " in f" {command} " or " model_hub_mmdet.run " in f" {command} ":
        command = re.sub(r"--max-batches \d+", "", command) + " --max-batches 1"
    return re.sub(r"max_batches=\d+", "max_batches=1", command)


def _cli_module(repo: Path) -> str:
    """The module behind the ``model-hub-mmdet`` console script (it moved into ``tools/``)."""
    for module in ("model_hub_mmdet.tools.cli", "model_hub_mmdet.cli"):
        if (repo / (module.replace(".", "/") + ".py")).exists():
            return module
    raise AssertionError("no model_hub_mmdet CLI module in the repository copy")


def test_readme_has_the_expected_commands() -> None:
    commands = _commands()
    assert any(c.startswith("model-hub-mmdet train examples/shapes/shapes.yaml --local") for c in commands)
    assert any("check maskrcnn.yaml" in c for c in commands)
    assert "make demo" in README and "make test" in README


def test_readme_fits_on_one_screen() -> None:
    lines = README.splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move reference text into docs/"
    for command in ("make demo", "make test", "model-hub-mmdet make-shapes data/shapes",
                    "model-hub-mmdet train examples/shapes/shapes.yaml --local",
                    "model-hub-mmdet check maskrcnn.yaml", "det experiment create -f maskrcnn.yaml ."):
        assert command in README, command


def _anchor(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_links_resolve() -> None:
    """Every relative link of the README and docs/ names a file that exists (and a heading, with #anchor)."""
    broken = []
    for name, text in TEXTS.items():
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            path, _, anchor = target.partition("#")
            page = (REPO / name).parent / path if path else REPO / name
            if not page.exists():
                broken.append(f"{name}: {target} (no such file)")
            elif anchor and page.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S), re.M)
                if anchor not in {_anchor(h) for h in headings}:
                    broken.append(f"{name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_docs_index_lists_every_page() -> None:
    index = TEXTS["docs/README.md"]
    missing = [p.name for p in PAGES[1:] if p.name != "README.md" and f"({p.name})" not in index]
    assert not missing, f"docs/README.md does not link {missing}"
    assert "docs/README.md" in README


# A duration ("3 s", "8 min 16 s", "2.1 ms") or a speed-up ("8.7x"): measured figures belong in bench/RESULTS.md.
FIGURE = re.compile(
    r"\b\d+(?:\.\d+)?\s?(?:ms|s|secs?|seconds?|mins?|minutes?|hours?)\b|\b\d+(?:\.\d+)?x\b"
    r"|\b\d+(?:\.\d+)?\s?(?:batches|samples|images)(?: a second|/s)\b"
)


def test_no_measured_figures_outside_bench() -> None:
    found = [f"{name}: {m.group(0)!r}" for name, text in TEXTS.items() for m in FIGURE.finditer(text)]
    assert not found, "figures belong in bench/RESULTS.md (link there instead):\n" + "\n".join(found)


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
            [sys.executable, "-m", _cli_module(repo_copy), "make-shapes", "data/shapes", "--train", "16", "--val", "4"],
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
    for name, block in _blocks("python"):
        exec(compile(block, name, "exec"), {})
