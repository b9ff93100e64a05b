"""Every top-level key of every bundled mmdet 2.28 config is in the table of how the trial treats it
(model_hub_mmdet/mmdet2/config/keys.py, printed in docs/configuration.md); replaced keys are one INFO line,
values nothing can honour one error line."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from mmcv import Config

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.mmdet2.config import bundled_config_dir
from model_hub_mmdet.mmdet2.config.keys import KEYS, REPLACED, account_for_keys

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_top_level_key_of_every_bundled_config_is_in_the_table() -> None:
    root = bundled_config_dir()
    configs = sorted(p for p in root.rglob("*.py") if "_base_" not in p.parts)
    assert len(configs) > 600
    missing: dict[str, str] = {}
    loaded = 0
    for path in configs:
        try:
            cfg = Config.fromfile(str(path))
        except ImportError:  # the ConvNeXt configs import mmcls (custom_imports), not installed here
            continue
        loaded += 1
        for key in cfg:
            if key not in KEYS:
                missing.setdefault(key, str(path.relative_to(root)))
    assert loaded > 600 and not missing, missing


def test_the_table_is_in_the_docs() -> None:
    text = DOCS.read_text().split("## Every key of an MMDetection 2.x config", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([A-Za-z0-9_]+)` \| (\w+) \|", text, flags=re.M))
    assert rows == {k: how for k, (how, _) in KEYS.items() if how != "variable"}
    for name, (how, _) in KEYS.items():
        if how == "variable":
            assert f"`{name}`" in text, name


def test_replaced_keys_are_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="model_hub_mmdet")
    cfg = Config.fromfile(str(bundled_config_dir() / "yolox" / "yolox_tiny_8x8_300e_coco.py"))
    cfg.my_own_variable = 3
    account_for_keys(cfg)
    lines = [r.getMessage() for r in caplog.records]
    print("\n".join(lines))
    (replaced,) = [line for line in lines if line.startswith("config keys replaced by Determined: ")]
    for key in ("runner", "workflow", "checkpoint_config", "log_config", "evaluation", "dist_params", "log_level"):
        assert f"{key} -> {KEYS[key][1]}" in replaced and KEYS[key][0] == REPLACED
    assert "config variables that neither mmdet's tools nor the trial read: my_own_variable" in lines


@pytest.mark.parametrize("key, value, expected", [
    ("resume_from", "work_dirs/epoch_12.pth", "resume_from='work_dirs/epoch_12.pth': Determined resumes from its own"),
    ("workflow", [("train", 1), ("val", 1)], "workflow=[('train', 1), ('val', 1)]: Determined's loop trains"),
])
def test_values_nothing_can_honour_are_refused_in_one_line(key: str, value, expected: str) -> None:
    cfg = Config.fromfile(str(bundled_config_dir() / "retinanet" / "retinanet_r50_fpn_1x_coco.py"))
    cfg[key] = value
    with pytest.raises(ConfigError) as info:
        account_for_keys(cfg)
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)
