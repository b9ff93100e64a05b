"""LR and momentum at every iteration equal mmengine's own Runner, for the schedules the bundled configs use."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.mmdet3.config import bundled_config_dir
from model_hub_mmdet.mmdet3.schedules import Schedule, build_schedule, hyperparameters

EPOCH_LEN = 5


class _Toy(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        out = self.linear(inputs)
        return {"loss": out.pow(2).mean()} if mode == "loss" else out


class _Record(Hook):
    def __init__(self) -> None:
        self.values: list[tuple[float, float | None]] = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        group = runner.optim_wrapper.optimizer.param_groups[0]
        momentum = group["betas"][0] if "betas" in group else group.get("momentum")
        self.values.append((group["lr"], momentum))


def runner_values(tmp_path: Path, optim_wrapper: dict, param_scheduler, train_cfg: dict) -> list:
    """LR and momentum of param group 0 before every iteration of mmengine's Runner."""
    record = _Record()
    runner = Runner(
        model=_Toy(),
        work_dir=str(tmp_path),
        train_dataloader=dict(dataset=[torch.ones(2) for _ in range(EPOCH_LEN)], batch_size=1,
                              # an endless sampler: mmengine's loop sleeps 2 s whenever it restarts a loader
                              sampler=dict(type="InfiniteSampler" if "Iter" in train_cfg["type"] else "DefaultSampler",
                                           shuffle=False),
                              collate_fn=dict(type="pseudo_collate")),
        optim_wrapper=copy.deepcopy(optim_wrapper),
        param_scheduler=copy.deepcopy(param_scheduler),
        train_cfg=copy.deepcopy(train_cfg),
        default_hooks=dict(checkpoint=None, logger=None),
        custom_hooks=[record],
        default_scope="mmdet",
        log_level="WARNING",
        experiment_name=f"schedule-{tmp_path.name}",
    )
    runner.train()
    return record.values


def schedule_values(optim_wrapper: dict, param_scheduler, train_cfg: dict, max_iters: int) -> list:
    from mmengine.optim import build_optim_wrapper

    wrapper = build_optim_wrapper(_Toy(), copy.deepcopy(optim_wrapper))
    cfg = {"param_scheduler": param_scheduler, "train_cfg": train_cfg}
    schedule = build_schedule(cfg, wrapper.optimizer, hyperparameters(wrapper.optimizer), EPOCH_LEN, max_iters)
    out = []
    for k in range(max_iters):
        schedule.before_iter(k)
        out.append((schedule.current_lr(), schedule.current_momentum()))
    return out


def bundled(name: str) -> Config:
    return Config.fromfile(str(bundled_config_dir() / name))


def scaled(schedulers: list, factor: float) -> list:
    """The bundled schedule shrunk in time (its epochs and iterations divided by ``factor``)."""
    out = []
    for s in copy.deepcopy(schedulers):
        by_epoch = s.get("by_epoch", True)
        for key in ("begin", "end", "T_max"):
            if key in s and s[key] < 10**8:
                s[key] = max(1, int(s[key] // factor)) if key != "begin" else int(s[key] // factor)
        if "milestones" in s:
            s["milestones"] = [max(1, int(m // factor)) for m in s["milestones"]]
        if not by_epoch and s.get("end", 0) and s["end"] > 1000:
            s["end"] = 20
        out.append(s)
    return out


CASES = {
    # RTMDet: LinearLR warmup by iteration, then CosineAnnealingLR by epoch converted to iterations; AdamW.
    "rtmdet": ("rtmdet/rtmdet_tiny_8xb32-300e_coco.py", 30, 10),
    # The 1x schedule: LinearLR warmup over 500 iterations, MultiStepLR at epochs 8 and 11; SGD with momentum.
    "1x": ("faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py", 1, 12),
    # YOLOX: QuadraticWarmupLR by epoch converted to iterations, cosine, then constant; SGD Nesterov.
    "yolox": ("yolox/yolox_s_8xb8-300e_coco.py", 30, 10),
    # DETR: MultiStepLR at epoch 100 of 150; AdamW.
    "detr": ("detr/detr_r50_8xb2-150e_coco.py", 15, 10),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lr_and_momentum_equal_mmengine_runner_at_every_iteration(case: str, tmp_path: Path) -> None:
    name, factor, epochs = CASES[case]
    cfg = bundled(name)
    schedulers = scaled(cfg.param_scheduler, factor)
    if case == "1x":
        schedulers[0]["end"] = 7  # warmup over 7 of the 60 iterations
    optim = cfg.optim_wrapper.to_dict()
    optim.pop("clip_grad", None)
    optim.pop("paramwise_cfg", None)
    train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=epochs, val_interval=10**6)
    expected = runner_values(tmp_path, optim, schedulers, train_cfg)
    assert len(expected) == epochs * EPOCH_LEN
    assert len(set(expected)) > 1  # the schedule really moves
    assert schedule_values(optim, schedulers, train_cfg, epochs * EPOCH_LEN) == expected


def test_iter_based_loop_and_resume_continue_exactly(tmp_path: Path) -> None:
    optim = dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.02, momentum=0.9))
    schedulers = [dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=8),
                  dict(type="CosineAnnealingLR", by_epoch=False, begin=8, end=40, eta_min=1e-4),
                  dict(type="CosineAnnealingMomentum", by_epoch=False, begin=0, end=40, eta_min=0.85)]
    train_cfg = dict(type="IterBasedTrainLoop", max_iters=40, val_interval=10**6)
    expected = runner_values(tmp_path, optim, schedulers, train_cfg)
    assert schedule_values(optim, schedulers, train_cfg, 40) == expected
    from mmengine.optim import build_optim_wrapper

    # A resumed run: a fresh optimizer and schedule asked for batch 23 first give the uninterrupted run's values.
    wrapper = build_optim_wrapper(_Toy(), copy.deepcopy(optim))
    schedule = Schedule(schedulers, wrapper.optimizer, hyperparameters(wrapper.optimizer), EPOCH_LEN, 40,
                        iter_based_loop=True)
    for k in (23, 24, 39, 5):
        schedule.before_iter(k)
        assert (schedule.current_lr(), schedule.current_momentum()) == expected[k]


def test_bad_schedulers_fail_in_one_line() -> None:
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ConfigError, match=r"param_scheduler.0 \(MultiStepLR\) is invalid"):
        Schedule([dict(type="MultiStepLR", milestones=[2], gama=0.1)], opt, hyperparameters(opt), 5, 10)
    with pytest.raises(ConfigError, match="ReduceOnPlateauLR follows validation metrics"):
        Schedule([dict(type="ReduceOnPlateauLR", monitor="loss")], opt, hyperparameters(opt), 5, 10)
