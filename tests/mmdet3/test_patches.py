"""The 3.x patch registry: every entry still fits the installed code, a changed function stops the run in one
line, and each fix does what it is for."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch

from model_hub_mmdet.errors import SetupError
from model_hub_mmdet.mmdet3 import patches


def test_every_patch_fits_and_documents_itself() -> None:
    patches.check()
    for patch in patches.REGISTRY:
        assert patch.reason and patch.checked and patch.package


def test_a_changed_function_is_one_line_naming_package_and_version() -> None:
    from model_hub_mmdet.patch_registry import check

    changed = dataclasses.replace(patches.REGISTRY[3], targets={"mmengine.runner.checkpoint:load_from_local": "0" * 12})
    with pytest.raises(SetupError, match=r"^mmengine 0\.10\.7: .*load_from_local changed .*'checkpoint-loaders'") as e:
        check([changed])
    assert "\n" not in str(e.value)


def test_mmengine_loads_its_own_runner_checkpoints_without_turning_the_safe_loader_off(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from mmengine.logging import HistoryBuffer
    from mmengine.runner import load_checkpoint

    model = torch.nn.Linear(2, 2)
    path = tmp_path / "epoch_1.pth"
    # What mmengine's Runner writes: a message_hub of HistoryBuffer objects beside the weights.
    torch.save({"state_dict": model.state_dict(), "meta": {"epoch": 1},
                "message_hub": {"log_scalars": {"train/loss": HistoryBuffer([1.0, 2.0], [1, 1])}}}, path)
    other = torch.nn.Linear(2, 2)
    with caplog.at_level(logging.WARNING, logger="model_hub_mmdet"):
        checkpoint = load_checkpoint(other, str(path), map_location="cpu")
    assert torch.equal(other.weight, model.weight) and checkpoint["meta"]["epoch"] == 1
    assert "unpickling it in full because it is your own file" in caplog.text


def test_object_store_uris_are_absolute_for_datasets() -> None:
    from mmengine.dataset import base_dataset

    assert base_dataset.is_abs("gs://bucket/coco/ann.json") and base_dataset.is_abs("s3://b/k")
    assert not base_dataset.is_abs("data/coco/ann.json")
