"""Rule 1: where ``config_file`` is found, ``_base_`` inheritance, and the one-line errors of loading."""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path

import pytest
from cfgtest_utils import FASTER_RCNN, MASK_RCNN

from model_hub_mmdet.errors import ConfigError, UserError
from model_hub_mmdet.mmdet2.config import build_mmdet_config, bundled_config_dir, load_config, resolve_config_path

MARKER = "marker = '{}'\n_base_ = '{}'\n"


def _shadow(dir_: Path, marker: str) -> Path:
    """A config at ``dir_/FASTER_RCNN`` that inherits the bundled one and says where it lives."""
    path = dir_ / FASTER_RCNN
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(MARKER.format(marker, bundled_config_dir() / FASTER_RCNN))
    return path


def test_bundled_configs_ship_inside_mmdet() -> None:
    import mmdet

    bundled = bundled_config_dir()
    assert bundled == Path(mmdet.__file__).resolve().parent / ".mim" / "configs"
    assert (bundled / FASTER_RCNN).is_file()
    assert (bundled / "_base_" / "models" / "faster_rcnn_r50_fpn.py").is_file()


def test_bundled_relative_path_loads_with_base_inheritance(tmp_path: Path) -> None:
    cfg = build_mmdet_config({"config_file": FASTER_RCNN}, context_dir=tmp_path)
    assert Path(cfg.filename) == bundled_config_dir() / FASTER_RCNN
    # Each of these comes from a different _base_ file.
    assert cfg.model.type == "FasterRCNN"  # _base_/models
    assert cfg.data.train.type == "CocoDataset"  # _base_/datasets
    assert cfg.optimizer.lr == 0.02 and cfg.lr_config.step == [8, 11]  # _base_/schedules
    assert cfg.log_config.interval == 50  # _base_/default_runtime.py


def test_search_order_absolute_context_env_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, env = tmp_path / "ctx", tmp_path / "env"
    in_ctx, in_env = _shadow(ctx, "context"), _shadow(env, "env")
    monkeypatch.setenv("MMDETECTION_CONFIG_DIR", str(env))

    assert resolve_config_path(FASTER_RCNN, ctx) == in_ctx.resolve()
    assert load_config(resolve_config_path(FASTER_RCNN, ctx)).marker == "context"
    assert resolve_config_path(str(in_env), ctx) == in_env  # absolute wins over everything
    in_ctx.unlink()
    assert resolve_config_path(FASTER_RCNN, ctx) == in_env.resolve()
    monkeypatch.delenv("MMDETECTION_CONFIG_DIR")
    assert resolve_config_path(FASTER_RCNN, ctx) == bundled_config_dir() / FASTER_RCNN


def test_user_config_in_context_inherits_a_sibling(write_config, tmp_path: Path) -> None:
    write_config("configs/base.py", "optimizer = dict(type='SGD', lr=0.1, momentum=0.9)\nx = [1, 2]\n")
    write_config("configs/child.py", "_base_ = './base.py'\noptimizer = dict(lr=0.5)\n")
    cfg = build_mmdet_config({"config_file": "configs/child.py"}, context_dir=tmp_path)
    assert cfg.optimizer.to_dict() == {"type": "SGD", "lr": 0.5, "momentum": 0.9}
    assert cfg.x == [1, 2]


def test_seed_style_docker_path_falls_back_to_bundled_copy(caplog: pytest.LogCaptureFixture) -> None:
    seed = "/mmdetection/configs/" + MASK_RCNN
    if Path(seed).exists():
        pytest.skip("this machine has /mmdetection: the fallback is not needed")
    with caplog.at_level(logging.INFO, logger="model_hub_mmdet"):
        found = resolve_config_path(seed)
    assert found == bundled_config_dir() / MASK_RCNN
    assert any(seed in r.getMessage() and "bundled" in r.getMessage() for r in caplog.records)
    assert load_config(found).model.type == "MaskRCNN"


def test_missing_config_names_the_key_the_places_and_close_matches(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_config_path("faster_rcnn/faster_rcnn_r50_fpn_1x_cooc.py", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("hyperparameters.config_file: faster_rcnn/faster_rcnn_r50_fpn_1x_cooc.py not found")
    assert str(tmp_path) in msg and str(bundled_config_dir()) in msg
    assert "did you mean faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py" in msg


def test_missing_absolute_path_without_configs_segment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config_file: .*nothere\.py not found"):
        resolve_config_path(str(tmp_path / "nothere.py"), tmp_path)


def test_missing_merge_config_is_named_as_merge_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^hyperparameters\.merge_config: nope\.py not found"):
        build_mmdet_config({"config_file": FASTER_RCNN, "merge_config": "nope.py"}, context_dir=tmp_path)


@pytest.mark.parametrize(
    "hparams, message",
    [
        ({}, r"hyperparameters\.config_file is required"),
        ({"config_file": 3}, r"hyperparameters\.config_file must be a path .* got 3"),
        ({"config_file": "  "}, r"hyperparameters\.config_file must be a path"),
        (["config_file"], r"hyperparameters must be a mapping, got list"),
    ],
)
def test_bad_hyperparameters(hparams, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_mmdet_config(hparams)


def test_config_error_is_a_user_error() -> None:
    with pytest.raises(UserError):
        build_mmdet_config({})


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad_syntax.py", "a = 1\nb = dict(\nc = 3\n", r"bad_syntax\.py: syntax error at line \d+: "),
        ("missing_base.py", "_base_ = './not_there.py'\n", r"missing_base\.py: .*not_there\.py.*fix the _base_ path"),
        (
            "bad_import.py",
            "custom_imports = dict(imports=['no_such_module_xyz'], allow_failed_imports=False)\n",
            r"bad_import\.py: custom_imports cannot import no_such_module_xyz .*pip install",
        ),
        ("raises.py", "a = undefined_name + 1\n", r"raises\.py: cannot be loaded: NameError: .*undefined_name"),
        ("notes.txt", "a = 1\n", r"notes\.txt: Only py/yml/yaml/json .*use an MMDetection \.py config"),
    ],
)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # mmcv's temp file, collected below
def test_load_errors_are_one_line_and_name_the_file(write_config, tmp_path, name, text, message) -> None:
    write_config(name, text)
    path_before = list(sys.path)
    with pytest.raises(ConfigError, match=message) as err:
        build_mmdet_config({"config_file": name}, context_dir=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"config_file {tmp_path / name}")
    context = str(tmp_path.resolve())  # build_mmdet_config makes the context importable, as Determined does
    assert [p for p in sys.path if p != context] == [p for p in path_before if p != context]  # mmcv's temp dir: gone
    del err
    gc.collect()  # mmcv's NamedTemporaryFile outlives its directory; let its close warning happen here


def test_syntax_error_in_a_base_file_is_a_config_error(write_config, tmp_path) -> None:
    write_config("base.py", "a = (\n")
    write_config("child.py", "_base_ = './base.py'\n")
    with pytest.raises(ConfigError, match=r"child\.py: syntax error at line 1 \(in its _base_ .*base\.py\)"):
        build_mmdet_config({"config_file": "child.py"}, context_dir=tmp_path)


def test_allowed_failed_custom_import_only_warns(write_config, tmp_path, caplog) -> None:
    write_config("ok.py", "custom_imports = dict(imports=['no_such_module_xyz'], allow_failed_imports=True)\na = 1\n")
    with caplog.at_level(logging.WARNING, logger="model_hub_mmdet"):
        cfg = build_mmdet_config({"config_file": "ok.py"}, context_dir=tmp_path)
    assert cfg.a == 1
    assert any("no_such_module_xyz" in r.getMessage() for r in caplog.records)


def test_custom_imports_that_exist_are_imported(write_config, tmp_path, monkeypatch) -> None:
    write_config("mypkg_cfgtest/__init__.py", "IMPORTED = True\n")
    write_config("imports.py", "custom_imports = dict(imports=['mypkg_cfgtest'])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    build_mmdet_config({"config_file": "imports.py"}, context_dir=tmp_path)
    import sys

    assert sys.modules["mypkg_cfgtest"].IMPORTED is True
