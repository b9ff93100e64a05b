"""The 3.x trial reads every image and annotation file from a bucket (real S3 and GCS servers on 127.0.0.1) through
the core's clients registered as mmengine backends, and trains exactly as from local disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mm3_helpers import experiment
from servers import FaultProxy, free_port, isolate_cloud_env, make_bucket

from model_hub_mmdet.local import train_local

pytestmark = pytest.mark.slow


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


@pytest.mark.parametrize("kind", ["s3", "gcs"])
def test_trial_reads_everything_from_the_bucket(kind, shapes_dir, det_local, disk_result, request, monkeypatch):
    from mmengine.fileio import get_file_backend

    isolate_cloud_env(monkeypatch, det_local)
    server = request.getfixturevalue("moto" if kind == "s3" else "fake_gcs")
    bucket = f"m3-{kind}-{os.getpid()}"
    make_bucket(kind, server.endpoint, bucket)
    proxy = FaultProxy(server.endpoint)
    try:
        scheme = "s3" if kind == "s3" else "gs"
        args = {"backend": kind, ("endpoint_url" if kind == "s3" else "emulator_host"): proxy.endpoint,
                "cache_dir": str(det_local / "cache"), "retry_backoff": 0.01}
        backend = get_file_backend(backend_args={**args, "bucket_name": bucket})
        assert backend.upload_dir(shapes_dir, f"{scheme}://{bucket}/shapes") == 14
        # A URI data_root: gs:// must count as absolute for mmengine, or data_root would be prepended again.
        exp = experiment(f"{scheme}://{bucket}/shapes", "rtmdet", max_batches=4, data={"file_client_args": args})
        result = train_local(exp, validation_period=4)
        paths = proxy.paths
    finally:
        proxy.close()
    assert [t["loss"] for t in result.training] == [t["loss"] for t in disk_result.training]
    assert result.validations == disk_result.validations
    for split, count in (("train", 8), ("val", 4)):
        images = {p.split(f"{split}%2F")[-1].split(f"{split}/")[-1].split("?")[0] for p in paths
                  if f"{split}%2F0000" in p or f"{split}/0000" in p}
        assert len(images) == count, (split, images)
