"""A store that stops answering mid-run: a 20 s outage costs a pause; a longer one stops the run with one line
naming bucket and key, the last checkpoint intact, and resuming from it ends with the unfaulted run's weights."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from determined import pytorch
from helpers import tiny_experiment
from probe_models import PROBE_OVERRIDES

from model_hub_mmdet import checkpoints
from model_hub_mmdet.errors import DataError
from model_hub_mmdet.local import train_local
from model_hub_mmdet.mmdet2.trial import MMDetTrial
from model_hub_mmdet.tools.shapes import make_shapes

pytestmark = pytest.mark.slow


def _outage_trial(proxy: Any, after_checkpoints: int, seconds: float) -> type:
    """MMDetTrial that takes the store down for ``seconds`` once its ``after_checkpoints``-th checkpoint is done."""

    class Outage(pytorch.PyTorchCallback):
        def __init__(self) -> None:
            self.done = 0

        def on_checkpoint_upload_end(self, uuid: str) -> None:
            self.done += 1
            if self.done == after_checkpoints:
                proxy.outage(seconds)

    class OutageTrial(MMDetTrial):
        def build_callbacks(self) -> dict[str, Any]:
            return {**super().build_callbacks(), "outage": Outage()}

    return OutageTrial


def _weights(ckpt: str | Path) -> dict[str, torch.Tensor]:
    return torch.load(Path(ckpt) / checkpoints.STATE_FILE, map_location="cpu", weights_only=True)[
        "models_state_dict"][0]


@pytest.mark.parametrize("store", ["s3", "gcs"], indirect=True)
def test_store_outages_mid_run(store: Any, tmp_path: Path, det_local: Path) -> None:
    data = tmp_path / "four"
    make_shapes(data, train=4, val=2, size=64, seed=3)
    store.backend().upload_dir(data, store.uri("four"))
    args = {**store.args, "cache": False, "retry_backoff": 0.1}  # every read reaches the store
    exp = tiny_experiment(data, max_batches=6, prefix="four", overrides=dict(PROBE_OVERRIDES),
                          data={"file_client_args": args})
    exp["min_checkpoint_period"] = {"batches": 2}

    reference = train_local(exp, run_dir=tmp_path / "reference")

    started = time.monotonic()
    survived = train_local(exp, _outage_trial(store.proxy, 1, 20.0), run_dir=tmp_path / "survived")
    assert time.monotonic() - started > 20  # it waited the outage out
    assert survived.batches_trained == 6

    run = tmp_path / "run"
    with pytest.raises(DataError) as info:
        train_local({**exp, "data": {"file_client_args": {**args, "retries": 3}}},
                    _outage_trial(store.proxy, 2, 3600.0), run_dir=run)
    message = str(info.value)
    assert "\n" not in message and store.bucket in message and "four/train/" in message
    store.proxy.outage(0)
    last = checkpoints.newest_complete(run)
    assert last is not None and checkpoints.batches_trained(last) == 4  # the checkpoint before the outage
    resumed = train_local(exp, resume=str(last), run_dir=run)
    assert resumed.batches_trained == 6
    final, expected = _weights(resumed.checkpoints[-1]), _weights(reference.checkpoints[-1])
    for key, value in expected.items():
        assert torch.equal(final[key], value), key
