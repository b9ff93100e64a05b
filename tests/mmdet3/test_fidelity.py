"""Numerical fidelity: the trial trains as mmengine's own Runner does (built as mmdet's tools/train.py builds it).

Same config, same data in the same order, same starting weights (both load one ``load_from`` file), 8 batches of
RTMDet-tiny with its EMAHook and PipelineSwitchHook, a warmup and an epoch-based cosine converted to iterations:
the LR must match at every batch, and the weights and EMA weights must agree within float tolerance.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from mm3_helpers import experiment

from model_hub_mmdet.local import train_local
from model_hub_mmdet.mmdet3.config import build_mmdet_config

pytestmark = pytest.mark.slow
BATCHES = 8  # two epochs of 4 batches of 2 images

OVERRIDES = {
    # No random augmentation (the Runner's augmentation draws from other RNG streams), no shuffling.
    "train_dataloader.dataset.pipeline": "stage2",
    "train_dataloader.sampler.shuffle": False,
    "param_scheduler.0.start_factor": 0.1,
    "param_scheduler.0.end": 4,
    "param_scheduler.1.begin": 1,
    "param_scheduler.1.end": 2,
    "param_scheduler.1.T_max": 1,
    "randomness": {"seed": 0},
}


def _overrides(cfg_for_stage2: dict, load_from: Path) -> dict:
    over = dict(OVERRIDES)
    over["train_dataloader.dataset.pipeline"] = cfg_for_stage2
    over["load_from"] = str(load_from)
    return over


def test_trial_matches_mmengine_runner(shapes_dir: Path, det_local: Path) -> None:
    from mmdet.registry import MODELS
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from model_hub_mmdet.mmdet3.trial import MMDetTrial

    base = build_mmdet_config(experiment(shapes_dir, "rtmdet")["hyperparameters"])
    stage2 = base.to_dict()["stage2_pipeline"]
    torch.manual_seed(0)
    model = MODELS.build(base.model)
    model.init_weights()
    start = det_local / "start.pth"
    torch.save({"state_dict": model.state_dict()}, start)

    exp = experiment(shapes_dir, "rtmdet", max_batches=BATCHES, overrides=_overrides(stage2, start))
    trial_lrs: list[float] = []

    class Recording(MMDetTrial):
        def train_batch(self, batch, epoch_idx, batch_idx):
            metrics = super().train_batch(batch, epoch_idx, batch_idx)
            trial_lrs.append(metrics["lr"])
            return metrics

    result = train_local(exp, Recording, validation_period=100, checkpoint_period=BATCHES)
    state = torch.load(Path(result.checkpoints[-1]) / "state_dict.pth", map_location="cpu", weights_only=True)
    trial_weights = state["models_state_dict"][0]
    # As in an mmengine checkpoint, EMAHook swapped the averaged weights into the state dict it was given.
    trial_ema = state["callbacks"]["model_hub_mmdet"]["hooks"]["state_dict_changes"]

    # mmengine's Runner on the same final config (tools/train.py: Config -> work_dir -> Runner.from_cfg -> train).
    cfg = build_mmdet_config(exp["hyperparameters"], exp["data"])
    cfg.work_dir = str(det_local / "runner")
    cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=BATCHES // 4, val_interval=100)
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=100, save_last=False)
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=100)
    cfg.log_level = "WARNING"
    runner_lrs: list[float] = []

    class RecordLR(Hook):
        priority = "LOWEST"

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            runner_lrs.append(runner.optim_wrapper.optimizer.param_groups[0]["lr"])

    runner = Runner.from_cfg(copy.deepcopy(cfg))
    runner.register_hook(RecordLR())
    runner.train()
    ema_hook = next(h for h in runner.hooks if type(h).__name__ == "EMAHook")

    assert len(trial_lrs) == len(runner_lrs) == BATCHES
    assert trial_lrs == runner_lrs
    runner_weights = runner.model.state_dict()
    assert trial_weights.keys() == runner_weights.keys()
    moved = [k for k in trial_weights if not torch.equal(trial_weights[k], model.state_dict()[k])]
    assert len(moved) > len(trial_weights) // 2  # training changed most tensors
    for key, value in trial_weights.items():
        torch.testing.assert_close(value, runner_weights[key], rtol=1e-4, atol=1e-5, msg=key)
    worst = max(float((v.double() - runner_weights[k].double()).abs().max()) for k, v in trial_weights.items()
                if v.is_floating_point())
    print(f"largest weight difference to mmengine's Runner after {BATCHES} batches: {worst:.3g}")
    runner_ema = {k[len("module."):]: v for k, v in ema_hook.ema_model.state_dict().items() if k.startswith("module.")}
    assert trial_ema.keys() == runner_ema.keys()
    for key, value in runner_ema.items():
        torch.testing.assert_close(trial_ema[key], value, rtol=1e-4, atol=1e-5, msg=key)

