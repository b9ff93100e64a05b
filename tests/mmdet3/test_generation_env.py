"""The generation follows the experiment file (MMDetection 3.x side): ``init`` writes
``MODEL_HUB_MMDET_GENERATION=3`` for a 3.x config, every shipped 3.x experiment carries it, and ``check`` refuses
in one line a 3.x experiment that the cluster's ``startup-hook.sh`` would install as 2.x, keeping the user's own
``environment`` entries."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from mm3_helpers import REPO

from model_hub_mmdet.tools.check import check_experiment
from model_hub_mmdet.tools.cli import main
from model_hub_mmdet.tools.generation_env import hook_generation

CONFIG = "rtmdet/rtmdet-ins_s_8xb32-300e_coco.py"
REFUSAL = ("environment.environment_variables: startup-hook.sh would install MMDetection 2.x on the cluster "
           "(MODEL_HUB_MMDET_GENERATION is not set) but the config is an MMDetection 3.x config: add the line "
           "`environment: {environment_variables: [MODEL_HUB_MMDET_GENERATION=3]}` (or that entry to the "
           "environment_variables you have)")
SHIPPED_3X = sorted(str(p.relative_to(REPO)) for p in REPO.glob("examples/**/*_mmdet3.yaml"))


@pytest.fixture
def context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A context directory holding the repository's startup-hook.sh, as uploaded by det experiment create."""
    shutil.copy(REPO / "startup-hook.sh", tmp_path / "startup-hook.sh")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("path", SHIPPED_3X)
def test_every_shipped_3x_experiment_has_the_hook_install_3x(path: str) -> None:
    """The experiment files and the Hydra groups that pick a 3.x config (``# @package experiment``)."""
    conf = yaml.safe_load((REPO / path).read_text())
    if "hyperparameters" in conf or "entrypoint" in conf:
        assert hook_generation(conf) == "3", f"{path} lacks environment_variables: [MODEL_HUB_MMDET_GENERATION=3]"


def test_shipped_files_were_found() -> None:
    assert {"examples/faster_rcnn_mmdet3.yaml", "examples/shapes/shapes_mmdet3.yaml",
            "examples/custom_dataset/custom_dataset_mmdet3.yaml",
            "examples/hydra/conf/hparams/shapes_mask_rcnn_mmdet3.yaml"} <= set(SHIPPED_3X)


def test_init_writes_the_generation_and_check_refuses_it_missing(context: Path, capsys) -> None:
    assert main(["init", CONFIG, "-o", "exp.yaml"]) == 0
    text = (context / "exp.yaml").read_text()
    conf = yaml.safe_load(text)
    assert conf["environment"] == {"environment_variables": ["MODEL_HUB_MMDET_GENERATION=3"]}
    assert "startup-hook.sh installs MMDetection 3.x" in text
    assert check_experiment(context / "exp.yaml", context).problems == []
    # A config given to check directly is checked as init would write it.
    assert main(["check", CONFIG]) == 0

    del conf["environment"]
    (context / "exp.yaml").write_text(yaml.safe_dump(conf))
    capsys.readouterr()
    assert main(["check", "exp.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[1:] == [f"  - {REFUSAL}"], err


def test_the_users_own_environment_entries_are_kept(context: Path, capsys) -> None:
    assert main(["init", CONFIG, "-o", "exp.yaml"]) == 0
    conf = yaml.safe_load((context / "exp.yaml").read_text())
    conf["environment"] = {"image": {"cuda": "determinedai/pytorch-ngc:0.38.1"},
                           "environment_variables": ["NCCL_DEBUG=INFO"]}
    (context / "exp.yaml").write_text(yaml.safe_dump(conf))
    assert check_experiment(context / "exp.yaml", context).problems == [REFUSAL]

    conf["environment"]["environment_variables"].append("MODEL_HUB_MMDET_GENERATION=3")
    (context / "exp.yaml").write_text(yaml.safe_dump(conf))
    assert check_experiment(context / "exp.yaml", context).problems == []
    # --cfg-options rebuild the experiment: its environment (image, variables) goes through untouched.
    capsys.readouterr()
    assert main(["check", "exp.yaml", "--cfg-options", "optim_wrapper.optimizer.lr=0.002"]) == 0, \
        capsys.readouterr().err
    # The mapping form, per kind of slot.
    conf["environment"]["environment_variables"] = {"cuda": ["NCCL_DEBUG=INFO", "MODEL_HUB_MMDET_GENERATION=3"],
                                                    "cpu": ["OMP_NUM_THREADS=1"]}
    (context / "exp.yaml").write_text(yaml.safe_dump(conf))
    assert check_experiment(context / "exp.yaml", context).problems == []


def test_without_the_hook_in_the_context_the_image_decides(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", CONFIG, "-o", "exp.yaml"]) == 0
    conf = yaml.safe_load((tmp_path / "exp.yaml").read_text())
    del conf["environment"]
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(conf))
    assert check_experiment(tmp_path / "exp.yaml", tmp_path).problems == []
