"""MMDetTrial trains and validates with every image and annotation file read from a bucket, through Determined's
local Trainer, and gets exactly what training from local disk gets with the same seed."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import free_port, tiny_experiment

from model_hub_mmdet.local import train_local

pytestmark = pytest.mark.slow

OVERRIDES = {"data.workers_per_gpu": 2}  # real loader workers, each with its own client


@pytest.fixture(scope="module")
def disk_result(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The reference: the same tiny Faster R-CNN trained from local disk."""
    tmp = tmp_path_factory.mktemp("disk-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(tmp / "xdg"))
        mp.setenv("INTER_TRAIN_PROCESS_COMM_PORT_1", str(free_port()))
        mp.setenv("INTER_TRAIN_PROCESS_COMM_PORT_2", str(free_port()))
        (tmp / "work").mkdir()
        mp.chdir(tmp / "work")  # not above xdg: local mode copies the working directory into checkpoints
        return train_local(tiny_experiment(shapes_dir, max_batches=4), validation_period=4)


def test_trial_reads_everything_from_the_bucket(store, shapes_dir, det_local, disk_result):
    assert store.backend().upload_dir(shapes_dir, store.uri("shapes")) == 14
    if store.kind == "s3":  # a URI data_root: the bucket comes from the paths
        root = store.uri("shapes")
        args = {k: v for k, v in store.args.items() if k != "bucket_name"}
    else:  # local-looking paths resolved in bucket_name
        root, args = "shapes", dict(store.args)
    exp = tiny_experiment(shapes_dir, max_batches=4, prefix=root, overrides=OVERRIDES,
                          data={"file_client_args": args})
    result = train_local(exp, validation_period=4)

    assert result.batches_trained == disk_result.batches_trained == 4
    assert [t["loss"] for t in result.training] == [t["loss"] for t in disk_result.training]
    assert result.validations == disk_result.validations

    paths = store.proxy.paths
    for split, count in (("train", 8), ("val", 4)):
        assert len([p for p in paths if f"annotations%2F{split}.json" in p or f"annotations/{split}.json" in p]) >= 1
        images = {p.split(f"{split}%2F")[-1].split(f"{split}/")[-1].split("?")[0] for p in paths
                  if (f"{split}%2F0000" in p or f"{split}/0000" in p)}
        assert len(images) == count, (split, images)  # every image came from the bucket
