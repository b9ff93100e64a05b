"""Coming from Determined's model hub: old experiment files (written here as its README and examples described
them) get a one-line migration message, and ``migrate`` rewrites them, keeping comments and key order, into files
that pass Determined's schema and ``check``."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.experiment_schema import schema_problems
from model_hub_mmdet.tools.cli import main
from model_hub_mmdet.tools.migrate import (
    NEW_ENTRYPOINT,
    legacy_entrypoint_message,
    legacy_warnings,
    migrate,
    migrate_file,
)

FIXTURE = Path(__file__).parent / "fixtures" / "model_hub_maskrcnn.yaml"
OLD_ENTRYPOINT = "python3 -m determined.launch.torch_distributed --trial model_hub.mmdetection:MMDetTrial"
OLD_IMAGE = "determinedai/model-hub-mmdetection:0.26.2-dev0"


def old_experiment(
    name: str,
    config_file: str,
    data: str,
    metric: str = "bbox_mAP",
    overrides: str = "",
    entrypoint: str = OLD_ENTRYPOINT,
    searcher_extra: str = "",
) -> str:
    """An experiment file as the model hub's users wrote them (its example layout, comments and all)."""
    return f"""\
name: {name}
data:
  file_client_args:
{data}
      ##### Other backends #####
      #backend: s3
      #backend: fake
##### You can enable profiling with below #####
profiling:
  enabled: true
  begin_on_batch: 200
  end_after_batch: 300
hyperparameters:
  global_batch_size: 16
  config_file: {config_file}
  merge_config: null # You can specify a config you want to merge into the config_file above.
  use_pretrained: false # Whether to load pretrained weights for config if available.
  override_mmdet_config:
    ##### Learn more about mmdet configs #####
    optimizer_config._delete_: true
    optimizer_config.grad_clip.max_norm: 100
    optimizer_config.grad_clip.norm_type: 2
{overrides}    #fp16.loss_scale: 512. # can be float or dict of named args for torch.cuda.amp.GradScaler

checkpoint_storage:
  save_trial_latest: 5
min_validation_period:
  batches: 7330
searcher:
  name: single
  metric: {metric}
  max_length:
    batches: 87960
  smaller_is_better: false
{searcher_extra}max_restarts: 5
environment:
  image:
    gpu: {OLD_IMAGE}
  environment_variables:
    - OMP_NUM_THREADS=1 # Following pytorch dtrain, this environment variable is set to 1.

resources:
  slots_per_trial: 8 # max number of GPUs a trial is allowed to individually use
  shm_size: 200000000000
entrypoint: {entrypoint}
"""


GCS = "      backend: gcs\n      bucket_name: determined-ai-mmdet-data"
S3 = "      backend: s3\n      bucket_name: determined-ai-coco-dataset"
DISK = "      backend: disk # assumes data available at /run/determined/workdir/data in the container"
FAKE = "      backend: fake"
LOG_LR = "    optimizer.lr:\n      type: log\n      base: 10\n      minval: -3\n      maxval: -1\n"
LOCAL_ANNS = ("    data.train.ann_file: /tmp/instances_train2017.json\n"
              "    data.val.ann_file: /tmp/instances_val2017.json\n")

OLD_FILES = {
    "mask_rcnn_gcs": old_experiment(
        "mmdet_maskrcnn", "/mmdetection/configs/mask_rcnn/mask_rcnn_r50_caffe_fpn_poly_1x_coco_v1.py", GCS),
    "faster_rcnn_s3_local_annotations": old_experiment(
        "mmdet_fasterrcnn", "/mmdetection/configs/faster_rcnn/faster_rcnn_r50_caffe_fpn_1x_coco.py", S3,
        overrides=LOCAL_ANNS),
    "panoptic_disk": old_experiment(
        "mmdet_panoptic_fpn", "/mmdetection/configs/panoptic_fpn/panoptic_fpn_r50_fpn_1x_coco.py", DISK, metric="PQ"),
    "yolov3_fake_log_lr": old_experiment(
        "mmdet_yolov3", "/mmdetection/configs/yolo/yolov3_d53_mstrain-608_273e_coco.py", FAKE, overrides=LOG_LR),
    "mask_rcnn_bare_entrypoint": old_experiment(
        "mmdet_fake_distributed", "/mmdetection/configs/mask_rcnn/mask_rcnn_r50_fpn_poly_1x_coco.py", FAKE,
        entrypoint="model_hub.mmdetection:MMDetTrial"),
}


def _comments(text: str) -> list[str]:
    """Every comment of a YAML text, in order, without the whitespace around it."""
    return [line[line.index("#"):].strip() for line in text.splitlines() if "#" in line]


def _top_keys(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^(\w+):", text, flags=re.M)]


@pytest.mark.parametrize("spec", [
    OLD_ENTRYPOINT,
    "model_hub.mmdetection:MMDetTrial",
    ["python3", "-m", "determined.launch.torch_distributed", "--trial", "model_hub.mmdetection:MMDetTrial"],
    "python3 -m determined.launch.torch_distributed --trial model_hub.mmdetection._trial:MMDetTrial",
])
def test_legacy_entrypoint_message_names_what_replaces_it(spec: object) -> None:
    message = legacy_entrypoint_message(spec)
    assert message is not None and "\n" not in message
    assert message.startswith("entrypoint model_hub.mmdetection")
    for needed in ("python3 -m model_hub_mmdet.run", "model_hub_mmdet:MMDetTrial", "startup-hook.sh",
                   "Cluster set-up", "model-hub-mmdet migrate FILE -o NEW.yaml"):
        assert needed in message


@pytest.mark.parametrize("spec", [
    "model_hub_mmdet:MMDetTrial", NEW_ENTRYPOINT, "examples.subclass.trial:FrozenBackboneTrial",
    "my_model_hub.mmdetection_plus:Trial", None, [],
])
def test_legacy_entrypoint_message_leaves_other_entrypoints_alone(spec: object) -> None:
    assert legacy_entrypoint_message(spec) is None


@pytest.mark.parametrize("name", OLD_FILES)
def test_migrate_rewrites_old_files_into_conforming_ones(name: str) -> None:
    old = OLD_FILES[name]
    assert legacy_entrypoint_message(yaml.safe_load(old)["entrypoint"]) is not None
    new, changes = migrate(old)
    conf = yaml.safe_load(new)

    assert schema_problems(conf) == []
    assert legacy_warnings(conf) == []
    assert legacy_entrypoint_message(conf["entrypoint"]) is None
    assert conf["entrypoint"] == NEW_ENTRYPOINT
    assert changes[0].startswith("entrypoint: ") and changes[0].endswith(f" -> {NEW_ENTRYPOINT}")
    assert any(c.startswith("environment.image: removed " + OLD_IMAGE) for c in changes)
    assert any(c.startswith("hyperparameters.config_file: /mmdetection/configs/") for c in changes)

    # Comments and key order are kept; the removed image is explained in a comment of its own.
    old_comments = _comments(old)
    assert [c for c in _comments(new) if "migrate" not in c] == old_comments
    assert any("removed by model-hub-mmdet migrate" in c for c in _comments(new))
    assert _top_keys(new) == _top_keys(old)
    assert new.index("merge_config: null") > 0  # nulls stay written as null

    # Everything else is unchanged.
    expected = yaml.safe_load(old)
    expected["entrypoint"] = NEW_ENTRYPOINT
    del expected["environment"]["image"]
    expected["hyperparameters"]["config_file"] = expected["hyperparameters"]["config_file"].replace(
        "/mmdetection/configs/", "")
    if name == "faster_rcnn_s3_local_annotations":
        for split in ("train", "val"):
            expected["hyperparameters"]["override_mmdet_config"][f"data.{split}.file_client_args"] = {
                "backend": "disk"}
        assert sum("{backend: disk} added" in c for c in changes) == 2
    assert conf == expected
    assert len(changes) == (5 if name == "faster_rcnn_s3_local_annotations" else 3)

    assert migrate(new) == (new, [])  # idempotent


def test_migrate_keeps_a_log_scale_spec_inside_override_mmdet_config() -> None:
    new, _ = migrate(OLD_FILES["yolov3_fake_log_lr"])
    spec = yaml.safe_load(new)["hyperparameters"]["override_mmdet_config"]["optimizer.lr"]
    assert spec == {"type": "log", "base": 10, "minval": -3, "maxval": -1}
    assert "    optimizer.lr:\n      type: log\n      base: 10\n" in new


def test_migrate_places_local_annotation_overrides_next_to_their_ann_file() -> None:
    new, _ = migrate(OLD_FILES["faster_rcnn_s3_local_annotations"])
    assert ("    data.train.ann_file: /tmp/instances_train2017.json\n"
            "    data.train.file_client_args: {backend: disk}\n") in new


def test_migrate_gives_asha_searchers_a_time_metric() -> None:
    old = old_experiment("asha", "mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py", GCS, overrides=LOG_LR,
                         searcher_extra="").replace("name: single", "name: adaptive_asha\n  max_trials: 16")
    assert any(p.startswith("searcher: the adaptive_asha searcher of Determined 0.38")
               for p in schema_problems(yaml.safe_load(old)))
    new, changes = migrate(old)
    searcher = yaml.safe_load(new)["searcher"]
    assert (searcher["time_metric"], searcher["max_time"]) == ("batches", 87960)
    assert searcher["max_length"] == {"batches": 87960}
    assert any(c.startswith("searcher: time_metric: batches and max_time: 87960 added") for c in changes)
    assert schema_problems(yaml.safe_load(new)) == []


@pytest.mark.parametrize("length, expected", [
    ("max_length: {epochs: 12}", ("epochs", 12)),
    ("max_length: 5000", ("batches", 5000)),
    ("max_length: {records: 1600}", ("batches", 100)),  # records / global_batch_size, as Determined converts
])
def test_asha_time_metric_follows_the_length_unit(length: str, expected: tuple[str, int]) -> None:
    text = ("hyperparameters: {global_batch_size: 16, config_file: x.py}\n"
            f"searcher:\n  name: async_halving\n  metric: m\n  num_rungs: 3\n  max_trials: 4\n  {length}\n")
    searcher = yaml.safe_load(migrate(text)[0])["searcher"]
    assert (searcher["time_metric"], searcher["max_time"]) == expected


def test_a_current_file_is_returned_unchanged() -> None:
    text = (Path(__file__).resolve().parents[1] / "maskrcnn.yaml").read_text()
    assert migrate(text) == (text, [])


def test_image_as_a_string_and_as_the_only_environment_key() -> None:
    old = f"name: x  # the name\nenvironment:\n  image: {OLD_IMAGE}\nsearcher: {{name: single, metric: m}}\n"
    new, changes = migrate(old)
    assert "environment" not in yaml.safe_load(new)
    assert _top_keys(new) == ["name", "searcher"]
    assert "# the name" in new and "removed by model-hub-mmdet migrate" in new
    assert changes == [f"environment.image: removed {OLD_IMAGE} (the task image needs model_hub_mmdet:"
                       " startup-hook.sh)"]


def test_legacy_warnings_for_image_config_paths_and_local_annotations() -> None:
    conf = yaml.safe_load(OLD_FILES["faster_rcnn_s3_local_annotations"])
    warnings = legacy_warnings(conf)
    assert [w.split(":")[0] for w in warnings] == [
        "environment.image.gpu", "hyperparameters.config_file",
        "hyperparameters.override_mmdet_config.data.train.ann_file",
        "hyperparameters.override_mmdet_config.data.val.ann_file",
    ]
    assert "startup-hook.sh" in warnings[0] and "Cluster set-up" in warnings[0]
    assert "mmdet's bundled faster_rcnn/faster_rcnn_r50_caffe_fpn_1x_coco.py is used" in warnings[1]
    assert "data.train.file_client_args: {backend: disk}" in warnings[2]
    assert all("\n" not in w for w in warnings)

    conf["hyperparameters"]["config_file"] = "/mmdetection/configs/faster_rcnn/no_such_config.py"
    assert "mmdet 2.28.2 bundles no faster_rcnn/no_such_config.py" in legacy_warnings(conf)[1]
    conf["data"]["file_client_args"]["backend"] = "fake"  # the fake backend reads annotations from disk anyway
    assert len(legacy_warnings(conf)) == 2
    assert legacy_warnings(yaml.safe_load(FIXTURE.read_text().replace(OLD_IMAGE, "my/image"))) == [
        "hyperparameters.config_file: /mmdetection/configs/mask_rcnn/mask_rcnn_r50_caffe_fpn_poly_1x_coco_v1.py"
        " exists only in the model hub's image; mmdet's bundled mask_rcnn/mask_rcnn_r50_caffe_fpn_poly_1x_coco_v1.py"
        " is used (write mask_rcnn/mask_rcnn_r50_caffe_fpn_poly_1x_coco_v1.py)"]


def test_invalid_yaml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="line 3 invalid YAML"):
        migrate("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        migrate("- a\n")


def test_migrate_file_never_overwrites_the_input_by_accident(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(OLD_FILES["mask_rcnn_gcs"])
    before = old.read_text()

    new, changes = migrate_file(old)
    assert old.read_text() == before and changes and new != before

    with pytest.raises(ConfigError, match="-o names the input file"):
        migrate_file(old, old)
    with pytest.raises(ConfigError, match="-o names the input file"):
        migrate_file(old, tmp_path / "." / "old.yaml")
    assert old.read_text() == before

    migrate_file(old, tmp_path / "new.yaml")
    assert (tmp_path / "new.yaml").read_text() == new and old.read_text() == before

    migrate_file(old, in_place=True)
    assert old.read_text() == new
    with pytest.raises(ConfigError, match="cannot read"):
        migrate_file(tmp_path / "missing.yaml")


def test_cli_prints_changes_as_comments_then_the_new_yaml(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(FIXTURE.read_text())
    assert main(["migrate", str(old)]) == 0
    out = capsys.readouterr().out
    expected, changes = migrate(FIXTURE.read_text())
    header = [f"# changed {c}" for c in changes]
    assert out.splitlines()[: len(header)] == header
    assert yaml.safe_load(out) == yaml.safe_load(expected)  # stdout is itself the new experiment file
    assert out.endswith(expected) and old.read_text() == FIXTURE.read_text()


def test_cli_writes_with_o_and_refuses_the_input_as_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(FIXTURE.read_text())
    assert main(["migrate", str(old), "-o", str(tmp_path / "new.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("changed entrypoint: ") and out[-1] == f"wrote {tmp_path / 'new.yaml'}"
    assert not any(line.startswith("still to fix") for line in out)
    assert (tmp_path / "new.yaml").read_text() == migrate(FIXTURE.read_text())[0]

    assert main(["migrate", str(old), "-o", str(old)]) == 1
    assert "-o names the input file" in capsys.readouterr().err
    assert main(["migrate", str(old), "-o", str(old), "--in-place"]) == 1
    assert "not both" in capsys.readouterr().err
    assert old.read_text() == FIXTURE.read_text()
    assert main(["migrate", str(old), "--in-place"]) == 0
    assert old.read_text() == (tmp_path / "new.yaml").read_text()


def test_cli_lists_what_migrate_cannot_fix(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    conf = yaml.safe_load(FIXTURE.read_text())
    conf["searchr"] = conf.pop("searcher")
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(conf))
    assert main(["migrate", str(tmp_path / "old.yaml"), "-o", str(tmp_path / "new.yaml")]) == 0
    out = capsys.readouterr().out
    assert "still to fix: searchr: unknown key; did you mean searcher?" in out
    assert "still to fix: searcher: required" in out


# ---------------------------------------------------------------------- through `check`, as a user runs it
@pytest.mark.parametrize("name", ["mask_rcnn_gcs", "mask_rcnn_bare_entrypoint"])
def test_old_entrypoint_fails_check_with_the_migration_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "old.yaml"
    path.write_text(OLD_FILES[name])
    assert main(["check", str(path), "--context", str(tmp_path)]) == 1  # a traceback would raise here
    err = capsys.readouterr().err
    # Both forms name the same trial, so the message is the same line; the image gets its warning too.
    assert legacy_entrypoint_message(yaml.safe_load(OLD_FILES[name])["entrypoint"]) in err, err
    assert "cannot import" not in err


@pytest.mark.parametrize("name", OLD_FILES)
def test_migrated_files_pass_check(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text, _ = migrate(OLD_FILES[name])
    path = tmp_path / "new.yaml"
    path.write_text(text)
    assert main(["check", str(path), "--context", str(tmp_path)]) == 0, capsys.readouterr().err
    assert "new.yaml: OK" in capsys.readouterr().out


def test_fixture_is_the_model_hub_example() -> None:
    # The README's migrate commands run on this file: it must stay an old-style file with everything to migrate.
    conf = yaml.safe_load(FIXTURE.read_text())
    assert schema_problems(conf) == []
    assert legacy_entrypoint_message(conf["entrypoint"]) is not None
    assert len(legacy_warnings(copy.deepcopy(conf))) == 2
