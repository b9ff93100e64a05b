"""``export`` writes a native mmdet 3 checkpoint that mmdet's own APIs load and that detects what the trial's
evaluation detects (the EMA weights, when EMA is on)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mm3_helpers import experiment

from model_hub_mmdet.local import train_local

pytestmark = pytest.mark.slow


def test_export_loads_in_init_detector_and_detects_as_the_trials_evaluation(shapes_dir: Path, det_local: Path,
                                                                           caplog: pytest.LogCaptureFixture):
    from mmdet.apis import DetInferencer, inference_detector, init_detector

    from model_hub_mmdet.mmdet3.trial import MMDetTrial
    from model_hub_mmdet.weights import export_checkpoint

    seen: list = []

    class Recording(MMDetTrial):
        def __init__(self, context):
            super().__init__(context)
            seen.append(self)

    # A larger LR than RTMDet's, so that a few batches give detections to compare.
    conf = experiment(shapes_dir, "rtmdet", max_batches=4, overrides={"optim_wrapper.optimizer.lr": 0.02,
                                                                      "param_scheduler.0.start_factor": 1.0})
    result = train_local(conf, Recording, validation_period=100, checkpoint_period=4)
    out = export_checkpoint(result.checkpoints[-1], det_local / "export" / "rtmdet.pth")
    assert out.with_suffix(".py").is_file()

    native = torch.load(out, map_location="cpu", weights_only=True)
    assert native["meta"]["dataset_meta"]["classes"] == ("rectangle", "ellipse", "triangle")
    assert "model = dict(" in native["meta"]["cfg"] and "ema_state_dict" in native

    images = sorted(str(p) for p in (shapes_dir / "val").glob("*.png"))[:2]
    model = init_detector(str(out.with_suffix(".py")), str(out), device="cpu")
    assert model.dataset_meta["classes"] == ("rectangle", "ellipse", "triangle")
    exported = [inference_detector(model, image).pred_instances for image in images]

    # The trial's own evaluation runs with the EMA weights swapped in (EMAHook.before_val_epoch).
    trial = seen[0]
    trial.runner.before_validation()
    trial.detector.eval()
    trial.detector.cfg = model.cfg  # inference_detector reads the test pipeline there
    try:
        with torch.no_grad():
            own = [inference_detector(trial.detector, image).pred_instances for image in images]
    finally:
        trial.runner.after_validation({})
    for a, b in zip(exported, own):
        assert len(a.bboxes) == len(b.bboxes) > 0
        torch.testing.assert_close(a.bboxes, b.bboxes)
        torch.testing.assert_close(a.scores, b.scores)

    inferencer = DetInferencer(model=str(out.with_suffix(".py")), weights=str(out), device="cpu", show_progress=False)
    predictions = inferencer(images[0], return_datasamples=True)["predictions"]
    assert len(predictions[0].pred_instances) == len(exported[0])

    # The export seeds a new experiment through pretrained_weights: every tensor matches.
    import logging

    again = experiment(shapes_dir, "rtmdet", max_batches=1, pretrained_weights=str(out))
    with caplog.at_level(logging.INFO, logger="model_hub_mmdet"):
        train_local(again, validation_period=100)
    total = len(model.state_dict())
    assert f"loaded {total} of the model's {total} tensors" in caplog.text
