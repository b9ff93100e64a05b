"""The 3.x trial reads every image and annotation file from a bucket (real S3 and GCS servers on 127.0.0.1) through
the core's clients registered as mmengine backends, and trains exactly as from local disk."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mm3_helpers import experiment
from servers import FaultProxy, free_port, isolate_cloud_env, make_bucket

from model_hub_mmdet.local import train_local

pytestmark = pytest.mark.slow
_BUCKETS = itertools.count()


@pytest.fixture(scope="module")
def disk_result(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("disk-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(tmp / "xdg"))
        mp.setenv("INTER_TRAIN_PROCESS_COMM_PORT_1", str(free_port()))
        mp.setenv("INTER_TRAIN_PROCESS_COMM_PORT_2", str(free_port()))
        (tmp / "work").mkdir()
        mp.chdir(tmp / "work")
        return train_local(experiment(shapes_dir, "rtmdet", max_batches=4), validation_period=4)


class Bucket:
    """The shapes data uploaded to a fresh bucket, reached through a counting proxy."""

    def __init__(self, kind: str, endpoint: str, shapes_dir: Path, cache: Path, prefetch: int = 0) -> None:
        from mmengine.fileio import get_file_backend

        name = f"m3-{kind}-{os.getpid()}-{next(_BUCKETS)}"
        make_bucket(kind, endpoint, name)
        self.proxy = FaultProxy(endpoint)
        scheme = "s3" if kind == "s3" else "gs"
        self.args = {"backend": kind, ("endpoint_url" if kind == "s3" else "emulator_host"): self.proxy.endpoint,
                     "cache_dir": str(cache), "retry_backoff": 0.01, "prefetch": prefetch}
        self.root = f"{scheme}://{name}/shapes"
        self.backend = get_file_backend(backend_args={**self.args, "bucket_name": name})
        assert self.backend.upload_dir(shapes_dir, self.root) == 14


@pytest.fixture(params=["s3", "gcs"])
def bucket(request: pytest.FixtureRequest, shapes_dir: Path, det_local: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Bucket]:
    isolate_cloud_env(monkeypatch, det_local)
    server = request.getfixturevalue("moto" if request.param == "s3" else "fake_gcs")
    made = Bucket(request.param, server.endpoint, shapes_dir, det_local / "cache")
    yield made
    made.proxy.close()


def test_trial_reads_everything_from_the_bucket(bucket: Bucket, disk_result) -> None:
    # A URI data_root: gs:// must count as absolute for mmengine, or data_root would be prepended again.
    exp = experiment(bucket.root, "rtmdet", max_batches=4, data={"file_client_args": bucket.args})
    result = train_local(exp, validation_period=4)
    assert [t["loss"] for t in result.training] == [t["loss"] for t in disk_result.training]
    assert result.validations == disk_result.validations
    paths = bucket.proxy.paths
    for split, count in (("train", 8), ("val", 4)):
        images = {p.split(f"{split}%2F")[-1].split(f"{split}/")[-1].split("?")[0] for p in paths
                  if f"{split}%2F0000" in p or f"{split}/0000" in p}
        assert len(images) == count, (split, images)


def test_prefetch_warms_the_next_batches_of_the_loader(moto, shapes_dir: Path, det_local: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from mmdet.registry import DATASETS

    from model_hub_mmdet.mmdet3.config import build_mmdet_config
    from model_hub_mmdet.mmdet3.data import build_train_loader
    from model_hub_mmdet.storage.prefetch import PrefetchBatchSampler

    isolate_cloud_env(monkeypatch, det_local)
    store = Bucket("s3", moto.endpoint, shapes_dir, det_local / "cache", prefetch=4)
    try:
        exp = experiment(store.root, "rtmdet", data={"file_client_args": store.args})
        cfg = build_mmdet_config(exp["hyperparameters"], exp["data"])
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        loader = build_train_loader(dataset, 2, num_workers=0, seed=0, file_client_args=store.args)
        assert isinstance(loader.batch_sampler, PrefetchBatchSampler)
        batches = iter(loader)
        next(batches)
        upcoming = [dataset.get_data_info(i)["img_path"] for i in loader.resumable.groups.batches_for_pass(0)[1]]
        deadline = time.monotonic() + 10  # the prefetcher's threads may still be writing them
        while not all(store.backend.cached(p) for p in upcoming) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(store.backend.cached(p) for p in upcoming)
    finally:
        store.proxy.close()


def test_store_faults_retry_then_stop_in_one_line_naming_bucket_and_key(moto, shapes_dir: Path, det_local: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from determined import pytorch

    from model_hub_mmdet import checkpoints
    from model_hub_mmdet.errors import DataError
    from model_hub_mmdet.mmdet3.trial import MMDetTrial

    isolate_cloud_env(monkeypatch, det_local)
    store = Bucket("s3", moto.endpoint, shapes_dir, det_local / "cache")
    args = {**store.args, "cache": False, "retries": 3}  # every read reaches the store
    exp = experiment(store.root, "rtmdet", max_batches=4, data={"file_client_args": args})
    exp["min_checkpoint_period"] = {"batches": 2}

    class Outage(pytorch.PyTorchCallback):
        def on_checkpoint_upload_end(self, uuid: str) -> None:
            store.proxy.outage(3600.0)

    class OutageTrial(MMDetTrial):
        def build_callbacks(self):
            return {**super().build_callbacks(), "outage": Outage()}

    try:
        store.proxy.fail(2, 503)  # a store that sheds load: retried, training goes on
        assert train_local(exp, validation_period=100).batches_trained == 4
        with pytest.raises(DataError) as info:
            train_local(exp, OutageTrial, validation_period=100, run_dir=det_local / "run")
    finally:
        store.proxy.outage(0)
        store.proxy.close()
    message = str(info.value)
    assert "\n" not in message and store.root.split("/")[2] in message and "shapes/train/" in message
    last = checkpoints.newest_complete(det_local / "run")
    assert last is not None and checkpoints.batches_trained(last) == 2  # the checkpoint before the outage
