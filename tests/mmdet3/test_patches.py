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


def test_mmdets_torch_deprecation_warnings_are_ignored_and_other_warnings_kept() -> None:
    """CSPNeXt's SE layer calls torch.cuda.amp.autocast and the point generator torch.meshgrid without indexing: torch
    warns on every run. The patch ignores those two (by category, message and module), nothing else."""
    import warnings

    from mmdet.models.layers.se_layer import ChannelAttention
    from mmdet.models.task_modules.prior_generators import MlvlPointGenerator

    # torch raises the meshgrid warning from C++ once per process (an earlier test may have had it): here it is
    # raised as torch raises it, from torch.functional.
    meshgrid = ("torch.meshgrid: in an upcoming release, it will be required to pass the indexing argument.")

    def messages() -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            ChannelAttention(4)(torch.randn(1, 4, 8, 8))
            MlvlPointGenerator([8]).grid_priors([(4, 4)], device="cpu")
            warnings.warn_explicit(meshgrid, UserWarning, "functional.py", 504, module="torch.functional")
            warnings.warn("a warning of the user's own", UserWarning, stacklevel=1)
        return [str(w.message) for w in caught]

    with warnings.catch_warnings():  # the filters are the process's: restore them after this test
        warnings.simplefilter("default")
        before = messages()
        assert any("torch.cuda.amp.autocast" in m for m in before), before
        assert meshgrid in before, before
        patches.quiet_third_party_warnings()
        assert messages() == ["a warning of the user's own"]


def test_shared_parameters_are_counted_in_one_line_not_one_warning_each(caplog: pytest.LogCaptureFixture) -> None:
    from mmengine.logging import MMLogger

    from model_hub_mmdet.mmdet3.trial import _without_shared_parameter_notes

    mm_logger = MMLogger.get_current_instance()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    mm_logger.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="model_hub_mmdet"), _without_shared_parameter_notes():
            mm_logger.warning("bbox_head.reg_convs.1.0.conv is duplicate. It is skipped since bypass_duplicate=True")
            mm_logger.warning("another mmengine warning")
    finally:
        mm_logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["another mmengine warning"]
    assert "optim_wrapper: 1 parameter(s) shared between modules are optimised once" in caplog.text
