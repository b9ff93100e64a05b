"""An error in evaluation is one line naming the method and the error; the traceback is in the debug log."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import yaml
from helpers import tiny_experiment

from model_hub_mmdet.gather import ERROR_KEY, EvaluationError, PredictionGatherer, SlotPredictions
from model_hub_mmdet.tools.cli import main

BROKEN_TRIAL = '''
from model_hub_mmdet import MMDetTrial


class BrokenEvaluate(MMDetTrial):
    def evaluate(self, results, indices=None):
        raise KeyError("no such metric: bbox_mAP_huge")
'''


def test_the_gatherer_names_the_method_and_keeps_predictions_out_of_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Owner:
        def evaluate(self, results, indices=None):
            raise ValueError("bad results\nsecond line")

    gatherer = PredictionGatherer(Owner().evaluate, dataset_size=2)
    gatherer.update([0, 1], ["x" * 1000, "y" * 1000])
    slot = gatherer.per_slot_reduce()
    assert isinstance(slot, SlotPredictions) and repr([slot]) == "[<2 predictions>]"
    caplog.set_level(logging.DEBUG, logger="model_hub_mmdet")
    with pytest.raises(EvaluationError) as info:
        gatherer.cross_slot_reduce([slot])
    assert str(info.value) == ("validation: Owner.evaluate raised ValueError: bad results (the traceback is in the"
                               " debug log: --debug)")
    assert any(r.exc_info and "bad results" in str(r.exc_info[1]) for r in caplog.records)
    gatherer.defer_errors = True
    assert gatherer.cross_slot_reduce([slot]) == {ERROR_KEY: str(info.value)}


@pytest.mark.slow
def test_a_failing_evaluate_is_one_line_without_predictions(
    shapes_dir: Path, det_local: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("broken_trial.py").write_text(BROKEN_TRIAL)
    monkeypatch.syspath_prepend(str(Path.cwd()))
    sys.modules.pop("broken_trial", None)
    Path("exp.yaml").write_text(yaml.safe_dump(tiny_experiment(shapes_dir, model="mask_rcnn", max_batches=1)))
    assert main(["train", "exp.yaml", "--local", "--trial", "broken_trial:BrokenEvaluate", "--out", "out"]) == 1
    err = capfd.readouterr().err
    assert "per_slot_metrics" not in err and "Traceback" not in err and "counts" not in err
    lines = [line[line.index("error:"):] for line in err.splitlines() if "error:" in line]
    assert lines == ["error: validation: BrokenEvaluate.evaluate raised KeyError: 'no such metric: bbox_mAP_huge'"
                     " (the traceback is in the debug log: --debug)"]
