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


def test_trial_prefetches_its_images_ahead_of_the_loader(store, shapes_dir, det_local, disk_result):
    """With ``prefetch`` the next batches' images are in the cache before the loader asks; results unchanged."""
    import time

    from mmdet.datasets import build_dataset

    from model_hub_mmdet.expconf import local_hparams
    from model_hub_mmdet.mmdet2.config import build_mmdet_config
    from model_hub_mmdet.mmdet2.data import build_train_loader
    from model_hub_mmdet.storage import object_backend
    from model_hub_mmdet.storage.prefetch import PrefetchBatchSampler

    store.backend().upload_dir(shapes_dir, store.uri("shapes"))
    args = dict(store.args, prefetch=8, prefetch_threads=4)
    exp = tiny_experiment(shapes_dir, max_batches=4, prefix="shapes", overrides=OVERRIDES,
                          data={"file_client_args": args})
    cfg = build_mmdet_config(local_hparams(exp["hyperparameters"]), exp["data"])
    loader = build_train_loader(build_dataset(cfg.data.train), 2, 0, seed=0, file_client_args=args)
    assert isinstance(loader.batch_sampler, PrefetchBatchSampler)
    backend = object_backend(args)
    batches = iter(loader.batch_sampler)
    first = next(batches)  # the sampler is 8 samples ahead: batches 2-4 are being fetched, not loaded
    later = [k % 8 for _ in range(3) for k in next(batches)]
    deadline = time.time() + 30
    while time.time() < deadline and not all(backend.cached(f"shapes/train/{i:06d}.png") for i in later):
        time.sleep(0.1)
    assert all(backend.cached(f"shapes/train/{i:06d}.png") for i in later), (first, later)

    result = train_local(exp, validation_period=4)
    assert [t["loss"] for t in result.training] == [t["loss"] for t in disk_result.training]
