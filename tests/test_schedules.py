"""Schedule must apply, at every iteration, the LR and momentum that mmcv's own runner applies.

Each case runs mmcv's real ``EpochBasedRunner`` or ``IterBasedRunner`` on a tiny model and loader (5 batches
an epoch) with a hook that records every param group's LR and momentum (or Adam's beta1) right after the
updater hooks ran, then drives :class:`Schedule` batch by batch on a fresh copy of the same optimizer.
"""

from __future__ import annotations

import copy
import logging
import random
import time
import types

import mmdet.core.hook  # noqa: F401  (registers YOLOXLrUpdaterHook, as MMDetection's training does)
import pytest
import torch
from mmcv import Config
from mmcv.runner import EpochBasedRunner, Hook, IterBasedRunner, build_optimizer, epoch_based_runner, iter_based_runner
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.mmdet2.schedules import Schedule, available_policies, build_schedule, hook_type_for

ITERS_PER_EPOCH = 5
EPOCHS = 4
EPOCH_RUNNER_ITERS = EPOCHS * ITERS_PER_EPOCH  # 20
ITER_RUNNER_ITERS = 18  # deliberately not whole epochs
RUNNER_ITERS = {"EpochBasedRunner": EPOCH_RUNNER_ITERS, "IterBasedRunner": ITER_RUNNER_ITERS}


# --- the tiny model, optimizer and the two runs being compared -----------------------------------------------


class TinyModel(nn.Module):
    """Two linear layers, so the optimizer can have two param groups with different LR and momentum."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(2, 3)
        self.norm = nn.BatchNorm1d(3)
        self.head = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.body(x)))

    def train_step(self, data_batch, optimizer, **kwargs) -> dict:
        """mmcv's runner contract: one real optimization step, returns a dict."""
        optimizer.zero_grad()
        loss = self(data_batch[0]).pow(2).mean()
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach(), "num_samples": 1}


def make_optimizer(model: TinyModel, kind: str = "sgd") -> torch.optim.Optimizer:
    """Two param groups with different LR and momentum/betas, like a paramwise config gives."""
    rest = [p for n, p in model.named_parameters() if not n.startswith("head")]
    if kind == "sgd":
        groups = [{"params": rest}, {"params": model.head.parameters(), "lr": 0.02, "momentum": 0.8}]
        return torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=1e-4)
    groups = [{"params": rest}, {"params": model.head.parameters(), "lr": 2e-4, "betas": (0.8, 0.99)}]
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999))


def snapshot(optimizer: torch.optim.Optimizer) -> list[float]:
    """LR and momentum (SGD) or beta1 (Adam) of every param group, flattened."""
    values = []
    for group in optimizer.param_groups:
        values.append(group["lr"])
        values.append(group["momentum"] if "momentum" in group else group["betas"][0])
    return values


class Recorder(Hook):
    """Registered below the LR (VERY_HIGH) and momentum (HIGH) hooks, so it sees what they applied."""

    def __init__(self) -> None:
        self.values: list[list[float]] = []

    def before_train_iter(self, runner) -> None:
        assert runner.iter == len(self.values)
        self.values.append(snapshot(runner.optimizer))


@pytest.fixture(autouse=True)
def no_epoch_sleeps(monkeypatch):
    """mmcv's runners sleep 1-2 s at every epoch boundary against a data-loader-worker deadlock that a
    0-worker loader cannot hit; skipping the sleeps keeps this file fast and changes nothing else."""
    fast = types.SimpleNamespace(sleep=lambda seconds: None, time=time.time)
    monkeypatch.setattr(epoch_based_runner, "time", fast)
    monkeypatch.setattr(iter_based_runner, "time", fast)


def run_mmcv(runner_type: str, lr_config, momentum_config, optim: str = "sgd", optimizer_factory=None):
    """What mmcv's runner applies before every iteration."""
    torch.manual_seed(0)
    model = TinyModel()
    optimizer = optimizer_factory(model) if optimizer_factory else make_optimizer(model, optim)
    loader = DataLoader(TensorDataset(torch.randn(2 * ITERS_PER_EPOCH, 2)), batch_size=2)
    assert len(loader) == ITERS_PER_EPOCH
    log = logging.getLogger("test_schedules.mmcv")
    if runner_type == "EpochBasedRunner":
        runner = EpochBasedRunner(model, optimizer=optimizer, logger=log, max_epochs=EPOCHS)
    else:
        runner = IterBasedRunner(model, optimizer=optimizer, logger=log, max_iters=ITER_RUNNER_ITERS)
    runner.register_training_hooks(lr_config=copy.deepcopy(lr_config), momentum_config=copy.deepcopy(momentum_config))
    recorder = Recorder()
    runner.register_hook(recorder, priority="LOWEST")
    runner.run([loader], [("train", 1)])
    assert len(recorder.values) == RUNNER_ITERS[runner_type]
    return recorder.values


def run_ours(runner_type: str, lr_config, momentum_config, optim: str = "sgd", optimizer_factory=None):
    """What Schedule applies for every batch index, on a fresh copy of the same optimizer."""
    torch.manual_seed(0)
    model = TinyModel()
    optimizer = optimizer_factory(model) if optimizer_factory else make_optimizer(model, optim)
    schedule = Schedule(lr_config, momentum_config, optimizer, ITERS_PER_EPOCH, RUNNER_ITERS[runner_type],
                        runner_type=runner_type)
    values = []
    for k in range(RUNNER_ITERS[runner_type]):
        schedule.before_iter(k)
        values.append(snapshot(optimizer))
    return values


def assert_same(ours: list[list[float]], theirs: list[list[float]]) -> None:
    assert len(ours) == len(theirs)
    for k, (mine, expected) in enumerate(zip(ours, theirs)):
        assert mine == pytest.approx(expected, rel=1e-12, abs=0), f"iteration {k}: {mine} != mmcv's {expected}"


# --- the cases: every policy mmcv 1.7.2 (and mmdet 2.28) registers ---------------------------------------------

COS_MIN = {"min_lr_ratio": 0.01}
CYCLIC_LR = {"policy": "cyclic", "target_ratio": (10, 1e-4), "cyclic_times": 1, "step_ratio_up": 0.4}
ONECYCLE_LR = {"policy": "OneCycle", "max_lr": 0.5}

# (id, lr_config, momentum_config, optimizer kind)
CASES = [
    # LR policies, by epoch (mmcv's default) -- under an IterBasedRunner mmcv defaults them to by iteration
    ("fixed", {"policy": "fixed"}, None, "sgd"),
    ("step-list", {"policy": "step", "step": [2, 3]}, None, "sgd"),
    ("step-int-min-lr", {"policy": "step", "step": 1, "gamma": 0.5, "min_lr": 0.03}, None, "sgd"),
    ("exp", {"policy": "exp", "gamma": 0.8}, None, "sgd"),
    ("poly", {"policy": "poly", "power": 2.0, "min_lr": 1e-4}, None, "sgd"),
    ("inv", {"policy": "inv", "gamma": 0.1, "power": 0.5}, None, "sgd"),
    ("cosine", {"policy": "CosineAnnealing", **COS_MIN}, None, "sgd"),
    ("cosine-min-lr", {"policy": "CosineAnnealing", "min_lr": 1e-3}, None, "adamw"),
    ("flat-cosine", {"policy": "FlatCosineAnnealing", "start_percent": 0.5, **COS_MIN}, None, "sgd"),
    ("cosine-restart",
     {"policy": "CosineRestart", "periods": [2, 2, 20], "restart_weights": [1, 0.5, 0.25], "min_lr": 1e-3},
     None, "sgd"),
    ("linear-annealing", {"policy": "LinearAnnealing", "min_lr_ratio": 0.05}, None, "sgd"),
    ("step-explicit-by-epoch", {"policy": "step", "step": [1, 3], "by_epoch": True}, None, "sgd"),
    # LR policies, by iteration
    ("iter-step-list", {"policy": "step", "step": [8, 14], "by_epoch": False}, None, "sgd"),
    ("iter-step-int", {"policy": "step", "step": 5, "gamma": 0.5, "by_epoch": False}, None, "sgd"),
    ("iter-exp", {"policy": "exp", "gamma": 0.9, "by_epoch": False}, None, "sgd"),
    ("iter-poly", {"policy": "poly", "power": 0.9, "by_epoch": False}, None, "adamw"),
    ("iter-inv", {"policy": "inv", "gamma": 0.05, "power": 0.75, "by_epoch": False}, None, "sgd"),
    ("iter-cosine", {"policy": "CosineAnnealing", "by_epoch": False, **COS_MIN}, None, "sgd"),
    ("iter-flat-cosine", {"policy": "FlatCosineAnnealing", "start_percent": 0.3, "min_lr": 1e-4,
                          "by_epoch": False}, None, "sgd"),
    ("iter-cosine-restart", {"policy": "CosineRestart", "periods": [6, 6, 8], "restart_weights": [1, 0.7, 0.3],
                             "min_lr_ratio": 0.1, "by_epoch": False}, None, "sgd"),
    ("iter-linear-annealing", {"policy": "LinearAnnealing", "min_lr": 1e-3, "by_epoch": False}, None, "sgd"),
    ("cyclic", CYCLIC_LR, None, "sgd"),
    ("cyclic-2x-linear-gamma", {**CYCLIC_LR, "cyclic_times": 2, "anneal_strategy": "linear", "gamma": 0.5},
     None, "sgd"),
    ("cyclic-single-ratio", {**CYCLIC_LR, "target_ratio": (5.0,)}, None, "sgd"),
    ("onecycle", ONECYCLE_LR, None, "sgd"),
    ("onecycle-3phase-linear", {**ONECYCLE_LR, "three_phase": True, "anneal_strategy": "linear",
                                "pct_start": 0.25}, None, "sgd"),
    ("onecycle-per-group-total-steps", {**ONECYCLE_LR, "max_lr": [0.5, 0.05], "total_steps": 30,
                                        "div_factor": 10, "final_div_factor": 100}, None, "sgd"),
    ("yolox", {"policy": "YOLOX", "warmup": "exp", "by_epoch": False, "warmup_by_epoch": True, "warmup_ratio": 1,
               "warmup_iters": 1, "num_last_epochs": 1, "min_lr_ratio": 0.05}, None, "sgd"),
    # warmups, by epoch and by iteration; 7 iterations cross the first epoch boundary
    *[(f"step-warmup-{w}", {"policy": "step", "step": [2, 3], "warmup": w, "warmup_iters": 7,
                            "warmup_ratio": 0.001}, None, "sgd") for w in ("linear", "constant", "exp")],
    *[(f"iter-cosine-warmup-{w}", {"policy": "CosineAnnealing", "by_epoch": False, **COS_MIN, "warmup": w,
                                   "warmup_iters": 7, "warmup_ratio": 0.1}, None, "sgd")
      for w in ("linear", "constant", "exp")],
    ("poly-warmup-by-epoch", {"policy": "poly", "power": 1.0, "warmup": "linear", "warmup_iters": 1,
                              "warmup_by_epoch": True}, None, "sgd"),
    # momentum policies
    ("cyclic-momentum", CYCLIC_LR, {"policy": "cyclic", "target_ratio": (0.85 / 0.95, 1.0), "cyclic_times": 1,
                                    "step_ratio_up": 0.4}, "sgd"),
    ("cyclic-momentum-adam-2x", {**CYCLIC_LR, "cyclic_times": 2, "gamma": 0.5},
     {"policy": "cyclic", "target_ratio": (0.8, 1.0), "cyclic_times": 2, "step_ratio_up": 0.4, "gamma": 0.5,
      "anneal_strategy": "linear"}, "adamw"),
    ("onecycle-momentum", ONECYCLE_LR, {"policy": "OneCycle"}, "sgd"),
    ("onecycle-momentum-adam-3phase", {**ONECYCLE_LR, "three_phase": True},
     {"policy": "OneCycle", "base_momentum": [0.85, 0.8], "max_momentum": 0.95, "three_phase": True}, "adamw"),
    ("cosine-momentum", {"policy": "CosineAnnealing", **COS_MIN},
     {"policy": "CosineAnnealing", "min_momentum_ratio": 0.9}, "sgd"),
    ("iter-cosine-momentum", {"policy": "CosineAnnealing", "by_epoch": False, **COS_MIN},
     {"policy": "CosineAnnealing", "min_momentum": 0.8, "by_epoch": False}, "adamw"),
    ("linear-momentum", None, {"policy": "LinearAnnealing", "min_momentum_ratio": 0.5}, "sgd"),
    ("iter-linear-momentum-warmup", None, {"policy": "LinearAnnealing", "min_momentum": 0.5, "by_epoch": False,
                                           "warmup": "exp", "warmup_iters": 4, "warmup_ratio": 0.95}, "sgd"),
    ("step-momentum-warmup", {"policy": "step", "step": [2, 3]},
     {"policy": "step", "step": [2, 3], "gamma": 0.9, "min_momentum": 0.75, "warmup": "linear", "warmup_iters": 7,
      "warmup_ratio": 0.95}, "sgd"),
    ("iter-step-momentum", None, {"policy": "step", "step": 6, "by_epoch": False}, "sgd"),
]
CASE_IDS = [case[0] for case in CASES]

# Cases where mmcv itself applies nothing but constants (the comparison still runs).
CONSTANT = {
    ("fixed", "EpochBasedRunner"),
    ("fixed", "IterBasedRunner"),
    # mmcv's IterBasedRunner never calls before_train_epoch, so by_epoch=True hooks never update
    ("step-explicit-by-epoch", "IterBasedRunner"),
    ("linear-momentum", "IterBasedRunner"),
}
# mmcv's IterBasedRunner cannot run these (epoch-counted warmup is resolved in before_train_epoch): ConfigError.
ITER_RUNNER_REJECTS = {"poly-warmup-by-epoch", "yolox"}


@pytest.mark.parametrize("runner_type", ["EpochBasedRunner", "IterBasedRunner"])
@pytest.mark.parametrize("name, lr_config, momentum_config, optim", CASES, ids=CASE_IDS)
def test_schedule_matches_mmcv_runner(runner_type, name, lr_config, momentum_config, optim):
    if runner_type == "IterBasedRunner" and name in ITER_RUNNER_REJECTS:
        with pytest.raises(AssertionError):  # what mmcv does at its first iteration
            run_mmcv(runner_type, lr_config, momentum_config, optim)
        with pytest.raises(ConfigError, match="warmup_by_epoch"):
            run_ours(runner_type, lr_config, momentum_config, optim)
        return
    theirs = run_mmcv(runner_type, lr_config, momentum_config, optim)
    if (name, runner_type) not in CONSTANT:  # make sure the case exercises a schedule
        assert len({tuple(v) for v in theirs}) > 1, f"mmcv applied a constant schedule for {name}"
    assert_same(run_ours(runner_type, lr_config, momentum_config, optim), theirs)


def test_cases_cover_every_registered_policy():
    """mmcv 1.7.2 ships LR: Fixed Step Exp Poly Inv CosineAnnealing FlatCosineAnnealing CosineRestart Cyclic
    OneCycle LinearAnnealing; momentum: Step CosineAnnealing LinearAnnealing Cyclic OneCycle; mmdet adds YOLOX."""
    registered = available_policies()
    covered_lr = {hook_type_for(lr["policy"], "") for _, lr, _, _ in CASES if lr is not None}
    covered_momentum = {hook_type_for(m["policy"], "") for _, _, m, _ in CASES if m is not None}
    assert set(registered["lr_config"]) == covered_lr
    assert set(registered["momentum_config"]) == covered_momentum
    assert {"Step", "CosineAnnealing", "Cyclic", "OneCycle", "YOLOX", "Fixed"} <= covered_lr
    assert {"Cyclic", "OneCycle", "CosineAnnealing"} <= covered_momentum


def test_paramwise_groups_match_mmcv():
    """mmcv's build_optimizer with a paramwise_cfg: one group per parameter, LRs and decays differ."""
    cfg = {"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
           "paramwise_cfg": {"bias_lr_mult": 2.0, "norm_decay_mult": 0.0, "custom_keys": {"head": {"lr_mult": 0.1}}}}

    def factory(model):
        return build_optimizer(model, copy.deepcopy(cfg))

    lr_config = {"policy": "step", "step": [2, 3], "warmup": "linear", "warmup_iters": 7, "warmup_ratio": 0.01}
    momentum_config = {"policy": "CosineAnnealing", "min_momentum_ratio": 0.5}
    theirs = run_mmcv("EpochBasedRunner", lr_config, momentum_config, optimizer_factory=factory)
    assert len({v for v in theirs[-1][0::2]}) >= 3, "expected several distinct per-group LRs"
    assert_same(run_ours("EpochBasedRunner", lr_config, momentum_config, optimizer_factory=factory), theirs)


# --- resume and order independence ----------------------------------------------------------------------------

RESUME_CASES = [case for case in CASES if case[0] in {
    "step-warmup-linear", "cosine", "poly-warmup-by-epoch", "onecycle-momentum", "cyclic-momentum-adam-2x",
    "step-momentum-warmup", "iter-cosine-restart"}]
RESUME_AT = (1, 5, 6, 7, 8, 12, 19)


def train_uninterrupted(lr_config, momentum_config, optim):
    """Train every batch, keeping the applied values and the optimizer state taken before each batch in RESUME_AT
    (what Determined's checkpoint holds: param groups with mmcv's ``initial_lr`` and momentum bounds)."""
    torch.manual_seed(0)
    model = TinyModel()
    optimizer = make_optimizer(model, optim)
    schedule = Schedule(lr_config, momentum_config, optimizer, ITERS_PER_EPOCH, EPOCH_RUNNER_ITERS)
    values, checkpoints = [], {}
    batch = (torch.randn(2, 2),)
    for k in range(EPOCH_RUNNER_ITERS):
        if k in RESUME_AT:
            checkpoints[k] = copy.deepcopy(optimizer.state_dict())
        schedule.before_iter(k)
        values.append(snapshot(optimizer))
        model.train_step(batch, optimizer)
    return values, checkpoints


@pytest.mark.parametrize("order", ["schedule-then-optimizer-state", "optimizer-state-then-schedule"])
@pytest.mark.parametrize("name, lr_config, momentum_config, optim", RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_resume_continues_the_uninterrupted_schedule(name, lr_config, momentum_config, optim, order):
    values, checkpoints = train_uninterrupted(lr_config, momentum_config, optim)
    for k, optimizer_state in checkpoints.items():
        optimizer = make_optimizer(TinyModel(), optim)  # fresh: holds the config's base LR, not the saved one
        if order == "schedule-then-optimizer-state":
            schedule = Schedule(lr_config, momentum_config, optimizer, ITERS_PER_EPOCH, EPOCH_RUNNER_ITERS)
            optimizer.load_state_dict(optimizer_state)
        else:
            optimizer.load_state_dict(optimizer_state)
            schedule = Schedule(lr_config, momentum_config, optimizer, ITERS_PER_EPOCH, EPOCH_RUNNER_ITERS)
        for j in range(k, min(k + 3, EPOCH_RUNNER_ITERS)):
            schedule.before_iter(j)
            assert snapshot(optimizer) == pytest.approx(values[j], rel=1e-12, abs=0), f"resumed at {k}, batch {j}"


def test_before_iter_is_a_function_of_the_batch_index():
    """Any order of batch indices gives the sequential run's values (what a restart at any batch relies on)."""
    _, lr_config, momentum_config, optim = next(c for c in CASES if c[0] == "step-momentum-warmup")
    optimizer = make_optimizer(TinyModel(), optim)
    schedule = Schedule(lr_config, momentum_config, optimizer, ITERS_PER_EPOCH, EPOCH_RUNNER_ITERS)
    sequential = []
    for k in range(EPOCH_RUNNER_ITERS):
        schedule.before_iter(k)
        sequential.append(snapshot(optimizer))
    order = list(range(EPOCH_RUNNER_ITERS))
    random.Random(0).shuffle(order)
    for k in order:
        schedule.before_iter(k)
        assert snapshot(optimizer) == sequential[k], f"batch {k}"


def test_past_the_end_keeps_the_last_values():
    optimizer = make_optimizer(TinyModel())
    schedule = Schedule({"policy": "poly", "power": 0.5, "by_epoch": False}, None, optimizer, 5, 10)
    schedule.before_iter(9)
    last = snapshot(optimizer)
    schedule.before_iter(25)
    assert snapshot(optimizer) == last


def test_construction_leaves_the_optimizer_values_as_mmcv_before_run_does():
    optimizer = make_optimizer(TinyModel())
    schedule = Schedule({"policy": "CosineAnnealing", "min_lr": 0.0}, None, optimizer, 5, 20)
    assert schedule.current_lr() == 0.1 and optimizer.param_groups[1]["lr"] == 0.02
    assert [g["initial_lr"] for g in optimizer.param_groups] == [0.1, 0.02]
    assert schedule.lr_hook.base_lr == [0.1, 0.02]


# --- build_schedule from an MMDetection config -----------------------------------------------------------------


def test_build_schedule_iter_based_runner_defaults_lr_to_iterations():
    cfg = Config({"lr_config": {"policy": "step", "step": [8, 14]}, "momentum_config": None,
                  "runner": {"type": "IterBasedRunner", "max_iters": 1000}})
    optimizer = make_optimizer(TinyModel())
    schedule = build_schedule(cfg, optimizer, ITERS_PER_EPOCH, ITER_RUNNER_ITERS)
    assert schedule.by_iter_runner and schedule.lr_hook.by_epoch is False
    assert cfg.lr_config == {"policy": "step", "step": [8, 14]}  # the config is not mutated
    schedule.before_iter(8)
    assert schedule.current_lr() == pytest.approx(0.01, rel=1e-12)


def test_build_schedule_default_runner_is_epoch_based():
    cfg = Config({"lr_config": {"policy": "step", "step": [2]}, "runner": {"type": "EpochBasedRunner",
                                                                         "max_epochs": 12}})
    optimizer = make_optimizer(TinyModel())
    schedule = build_schedule(cfg, optimizer, ITERS_PER_EPOCH, EPOCH_RUNNER_ITERS)
    assert not schedule.by_iter_runner
    schedule.before_iter(2 * ITERS_PER_EPOCH - 1)
    assert schedule.current_lr() == pytest.approx(0.1)
    schedule.before_iter(2 * ITERS_PER_EPOCH)
    assert schedule.current_lr() == pytest.approx(0.01, rel=1e-12)


def test_no_lr_config_keeps_the_lr_and_still_schedules_momentum():
    optimizer = make_optimizer(TinyModel())
    cfg = Config({"momentum_config": {"policy": "CosineAnnealing", "min_momentum": 0.5, "by_epoch": False}})
    schedule = build_schedule(cfg, optimizer, ITERS_PER_EPOCH, EPOCH_RUNNER_ITERS)
    assert schedule.lr_hook is None
    for k in range(EPOCH_RUNNER_ITERS):
        schedule.before_iter(k)
        assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.02]
    assert schedule.current_momentum() < 0.6


def test_yaml_list_target_ratio_works_like_a_tuple():
    as_list = {**CYCLIC_LR, "target_ratio": [10, 1e-4]}
    assert_same(run_ours("EpochBasedRunner", as_list, None), run_ours("EpochBasedRunner", CYCLIC_LR, None))


# --- user mistakes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lr_config, momentum_config, runner_type, match", [
    ({"policy": "Bogus"}, None, "EpochBasedRunner", r"lr_config\.policy='Bogus' is unknown.*CosineAnnealing"),
    ({"step": [8, 11]}, None, "EpochBasedRunner", r"lr_config needs a 'policy'"),
    ({"policy": "step", "stepp": [8, 11]}, None, "EpochBasedRunner",
     r"lr_config has unknown key\(s\) 'stepp' for policy='step'.*gamma"),
    ({"policy": "CosineAnnealing"}, None, "EpochBasedRunner", r"lr_config.*exactly one of min_lr or min_lr_ratio"),
    ({"policy": "step", "step": [8], "warmup": "cosine", "warmup_iters": 5}, None, "EpochBasedRunner",
     r"lr_config.*warming up"),
    ({**CYCLIC_LR, "by_epoch": True}, None, "EpochBasedRunner", r"lr_config.*by_epoch"),
    ({"policy": "CosineRestart", "periods": [2, 1], "restart_weights": [1, 1], "min_lr": 0}, None,
     "EpochBasedRunner", r"lr_config fails.*CosineRestartLrUpdaterHook.*exceeds"),
    ({**ONECYCLE_LR, "total_steps": 10}, None, "EpochBasedRunner", r"lr_config.*total steps"),
    (None, {"policy": "OneCycle", "by_epoch": True}, "EpochBasedRunner", r"momentum_config.*by_epoch"),
    (None, {"policy": "CosineAnnealing"}, "EpochBasedRunner", r"momentum_config.*exactly one of min_momentum"),
    ({"policy": "poly", "warmup": "linear", "warmup_iters": 1, "warmup_by_epoch": True}, None, "IterBasedRunner",
     r"lr_config\.warmup_by_epoch=True does not work with an IterBasedRunner"),
    ("step", None, "EpochBasedRunner", r"lr_config must be a dict"),
])
def test_config_mistakes_raise_one_line_config_errors(lr_config, momentum_config, runner_type, match):
    optimizer = make_optimizer(TinyModel())
    with pytest.raises(ConfigError, match=match) as info:
        Schedule(lr_config, momentum_config, optimizer, ITERS_PER_EPOCH, EPOCH_RUNNER_ITERS, runner_type=runner_type)
    assert "\n" not in str(info.value)
