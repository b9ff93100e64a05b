"""The core trial's subclass contract, the same in both generations: deprecated names still reach the new ones, and
the loss-term policy (the training runs of it are in tests/test_trial.py and tests/mmdet3/test_trial.py)."""

from __future__ import annotations

import importlib

import pytest

from model_hub_mmdet.trial import MMDetTrial


def test_a_subclass_overriding_an_old_name_is_warned_and_called_under_the_new_one() -> None:
    with pytest.warns(DeprecationWarning, match="Old._stable_terms overrides a deprecated name; override loss_metrics"):
        class Old(MMDetTrial):
            def _stable_terms(self, terms):
                return {"mine": 1.0, **super()._stable_terms(terms)}

    trial = _bare(Old)
    assert trial.loss_metrics({"loss": 2.0}) == {"mine": 1.0, "loss": 2.0}  # its super() is the core's policy

    with pytest.warns(DeprecationWarning, match="override build_hooks"):
        class OldHooks(MMDetTrial):
            def build_hook_runner(self):
                return "facade"

    assert _bare(OldHooks).build_hooks() == "facade"


def test_a_new_loss_term_joins_at_the_next_period_and_a_missing_one_is_zero() -> None:
    trial = _bare(MMDetTrial)
    assert trial.loss_metrics({"loss": 1.0, "loss_cls": 0.5}) == {"loss": 1.0, "loss_cls": 0.5}
    assert trial.loss_metrics({"loss": 1.0, "loss_cls": 0.5, "loss_l1": 0.2}) == {"loss": 1.0, "loss_cls": 0.5}
    trial.new_reporting_period()
    assert trial.loss_metrics({"loss": 1.0, "loss_l1": 0.2}) == {"loss": 1.0, "loss_cls": 0.0, "loss_l1": 0.2}


def test_the_old_trial_paths_give_the_core_class_where_their_generation_is_installed() -> None:
    from model_hub_mmdet import generation

    name = generation.installed()
    if name is None:
        pytest.skip("no MMDetection generation installed")
    with pytest.warns(DeprecationWarning, match=f"model_hub_mmdet.{name}.trial is deprecated"):
        module = importlib.reload(importlib.import_module(f"model_hub_mmdet.{name}.trial"))
    import model_hub_mmdet

    assert module.MMDetTrial is model_hub_mmdet.MMDetTrial is MMDetTrial
    assert module.MMDetTrialCallback is model_hub_mmdet.MMDetTrialCallback


def _bare(cls: type) -> MMDetTrial:
    """An instance with the state the loss-term policy keeps (no context, no engine)."""
    trial = cls.__new__(cls)
    trial.batches_trained = 0
    trial._loss_names, trial._new_loss_names = None, set()
    return trial
