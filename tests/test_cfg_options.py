"""``--cfg-options KEY=VALUE``: parsed as mmcv's DictAction parses them, applied after ``override_mmdet_config``
with its typo suggestions and type coercion, on ``check``, ``print-config`` and ``train`` (the training run is in
``tests/test_init.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.tools.cfg_options import as_option_message, parse_cfg_options, parse_value, with_cfg_options
from model_hub_mmdet.tools.cli import main

FASTER = "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py"


@pytest.mark.parametrize(
    "text, value",
    [("1", 1), ("-2", -2), ("0.5", 0.5), ("1e-4", 1e-4), ("true", True), ("False", False), ("None", None),
     ("none", "none"), ("SGD", "SGD"), ("", ""), ("[1,2]", [1, 2]), ("(1,2)", (1, 2)), ('"(1, 2)"', (1, 2)),
     ("1,2", [1, 2]), ("[]", []), ("()", ()), ("(1,)", (1,)), ("[(1,2),(3,4)]", [(1, 2), (3, 4)]),
     ("[[1,[2,3]],(4,)]", [[1, [2, 3]], (4,)]), ("['a',\"b\"]", ["a", "b"]), ("[1],[2]", [[1], [2]]),
     ("[true,None,x]", [True, None, "x"])],
)
def test_values_are_read_as_mmcv_reads_them(text: str, value: object) -> None:
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_options_keep_order_and_the_last_of_a_repeated_key() -> None:
    assert parse_cfg_options(["a.b=1", "c=x=y", "a.b=2"]) == {"c": "x=y", "a.b": 2}
    assert list(parse_cfg_options(["a.b=1", "c=2", "a.b=3"])) == ["c", "a.b"]


@pytest.mark.parametrize("item, message", [
    ("optimizer.lr", "expected KEY=VALUE"), ("=1", "expected KEY=VALUE"), ("a..b=1", "not a dotted key"),
    ("a=[1,2", "unbalanced brackets"), ("a=(1,2]", "unbalanced brackets"), ("a=1)", "unbalanced brackets"),
])
def test_a_malformed_option_is_one_line_naming_it(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_cfg_options([item])
    assert str(err.value).startswith(f"--cfg-options {item!r}") and "\n" not in str(err.value)


def test_options_are_appended_after_override_mmdet_config() -> None:
    conf = {"hyperparameters": {"override_mmdet_config": {"optimizer.lr": 0.1, "data.workers_per_gpu": 2}}}
    out = with_cfg_options(conf, {"optimizer.lr": 0.2, "lr_config.step": [8, 11]})
    assert list(out["hyperparameters"]["override_mmdet_config"].items()) == [
        ("data.workers_per_gpu", 2), ("optimizer.lr", 0.2), ("lr_config.step", [8, 11])]
    assert conf["hyperparameters"]["override_mmdet_config"]["optimizer.lr"] == 0.1  # the caller's is untouched
    assert with_cfg_options({}, {"a": 1})["hyperparameters"] == {"override_mmdet_config": {"a": 1}}
    with pytest.raises(ConfigError, match="override_mmdet_config to be a mapping"):
        with_cfg_options({"hyperparameters": {"override_mmdet_config": {"type": "const", "val": {}}}}, {"a": 1})
    message = as_option_message("override_mmdet_config.optimzer.lr: x", {"optimzer.lr": 1})
    assert message == "--cfg-options optimzer.lr: x"


@pytest.fixture
def experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "exp.yaml"
    assert main(["init", FASTER, "-o", str(path)]) == 0
    conf = yaml.safe_load(path.read_text())
    conf["hyperparameters"]["override_mmdet_config"] = {"optimizer.lr": 0.5}
    path.write_text(yaml.safe_dump(conf))
    return path


def test_print_config_applies_options_last_with_the_configs_types(experiment: Path, capsys) -> None:
    options = ["optimizer.lr=1", "data.train.pipeline.2.img_scale=[1000,600]", "evaluation.classwise=true",
               "lr_config.step=[7,10]"]
    assert main(["print-config", str(experiment), "--cfg-options", *options]) == 0
    text = capsys.readouterr().out
    assert "lr=1.0," in text  # after the experiment's 0.5, and a float as the config's
    assert "img_scale=(1000, 600)" in text and "classwise=True" in text and "step=[7, 10]" in text


def test_check_names_the_option_with_the_overrides_suggestions(experiment: Path, capsys) -> None:
    assert main(["check", str(experiment), "--cfg-options", "optimzer.lr=1", "data.train.pipeline.40.x=1"]) == 1
    err = capsys.readouterr().err
    assert "--cfg-options optimzer.lr: optimzer does not exist in the config; closest: optimizer" in err
    assert "--cfg-options data.train.pipeline.40.x: index 40 out of range" in err
    assert main(["check", str(experiment), "--cfg-options", "optimizer.lr=0.01"]) == 0


def test_an_option_mmcv_would_create_is_created_and_checked(experiment: Path, capsys, caplog) -> None:
    """``Config.merge_from_dict`` creates missing dicts, so ``check`` and ``print-config`` accept such an option."""
    option = "optimizer.paramwise_cfg.norm_decay_mult=0.0"
    with caplog.at_level("INFO", logger="model_hub_mmdet"):
        assert main(["check", str(experiment), "--cfg-options", option]) == 0
    assert any("optimizer.paramwise_cfg is new" in r.getMessage() for r in caplog.records)
    assert main(["print-config", str(experiment), "--cfg-options", option]) == 0
    assert "paramwise_cfg=dict(norm_decay_mult=0.0)" in capsys.readouterr().out
    assert main(["check", str(experiment), "--cfg-options", "optimizer_confg.grad_clip.max_norm=1"]) == 1
    err = capsys.readouterr().err
    assert ("--cfg-options optimizer_confg.grad_clip.max_norm: optimizer_confg does not exist in the config;"
            " closest: optimizer_config") in err


def test_check_and_print_config_take_a_config_file(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["check", FASTER, "--cfg-options", "optimizer.lr=0.01"]) == 0
    out = capsys.readouterr().out
    assert "global 16, 8 slot(s), 2 per slot" in out and "SGD lr=0.01" in out
    assert main(["print-config", FASTER, "--cfg-options", "optimizer.momentum=0.8"]) == 0
    assert "momentum=0.8" in capsys.readouterr().out
    assert main(["print-config", FASTER, "--cfg-options", "optimizer.lr=[1"]) == 1
    assert capsys.readouterr().err.strip() == "error: --cfg-options 'optimizer.lr=[1': unbalanced brackets in '[1'"


def test_options_shape_the_experiment_of_a_config(tmp_path: Path, monkeypatch, capsys) -> None:
    """As with mmdet's tools/train.py, options that change the schedule or batch change the run's length."""
    monkeypatch.chdir(tmp_path)
    options = ["runner.max_epochs=24", "data.samples_per_gpu=4", "data.train.pipeline.2.img_scale=(1000,600)"]
    assert main(["check", FASTER, "--cfg-options", *options]) == 0
    out = capsys.readouterr().out
    assert "global 32, 8 slot(s), 4 per slot" in out and "max_length 24 epochs" in out
    assert main(["init", FASTER, "-o", "exp.yaml", "--cfg-options", *options]) == 0
    text = (tmp_path / "exp.yaml").read_text()
    assert "runner.max_epochs=24 (--cfg-options)" in text and "data.samples_per_gpu=4 (--cfg-options) x 8" in text
    conf = yaml.safe_load(text)
    assert conf["searcher"]["max_length"] == {"epochs": 24}
    assert conf["hyperparameters"]["override_mmdet_config"]["data.train.pipeline.2.img_scale"] == [1000, 600]
    assert main(["check", "exp.yaml"]) == 0
