"""The generation follows the experiment file (MMDetection 2.x side): ``startup-hook.sh`` installs 2.x unless the
experiment sets ``MODEL_HUB_MMDET_GENERATION=3``, and ``check`` refuses a 2.x config sent with that setting."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from model_hub_mmdet.tools.check import check_experiment
from model_hub_mmdet.tools.cli import main
from model_hub_mmdet.tools.generation_env import hook_generation, hook_installs_generations

REPO = Path(__file__).resolve().parents[1]
CONFIG = "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py"
GEN3_LINE = ("environment.environment_variables: startup-hook.sh would install MMDetection 3.x on the cluster (it "
             "sets MODEL_HUB_MMDET_GENERATION=3) but the config is an MMDetection 2.x config: replace "
             "MODEL_HUB_MMDET_GENERATION=3 with MODEL_HUB_MMDET_GENERATION=2 in environment.environment_variables")


@pytest.fixture
def context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A context directory holding the repository's startup-hook.sh, as uploaded by det experiment create."""
    shutil.copy(REPO / "startup-hook.sh", tmp_path / "startup-hook.sh")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("environment, slots, expected", [
    (None, 1, None),
    ({"image": "x"}, 1, None),
    ({"environment_variables": ["A=1", "MODEL_HUB_MMDET_GENERATION=3"]}, 1, "3"),
    ({"environment_variables": ["MODEL_HUB_MMDET_GENERATION=3", "MODEL_HUB_MMDET_GENERATION = 2"]}, 1, "2"),
    ({"environment_variables": {"cuda": ["MODEL_HUB_MMDET_GENERATION=3"], "cpu": []}}, 8, "3"),
    ({"environment_variables": {"gpu": ["MODEL_HUB_MMDET_GENERATION=3"]}}, 8, "3"),
    ({"environment_variables": {"cuda": ["MODEL_HUB_MMDET_GENERATION=3"]}}, 0, None),  # a CPU task gets cpu's
    ({"environment_variables": ["MODEL_HUB_MMDET_GENERATION_X=3"]}, 1, None),
])
def test_the_generation_a_task_gets(environment: dict | None, slots: int, expected: str | None) -> None:
    conf = {"resources": {"slots_per_trial": slots}, **({"environment": environment} if environment else {})}
    assert hook_generation(conf) == expected


def test_the_shipped_hook_picks_the_generation_by_the_variable(tmp_path: Path) -> None:
    assert hook_installs_generations(REPO)
    assert not hook_installs_generations(tmp_path)  # no hook in the context: the image decides, nothing to check


def test_every_shipped_2x_experiment_installs_2x() -> None:
    shipped = [p for p in [REPO / "maskrcnn.yaml", *REPO.glob("examples/**/*.yaml")]
               if "mmdet3" not in p.name and "hydra" not in p.parts]
    assert len(shipped) >= 6
    for path in shipped:
        assert hook_generation(yaml.safe_load(path.read_text())) in (None, "2"), path


def test_init_of_a_2x_config_writes_no_environment_and_passes_check(context: Path) -> None:
    assert main(["init", CONFIG, "-o", "exp.yaml"]) == 0
    conf = yaml.safe_load((context / "exp.yaml").read_text())
    assert "environment" not in conf
    assert check_experiment(context / "exp.yaml", context).problems == []


def test_check_refuses_a_2x_config_that_the_hook_would_install_as_3x(context: Path, capsys) -> None:
    assert main(["init", CONFIG, "-o", "exp.yaml"]) == 0
    conf = yaml.safe_load((context / "exp.yaml").read_text())
    conf["environment"] = {"image": "determinedai/pytorch-ngc:0.38.1",
                           "environment_variables": ["OMP_NUM_THREADS=2", "MODEL_HUB_MMDET_GENERATION=3"]}
    (context / "exp.yaml").write_text(yaml.safe_dump(conf))
    capsys.readouterr()
    assert main(["check", "exp.yaml"]) == 1
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "MODEL_HUB_MMDET_GENERATION" in line] == [f"  - {GEN3_LINE}"]
    # Setting it to 2 (the user's other entries kept) passes.
    conf["environment"]["environment_variables"][1] = "MODEL_HUB_MMDET_GENERATION=2"
    (context / "exp.yaml").write_text(yaml.safe_dump(conf))
    assert check_experiment(context / "exp.yaml", context).problems == []


def test_a_value_the_hook_rejects_is_refused(context: Path) -> None:
    assert main(["init", CONFIG, "-o", "exp.yaml"]) == 0
    conf = yaml.safe_load((context / "exp.yaml").read_text())
    conf["environment"] = {"environment_variables": {"cuda": ["MODEL_HUB_MMDET_GENERATION=two"]}}
    (context / "exp.yaml").write_text(yaml.safe_dump(conf))
    problems = check_experiment(context / "exp.yaml", context).problems
    assert problems == ["environment.environment_variables: MODEL_HUB_MMDET_GENERATION=two: startup-hook.sh "
                        "installs MMDetection 2 or 3; set MODEL_HUB_MMDET_GENERATION=2 for this MMDetection 2.x "
                        "config"]
