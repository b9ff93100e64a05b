"""Every top-level key of an MMDetection 3.x config is honoured, replaced or refused in one line
(model_hub_mmdet/mmdet3/config/keys.py, printed in docs/configuration.md): each key mmengine's runner reads is in
the table, no bundled zoo config is refused, replaced keys are one INFO line, and what the runner does with
``env_cfg``, a top-level ``data_preprocessor``, ``activation_checkpointing`` and ``efficient_conv_bn_eval`` the
trial does too."""

from __future__ import annotations

import inspect
import logging
import re
import resource
from pathlib import Path

import cv2
import mmdet
import pytest
from mm3_helpers import experiment
from mmengine.config import Config
from mmengine.runner import Runner

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.local import train_local
from model_hub_mmdet.mmdet3.config.keys import KEYS, REFUSED, REPLACED, VARIABLE, account_for_keys, refusals

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
ZOO = Path(mmdet.__file__).parent / ".mim" / "configs"
RTMDET = ZOO / "rtmdet" / "rtmdet_tiny_8xb32-300e_coco.py"


def keys_the_runner_reads() -> set[str]:
    """The config keys mmengine's Runner reads: in from_cfg (``cfg.get('x')``, ``cfg['x']``) and anywhere else
    through ``self.cfg.get('x')``."""
    source = inspect.getsource(Runner)
    from_cfg = inspect.getsource(Runner.from_cfg)
    keys = set(re.findall(r"\bcfg(?:\.get\(|\[)'(\w+)'", from_cfg))
    keys |= set(re.findall(r"self\.cfg\.get\(\s*'(\w+)'", source))
    return keys


def test_every_key_mmengines_runner_reads_is_honoured_replaced_or_refused() -> None:
    keys = keys_the_runner_reads()
    assert {"model", "train_cfg", "env_cfg", "compile", "sync_bn", "activation_checkpointing"} <= keys, keys
    missing = {k for k in keys if KEYS.get(k, (VARIABLE,))[0] == VARIABLE and not k.startswith("test_")}
    assert not missing, missing


def test_no_bundled_zoo_config_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    configs = sorted(p for p in ZOO.rglob("*.py") if "_base_" not in p.parts)
    loaded, outside, refused = 0, set(), {}
    for path in configs:
        try:
            cfg = Config.fromfile(str(path))
        except (ImportError, FileNotFoundError):  # mmpretrain's backbones (not installed), two broken sort bases
            continue
        loaded += 1
        if refusals(cfg):
            refused[str(path.relative_to(ZOO))] = refusals(cfg)
        outside |= {k for k in cfg if k not in KEYS}
    assert loaded > 780
    # Only the semi-supervised soft teacher, whose validation loop scores the teacher and the student.
    assert refused and all(name.startswith("soft_teacher/") for name in refused), refused
    assert all(lines == ["val_cfg.type='TeacherStudentValLoop': validation runs as mmengine's ValLoop (its fp16"
                         " option included); override evaluate_batch in a subclass for another loop"]
               for lines in refused.values())
    # What the table leaves to the INFO line: the configs' own names (GLIP's per-dataset variables, ...).
    assert not outside & keys_the_runner_reads()


def test_the_table_is_in_the_docs() -> None:
    text = DOCS.read_text().split("## Every key of an MMDetection 3.x config", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([A-Za-z0-9_]+)` \| (\w+) \|", text, flags=re.M))
    assert rows == {k: how for k, (how, _) in KEYS.items() if how != VARIABLE}
    for name, (how, _) in KEYS.items():
        if how == VARIABLE:
            assert f"`{name}`" in text, name


def test_replaced_keys_are_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="model_hub_mmdet")
    cfg = Config.fromfile(str(RTMDET))
    cfg.my_own_variable = 3
    account_for_keys(cfg)
    lines = [r.getMessage() for r in caplog.records]
    print("\n".join(lines))
    (replaced,) = [line for line in lines if line.startswith("config keys replaced by Determined: ")]
    for key in ("default_hooks", "log_processor", "visualizer", "vis_backends", "log_level"):
        assert f"{key} -> {KEYS[key][1]}" in replaced and KEYS[key][0] == REPLACED
    assert "resume ->" not in replaced  # resume=False sets nothing
    assert "train_cfg.val_interval -> min_validation_period" in replaced
    assert "train_cfg.dynamic_intervals -> min_validation_period, one period throughout" in replaced
    assert "config variables that neither mmengine's runner nor the trial read: my_own_variable" in lines


@pytest.mark.parametrize("key, value, expected", [
    ("resume", True, "resume=True: Determined resumes from its own checkpoints"),
    ("compile", True, "compile=True: torch.compile is not applied by MMDetTrial"),
    ("model_wrapper_cfg", {"type": "MMFullyShardedDataParallel"},
     "model_wrapper_cfg.type='MMFullyShardedDataParallel': Determined wraps the model"),
    ("val_cfg", {"type": "TeacherStudentValLoop"}, "val_cfg.type='TeacherStudentValLoop': validation runs as"),
])
def test_values_nothing_can_honour_are_refused_in_one_line(key: str, value, expected: str) -> None:
    cfg = Config.fromfile(str(RTMDET))
    cfg[key] = value
    with pytest.raises(ConfigError) as info:
        account_for_keys(cfg)
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)
    assert KEYS[key][0] != VARIABLE and (key != "compile" or KEYS[key][0] == REFUSED)


def test_a_refused_key_stops_the_trial_and_check_in_one_line(shapes_dir: Path, det_local: Path) -> None:
    from model_hub_mmdet.mmdet3.check import trainer_problems

    conf = experiment(shapes_dir, "rtmdet", max_batches=1, overrides={"resume": True})
    with pytest.raises(ConfigError, match=r"^resume=True: Determined resumes"):
        train_local(conf, validation_period=0, checkpoint_period=0)
    assert any(p.startswith("resume=True") for p in trainer_problems(conf, Config(dict(resume=True))))


@pytest.mark.slow
def test_the_trial_applies_what_the_runner_applies(shapes_dir: Path, det_local: Path, tmp_path: Path) -> None:
    """env_cfg (opencv threads, open-files limit), a top-level data_preprocessor the model lacks,
    activation_checkpointing and efficient_conv_bn_eval, as mmengine's runner applies them."""
    from mm3_helpers import MODELS

    from model_hub_mmdet.mmdet3.trial import MMDetTrial

    seen: list = []

    class Recording(MMDetTrial):
        def __init__(self, context):
            super().__init__(context)
            seen.append(self)

    threads = cv2.getNumThreads()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = soft + 1 if hard == resource.RLIM_INFINITY or soft < hard else soft
    cfg = Config.fromfile(MODELS["rtmdet"])
    cfg.model.pop("data_preprocessor")
    cfg.data_preprocessor = dict(type="DetDataPreprocessor", mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0])
    cfg.activation_checkpointing = ["backbone.stage1"]
    cfg.efficient_conv_bn_eval = ["backbone.stem"]
    cfg.env_cfg.mp_cfg.opencv_num_threads = 1
    cfg.env_cfg.resource_limit = wanted
    cfg.dump(str(tmp_path / "rtmdet_runner_keys.py"))
    conf = experiment(shapes_dir, "rtmdet", max_batches=1)
    conf["hyperparameters"]["config_file"] = str(tmp_path / "rtmdet_runner_keys.py")
    try:
        result = train_local(conf, Recording, validation_period=0, checkpoint_period=0)
        assert result.batches_trained == 1
        assert cv2.getNumThreads() == 1
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == wanted
    finally:
        cv2.setNumThreads(threads)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    model = seen[0].detector
    assert model.data_preprocessor.mean.flatten().tolist() == [1.0, 2.0, 3.0]
    # Both features replace the module's forward on the instance, as the runner's functions do.
    assert "forward" in vars(model.backbone.stage1) and "forward" in vars(model.backbone.stem)
    assert "forward" not in vars(model.backbone.stage2)
