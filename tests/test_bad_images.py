"""Unreadable images: one line naming the file; training skips them deterministically; validation refuses them.

Everything runs mmdet's real pipelines on a tiny shapes dataset, through the real loaders of ``data.py`` (with
and without worker processes) and, for S3, a real moto server.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_experiment
from mmdet.datasets import build_dataset
from servers import isolate_cloud_env, make_bucket

from model_hub_mmdet import build_mmdet_config
from model_hub_mmdet.errors import ConfigError, DataError
from model_hub_mmdet.mmdet2.data import (
    SKIPPED_KEY,
    build_train_loader,
    build_val_loader,
    skipped_indices,
    skipped_samples,
    unwrap_batch,
)
from model_hub_mmdet.mmdet2.datasets.robust import BadImageError, BadImagePolicy
from model_hub_mmdet.patch_registry import MARK

CORRUPTIONS = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:200]),
    "not_an_image": lambda p: p.write_bytes(b"this is a text file, not a PNG\n" * 20),
    "zero_bytes": lambda p: p.write_bytes(b""),
    "missing": lambda p: p.unlink(),
}
_buckets = itertools.count()
REASONS = {
    "truncated": "not a decodable image",
    "not_an_image": "not a decodable image",
    "zero_bytes": "empty (0 bytes)",
    "missing": "file not found",
}


@pytest.fixture
def data_dir(shapes_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session's shapes dataset (8 train / 4 val images), free to corrupt."""
    return Path(shutil.copytree(shapes_dir, tmp_path / "shapes"))


def datasets(root: Path | str, prefix: str = "", data: dict | None = None) -> tuple:
    """The real mmdet (train, val) datasets of the tiny Faster R-CNN experiment on ``root``."""
    exp = tiny_experiment(root, prefix=prefix, data=data)
    cfg = build_mmdet_config(exp["hyperparameters"], exp["data"], context_dir=".")
    return build_dataset(cfg.data.train), build_dataset(cfg.data.val, dict(test_mode=True))


def image_file(root: Path, split: str, index: int) -> Path:
    images = json.loads((root / "annotations" / f"{split}.json").read_text())["images"]
    return root / split / images[index]["file_name"]


def files_of(batch: dict) -> list[str]:
    return [m["filename"] for m in batch["img_metas"].data[0]]


def take(loader, count: int) -> list[dict]:
    it = iter(loader)
    return [next(it) for _ in range(count)]


def failure(call, expected: type[Exception] = DataError) -> Exception:
    """The ``expected`` error ``call()`` raises, its traceback dropped: the frames would keep the loader and its
    worker processes alive until a later garbage collection, which then waits on each worker."""
    try:
        call()
    except expected as err:
        err.__traceback__ = None
        return err
    raise AssertionError(f"{call} raised no {expected.__name__}")


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_a_bad_image_is_one_error_naming_the_file(kind: str, data_dir: Path) -> None:
    train, _ = datasets(data_dir)
    bad = image_file(data_dir, "train", 2)
    CORRUPTIONS[kind](bad)
    with pytest.raises(BadImageError) as info:
        train[2]
    message = str(info.value)
    assert message.startswith(f"{bad}: ") and REASONS[kind] in message and "\n" not in message
    assert info.value.filename == str(bad)
    assert isinstance(info.value, DataError)
    train[3]  # the others still load


def test_load_failures_the_file_does_not_explain_are_not_blamed_on_it(data_dir: Path) -> None:
    from mmdet.datasets.pipelines import LoadImageFromFile

    step = LoadImageFromFile()
    good = image_file(data_dir, "train", 0)
    loaded = step({"img_prefix": str(good.parent), "img_info": {"filename": good.name}})
    assert loaded["img"].shape == (64, 64, 3)
    with pytest.raises(KeyError):  # a pipeline bug (no img_info), not a bad image
        step({"img_prefix": None})


def test_training_substitutes_from_the_same_group_warns_once_and_counts(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Two aspect-ratio groups: the annotation file claims images 0-3 are twice as wide as high.
    ann = data_dir / "annotations" / "train.json"
    coco = json.loads(ann.read_text())
    for img in coco["images"][:4]:
        img["width"] = 2 * img["height"]
    ann.write_text(json.dumps(coco))
    train, _ = datasets(data_dir)
    assert sorted(np.bincount(train.flag)) == [4, 4]
    bad_index = int(np.flatnonzero(train.flag == 1)[0])
    bad = image_file(data_dir, "train", bad_index)
    CORRUPTIONS["truncated"](bad)
    group_of = {str(data_dir / "train" / info["filename"]): int(f) for info, f in zip(train.data_infos, train.flag)}

    loader = build_train_loader(train, batch_size=2, num_workers=2, seed=3, bad_images={"max_fraction": 0.2})
    with caplog.at_level(logging.WARNING, logger="model_hub_mmdet"):
        batches = take(loader, 3 * len(loader.batch_sampler))  # three passes
    counts = [skipped_samples(b) for b in batches]
    assert sum(counts) == 3  # the bad sample once per pass, each time replaced
    assert set(counts) == {0, 1}
    for batch in batches:
        files = files_of(batch)
        assert len(files) == 2 and str(bad) not in files
        assert len({group_of[f] for f in files}) == 1  # the substitute kept the batch group-pure
    warnings = [r.getMessage() for r in caplog.records if str(bad) in r.getMessage()]
    assert len(warnings) == 1 and "not a decodable image" in warnings[0]
    data = unwrap_batch(batches[0], torch.device("cpu"))
    assert SKIPPED_KEY not in data and {"img", "img_metas", "gt_bboxes", "gt_labels"} <= set(data)


def _snapshot(batches: list[dict]) -> list[tuple]:
    return [(files_of(b), b["img"].data[0].clone(), skipped_samples(b)) for b in batches]


def _same(a: list[tuple], b: list[tuple]) -> bool:
    return all(fa == fb and torch.equal(ia, ib) and sa == sb for (fa, ia, sa), (fb, ib, sb) in zip(a, b))


def test_substituted_runs_are_deterministic_across_workers_and_resumes(data_dir: Path) -> None:
    train, _ = datasets(data_dir)
    CORRUPTIONS["zero_bytes"](image_file(data_dir, "train", 5))
    policy = {"max_fraction": 0.5}

    def run(workers: int, position: int = 0, count: int = 10) -> list[tuple]:
        loader = build_train_loader(train, batch_size=2, num_workers=workers, seed=11, bad_images=policy)
        loader.resumable.position = position
        return _snapshot(take(loader, count))

    first = run(workers=2)
    assert sum(s for _, _, s in first) >= 2  # the bad sample came up (and was substituted) in these batches
    assert _same(first, run(workers=2))
    assert _same(first, run(workers=0))  # worker count and scheduling play no part
    assert _same(first[4:], run(workers=1, position=4, count=6))  # resuming mid-run sees the same batches


@pytest.mark.parametrize("workers", [0, 2])
def test_the_bad_share_is_counted_over_all_workers(workers: int, data_dir: Path) -> None:
    train, _ = datasets(data_dir)
    for index in (1, 6):  # 2 of 8 images: 25% of every pass
        CORRUPTIONS["not_an_image"](image_file(data_dir, "train", index))
    tolerant = build_train_loader(train, 2, num_workers=workers, seed=0, bad_images={"max_fraction": 0.3})
    assert sum(skipped_samples(b) for b in take(tolerant, 12)) == 6  # 3 passes, 2 substitutes each

    strict = build_train_loader(train, 2, num_workers=workers, seed=0, bad_images={"max_fraction": 0.2})
    message = str(failure(lambda: take(strict, 12)))
    assert "\n" not in message and "Traceback" not in message and "data.bad_images.max_fraction=0.2" in message
    assert "2 of the" in message and "not a decodable image" in message


def test_max_fraction_zero_stops_at_the_first_bad_image(data_dir: Path) -> None:
    train, _ = datasets(data_dir)
    bad = image_file(data_dir, "train", 0)
    CORRUPTIONS["missing"](bad)
    loader = build_train_loader(train, 2, num_workers=2, seed=0, bad_images={"max_fraction": 0})
    message = str(failure(lambda: take(loader, 8)))
    assert re.match(r"1 of the \d+ training samples read so far had unreadable images", message)
    assert f"(latest: {bad}: file not found" in message


def test_a_dataset_of_bad_images_fails_with_one_line(data_dir: Path) -> None:
    train, _ = datasets(data_dir)
    for path in (data_dir / "train").glob("*.png"):
        CORRUPTIONS["truncated"](path)
    loader = build_train_loader(train, 2, num_workers=2, seed=0, bad_images={"max_fraction": 1})
    message = str(failure(lambda: take(loader, 1)))
    assert "could not be loaded either" in message and "\n" not in message and "worker" not in message


@pytest.mark.parametrize("workers", [0, 2])
def test_validation_refuses_a_bad_image_by_default(workers: int, data_dir: Path) -> None:
    _, val = datasets(data_dir)
    bad = image_file(data_dir, "val", 2)
    CORRUPTIONS["truncated"](bad)
    loader = build_val_loader(val, batch_size=2, num_workers=workers)
    error = failure(lambda: list(loader), BadImageError)
    assert str(error).startswith(f"{bad}: not a decodable image") and "\n" not in str(error)


def test_validation_skips_bad_images_when_asked_and_logs_the_count(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, val = datasets(data_dir)
    bad = [image_file(data_dir, "val", i) for i in (0, 1)]
    for path in bad:
        CORRUPTIONS["zero_bytes"](path)
    loader = build_val_loader(val, batch_size=2, num_workers=2, bad_images={"skip_at_validation": True})
    with caplog.at_level(logging.WARNING, logger="model_hub_mmdet"):
        batches = list(loader)
    # images 0 and 1 form the first batch, which is left out whole; 2 and 3 are predicted
    assert len(batches) == 1 and skipped_indices(batches[0]) == []
    seen = [int(i) for b in batches for i in b["sample_idx"].data[0]]
    assert seen == [2, 3]
    summary = [r.getMessage() for r in caplog.records if "validation left out" in r.getMessage()]
    assert len(summary) == 1 and "2 unreadable image(s)" in summary[0] and str(bad[0]) in summary[0]


def test_validation_batches_name_the_indices_they_left_out(data_dir: Path) -> None:
    _, val = datasets(data_dir)
    CORRUPTIONS["missing"](image_file(data_dir, "val", 3))
    batches = list(build_val_loader(val, batch_size=2, num_workers=0, bad_images={"skip_at_validation": True}))
    assert [skipped_indices(b) for b in batches] == [[], [3]]
    assert [skipped_samples(b) for b in batches] == [0, 1]
    assert "skipped_indices" not in unwrap_batch(batches[1], torch.device("cpu"))


@pytest.mark.parametrize(
    "setting, message",
    [
        ("yes", "must be a mapping"),
        ({"max_fraction": 2}, "max_fraction must be a number from 0 to 1"),
        ({"max_fraction": "1%"}, "max_fraction must be a number"),
        ({"skip_at_validation": "no"}, "skip_at_validation must be true or false"),
        ({"max_fractoin": 0.1}, "unknown key(s) 'max_fractoin'"),
        ({"a\nb": 1}, "unknown key(s) 'a\\nb'"),  # one line even for a key holding a newline
    ],
)
def test_the_setting_is_checked(setting: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        BadImagePolicy.from_config(setting)
    assert message in str(info.value) and "data.bad_images" in str(info.value)


def test_the_setting_defaults_to_one_percent_and_no_validation_skips() -> None:
    assert BadImagePolicy.from_config(None) == BadImagePolicy(max_fraction=0.01, skip_at_validation=False)


def test_an_image_missing_from_the_bucket_is_skipped_in_training_and_refused_at_validation(
    moto, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import boto3

    isolate_cloud_env(monkeypatch, tmp_path)
    bucket = f"bad-images-{os.getpid()}-{next(_buckets)}"
    make_bucket("s3", moto.endpoint, bucket)
    s3 = boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1")
    train_missing = image_file(data_dir, "train", 4).relative_to(data_dir)
    missing = {train_missing, image_file(data_dir, "val", 1).relative_to(data_dir)}
    for path in data_dir.rglob("*"):
        if path.is_file() and path.relative_to(data_dir) not in missing:
            s3.upload_file(str(path), bucket, f"shapes/{path.relative_to(data_dir)}")
    args = {"backend": "s3", "endpoint_url": moto.endpoint, "cache_dir": str(tmp_path / "cache"), "retries": 2,
            "retry_backoff": 0.01}
    train, val = datasets(data_dir, prefix=f"s3://{bucket}/shapes", data={"file_client_args": args})
    train_key = f"shapes/{train_missing}"

    policy = {"max_fraction": 0.5}
    loader = build_train_loader(train, 2, num_workers=2, seed=0, file_client_args=args, bad_images=policy)
    with caplog.at_level(logging.WARNING, logger="model_hub_mmdet"):
        batches = take(loader, len(loader.batch_sampler))
    assert sum(skipped_samples(b) for b in batches) == 1
    warned = [r.getMessage() for r in caplog.records if "skipped an unreadable image" in r.getMessage()]
    assert len(warned) == 1 and bucket in warned[0] and train_key in warned[0]

    message = str(failure(lambda: list(build_val_loader(val, batch_size=2, num_workers=0))))
    assert bucket in message and "val/" in message and "\n" not in message





def test_the_checks_wrap_mmdet_once() -> None:
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.pipelines import LoadImageFromFile

    from model_hub_mmdet.mmdet2.data import install_checks
    from model_hub_mmdet.mmdet2.datasets.patching import MARK

    install_checks()
    install_checks()
    for method in (LoadImageFromFile.__call__, CocoDataset.load_annotations):
        assert not hasattr(getattr(method, MARK), MARK)  # wraps mmdet's own method, not another wrapper


@pytest.mark.slow
def test_a_local_run_stops_with_one_line_when_too_many_images_are_bad(
    data_dir: Path, det_local: Path, capfd: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    import yaml

    from model_hub_mmdet.tools.cli import main

    bad = image_file(data_dir, "train", 3)
    CORRUPTIONS["truncated"](bad)  # 1 of 8 images: more than the default 1%
    Path("exp.yaml").write_text(yaml.safe_dump(tiny_experiment(data_dir, max_batches=8)))
    assert main(["train", "exp.yaml", "--local", "--max-batches", "8", "--out", "out"]) == 1
    err = capfd.readouterr().err
    errors = [line[line.index("error:"):] for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err
    assert "training samples read so far had unreadable images" in errors[0]
    assert f"{bad}: not a decodable image" in errors[0] and "data.bad_images.max_fraction=0.01" in errors[0]
    warned = [r for r in caplog.records if f"skipped an unreadable image: {bad}" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelname == "WARNING"


@pytest.mark.slow
def test_a_local_run_skips_a_bad_image_and_reports_it_with_the_training_metrics(
    data_dir: Path, det_local: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import yaml

    from model_hub_mmdet.tools.cli import main

    bad = image_file(data_dir, "train", 3)
    CORRUPTIONS["zero_bytes"](bad)
    exp = tiny_experiment(data_dir, max_batches=8, data={"bad_images": {"max_fraction": 0.5}})
    Path("exp.yaml").write_text(yaml.safe_dump(exp))
    assert main(["train", "exp.yaml", "--local", "--max-batches", "8", "--out", "out"]) == 0
    training = json.loads((Path("out") / "metrics.json").read_text())["training"]
    assert all("skipped_samples" in m for m in training)
    assert sum(m["skipped_samples"] for m in training) > 0  # averaged per reporting period: 2 of 8 batches
    assert len([r for r in caplog.records if f"skipped an unreadable image: {bad}" in r.getMessage()]) == 1


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_a_bad_image_error_is_also_what_mmdet_raised(kind: str, data_dir: Path) -> None:
    """Never stricter than mmdet: code that caught mmdet's own error (FileNotFoundError for a missing file, ...)
    still catches ours, in this process and after crossing a worker's pickle."""
    from mmdet.datasets.pipelines import LoadImageFromFile

    bad = image_file(data_dir, "train", 2)
    CORRUPTIONS[kind](bad)
    results = {"img_prefix": str(bad.parent), "img_info": {"filename": bad.name}}
    original = getattr(LoadImageFromFile.__call__, MARK)
    with pytest.raises(Exception) as theirs:
        original(LoadImageFromFile(), dict(results))
    with pytest.raises(BadImageError) as ours:
        LoadImageFromFile()(dict(results))
    for err in (ours.value, pickle.loads(pickle.dumps(ours.value))):
        assert isinstance(err, type(theirs.value)) and isinstance(err, BadImageError), type(err).__mro__
        assert str(err) == str(ours.value) and err.filename == str(bad)
