"""The ``model-hub-mmdet`` command line: every YAML in the repo passes ``check``; errors are one line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import tiny_experiment

from model_hub_mmdet.tools.cli import main

REPO = Path(__file__).resolve().parents[1]
REPO_YAMLS = sorted(
    p.relative_to(REPO)
    for p in [REPO / "maskrcnn.yaml", *REPO.glob("examples/**/*.yaml")]
    # hydra groups are fragments (the composed configs are checked below); mmdet3 files are the 3.x suite's
    if "hydra/conf" not in str(p) and "mmdet3" not in p.name
)


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(REPO)
    return REPO


def test_repo_yamls_were_found() -> None:
    assert Path("maskrcnn.yaml") in REPO_YAMLS and len(REPO_YAMLS) >= 7


@pytest.mark.parametrize("path", REPO_YAMLS, ids=str)
def test_every_repo_experiment_passes_check(path: Path, in_repo: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["check", str(path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{path}: OK" in out and "metrics" in out and "context" in out


@pytest.mark.parametrize("groups", [["data=local"], ["data=s3", "searcher=adaptive"], ["hparams=coco_faster_rcnn"]])
def test_hydra_example_composes_configs_that_pass_check(groups: list[str], in_repo: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DET_MASTER"}
    out = subprocess.run(
        [sys.executable, "examples/hydra/launch.py", *groups], capture_output=True, text=True, env=env, check=True
    ).stdout
    composed = yaml.safe_load(out)
    assert composed["entrypoint"].endswith("python3 -m model_hub_mmdet.run")
    exp = tmp_path / "composed.yaml"
    exp.write_text(out)
    assert main(["check", str(exp), "--context", str(in_repo)]) == 0


def test_check_lists_every_problem(in_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = {
        "hyperparameters": {
            "global_batch_size": 6,
            "config_file": "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py",
            "override_mmdet_config": {"optimizer.lrr.x": 1, "data.train.pipeline.40.img_scale": [1, 2]},
        },
        "resources": {"slots_per_trial": 4},
        "searcher": {"name": "single", "metric": "segm_mAP", "max_length": {"batches": 10}},
        "data": {"file_client_args": {"backend": "ftp"}},
        "entrypoint": "model_hub_mmdet:NoSuchTrial",
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "global_batch_size=6 is not divisible by resources.slots_per_trial=4" in err
    assert "optimizer.lrr does not exist" in err
    assert "index 40 out of range" in err
    assert "'ftp' is not a registered storage backend" in err
    assert "NoSuchTrial is not a PyTorchTrial" in err


def test_check_rejects_a_metric_the_model_cannot_produce(in_repo: Path, tmp_path: Path, capsys) -> None:
    exp = yaml.safe_load((in_repo / "examples/faster_rcnn.yaml").read_text())
    exp["searcher"]["metric"] = "segm_mAP"
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    assert main(["check", str(path), "--context", str(in_repo)]) == 1
    assert "searcher.metric 'segm_mAP' is not produced" in capsys.readouterr().err


def test_check_measures_context_size_with_detignore(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    exp = tiny_experiment(tmp_path / "data")
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    big = tmp_path / "data" / "blob.bin"
    big.parent.mkdir()
    big.write_bytes(os.urandom(1024) * 100 * 1024)  # 100 MiB
    assert main(["check", str(tmp_path / "exp.yaml"), "--context", str(tmp_path)]) == 1
    assert "over Determined's 95 MiB limit" in capsys.readouterr().err
    (tmp_path / ".detignore").write_text("data/\n")
    assert main(["check", str(tmp_path / "exp.yaml"), "--context", str(tmp_path)]) == 0


@pytest.mark.slow
def test_det_local_test_from_a_directory_holding_the_checkpoint_folder(tmp_path: Path, shapes_dir: Path) -> None:
    # Local mode copies the working directory into each checkpoint's code/: the checkpoint folder is left out.
    work = tmp_path / "home"
    (work / "src").mkdir(parents=True)
    (work / "src" / "model.txt").write_text("user code")
    exp = tiny_experiment(shapes_dir, max_batches=1)
    exp["min_validation_period"] = {"batches": 1}
    (work / "exp.yaml").write_text(yaml.safe_dump(exp))
    env = {**os.environ, "XDG_DATA_HOME": str(work / ".local" / "share"), "OMP_NUM_THREADS": "1"}
    det = Path(sys.executable).with_name("det")
    proc = subprocess.run([str(det), "experiment", "create", "--local", "--test", "exp.yaml", "."], cwd=work,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    storage = work / ".local" / "share" / "determined"
    (checkpoint,) = [p for p in storage.iterdir() if p.is_dir()]
    code = checkpoint / "code"
    assert (code / "src" / "model.txt").read_text() == "user code"
    assert (code / ".local" / "share").is_dir() and not (code / ".local" / "share" / "determined").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["check", "missing.yaml"], "missing.yaml: experiment file not found"),
        (["print-config", "missing.yaml"], "experiment file not found"),
        (["export", "/nonexistent/ckpt", "out.pth"], "/nonexistent/ckpt"),
    ],
)
def test_errors_are_one_line_without_traceback(argv: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "model_hub_mmdet.tools.cli", *argv], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    assert message in lines[-1]


def test_invalid_yaml_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("hyperparameters:\n  a: [1, 2\n  b: 3\n")
    assert main(["print-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "broken.yaml" in err and "line" in err and "invalid YAML" in err


def test_print_config_redacts_secrets(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    exp = tiny_experiment(
        tmp_path,
        data={"file_client_args": {"backend": "s3", "bucket_name": "b", "aws_secret_access_key": "hunter2"}},
    )
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    assert main(["print-config", str(tmp_path / "exp.yaml")]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "aws_secret_access_key" in out and "bucket_name='b'" in out


def test_make_shapes_writes_coco_splits(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["make-shapes", str(tmp_path), "--train", "3", "--val", "2", "--size", "48", "--seed", "1"]) == 0
    val = json.loads((tmp_path / "annotations" / "val.json").read_text())
    assert len(val["images"]) == 2 and val["images"][0]["width"] == 48
    assert len(list((tmp_path / "train").glob("*.png"))) == 3


@pytest.mark.parametrize("command", ["check", "train", "print-config", "export", "make-shapes"])
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: model-hub-mmdet" in capsys.readouterr().out


def test_train_requires_local(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "x.yaml"]) == 1
    assert "det experiment create" in capsys.readouterr().err


@pytest.mark.slow
def test_train_local_writes_plots_checkpoint_export_and_resumes(
    shapes_dir: Path, det_local: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="model_hub_mmdet")
    exp = tiny_experiment(shapes_dir, model="mask_rcnn", max_batches=2)
    Path("exp.yaml").write_text(yaml.safe_dump(exp))
    assert main(["train", "exp.yaml", "--local", "--out", "out", "--max-batches", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("curves.png", "predictions.png", "model.pth", "model.py", "metrics.json"):
        assert (Path("out") / name).is_file(), name
    assert list((Path("out") / "tensorboard").glob("events.out.tfevents.*"))
    from PIL import Image

    width, height = Image.open(Path("out") / "predictions.png").size
    assert width > 3 * height  # several images side by side, not one figure resized by mmdet's drawing
    assert "final validation: bbox_mAP=" in out and "segm_mAP=" in out
    assert sum(line.startswith("mmdet model: ") for line in out.splitlines()) == 1
    assert not [r for r in caplog.records if "exported" in r.getMessage()]  # the summary says it, once
    ckpt = next(line.split()[-1] for line in out.splitlines() if line.startswith("checkpoint:"))
    assert main(["train", "exp.yaml", "--local", "--out", "out2", "--resume", ckpt]) == 0
    resumed = json.loads((Path("out2") / "metrics.json").read_text())
    assert resumed["training"][-1]["batches"] == 2


def test_check_reports_a_broken_local_annotation_file_and_bad_images_setting(
    shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    (data / "annotations" / "val.json").write_text("{not json")
    exp = tiny_experiment(data, model="retinanet")
    exp["data"] = {"bad_images": {"max_fraction": 2}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    assert main(["check", str(path), "--context", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{data / 'annotations' / 'val.json'}: not valid JSON" in err
    assert "data.bad_images.max_fraction" in err
