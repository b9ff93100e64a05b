"""Every top-level key of an MMDetection 2.28 config, accounted for: honoured, replaced by a named Determined
setting, or refused in one line. None is silently dropped.

:data:`KEYS` is the table (docs/configuration.md prints it, and a test walks every bundled zoo config against it):
``"honoured"`` keys are used as mmdet's ``tools/train.py`` and ``train_detector`` use them; ``"replaced"`` keys
name the Determined setting (or command-line option) that does their job, and a run lists the ones its config
sets in one INFO line at start; ``"variable"`` keys are the zoo's own config variables (pipelines, norm settings,
sizes), which mmdet's tools read nowhere either. :func:`refusals` are the values nothing here can honour.
Keys outside the table are user variables: one INFO line names them, since neither mmdet nor the trial reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model_hub_mmdet.config_keys import HONOURED, REPLACED, VARIABLE, account, key_table, resume_refusal, variables
from model_hub_mmdet.config_keys import is_set as _set

__all__ = ["HONOURED", "KEYS", "REPLACED", "VARIABLE", "account_for_keys", "refusals"]

KEYS: dict[str, tuple[str, str]] = key_table("""
model                  | honoured | build_detector, init_weights
data                   | honoured | build_dataset for train/val/test; samples_per_gpu = global_batch_size / slots
train_cfg              | honoured | passed to build_detector (old-style top-level train_cfg)
test_cfg               | honoured | passed to build_detector (old-style top-level test_cfg)
optimizer              | honoured | mmcv.runner.build_optimizer (paramwise_cfg, custom constructors)
optimizer_config       | honoured | grad_clip in the trial's step; cumulative_iters needs
                       |          | optimizations.aggregation_frequency
fp16                   | honoured | torch AMP with a GradScaler (loss_scale) on GPUs; fp32 with a warning on CPUs
lr_config              | honoured | mmcv's LR updater hook, applied per batch
momentum_config        | honoured | mmcv's momentum updater hook, applied per batch
custom_hooks           | honoured | run at mmcv's runner calls in priority order; hooks Determined replaces are
                       |          | named in one INFO line
custom_imports         | honoured | imported before the config is used (modules of the context directory too)
load_from              | honoured | warm start from these weights
auto_scale_lr          | honoured | enable=True or hyperparameters.auto_scale_lr scales optimizer.lr by the global
                       |          | batch / base_batch_size
seed                   | honoured | seeds the RNGs when Determined sets no trial seed
                       |          | (reproducibility.experiment_seed first)
cudnn_benchmark        | honoured | torch.backends.cudnn.benchmark, as tools/train.py sets it
opencv_num_threads     | honoured | mmdet.utils.setup_multi_processes, as tools/train.py calls it
mp_start_method        | honoured | mmdet.utils.setup_multi_processes, as tools/train.py calls it
find_unused_parameters | honoured | passed to Determined's DistributedDataParallel
total_epochs           | honoured | the run's length when neither searcher.max_length nor runner gives one
runner                 | replaced | searcher.max_length (the config's max_epochs/max_iters only when it is absent)
workflow               | replaced | Determined's training loop with validation every min_validation_period
checkpoint_config      | replaced | min_checkpoint_period and checkpoint_storage
log_config             | replaced | Determined's training metrics and TensorBoard (every loss term, lr)
evaluation             | replaced | min_validation_period and searcher.metric (interval, save_best, rule,
                       |          | dynamic_intervals); its metric arguments go to dataset.evaluate
resume_from            | replaced | Determined's resume (train --local --resume/--auto-resume; the cluster's
                       |          | checkpoints); load_from for weights only
auto_resume            | replaced | train --local --auto-resume; max_restarts on a cluster
dist_params            | replaced | Determined's distributed launch (nccl on GPUs, gloo on CPUs)
log_level              | replaced | --debug (DEBUG logs), else INFO
work_dir               | replaced | train --local --out; checkpoint_storage
gpu_ids                | replaced | resources.slots_per_trial
device                 | replaced | the device Determined gives each slot
""")
# the zoo's config variables: read inside the config files, by no tool of mmdet's
KEYS.update(variables("""
dataset_type data_root train_pipeline test_pipeline img_norm_cfg norm_cfg image_size interval pretrained
file_client_args num_things_classes num_stuff_classes num_classes conv_cfg input_size embed_multi max_iters
dynamic_intervals num_stages num_proposals head_norm_cfg depths custom_keys min_values backbone_norm_multi
backbone_embed_multi checkpoint teacher_ckpt img_scale train_dataset max_epochs num_last_epochs img_size pad_cfg
load_pipeline classes albu_train_transforms rpn_weight norm_multi CLASSES
""".split(), "mmdet's tools read it"))


def refusals(cfg: Mapping[str, Any]) -> list[str]:
    """Values of keys that nothing here can honour, one line each."""
    problems = []
    if _set(cfg.get("resume_from")):
        problems.append(resume_refusal("resume_from", cfg["resume_from"], "set load_from to start from these weights"))
    workflow = cfg.get("workflow") or []
    phases = [w[0] for w in workflow if isinstance(w, (list, tuple)) and w]
    if any(p != "train" for p in phases):
        problems.append(
            f"workflow={list(map(tuple, workflow))!r}: Determined's loop trains and validates every"
            " min_validation_period; a 'val' phase (validation losses) is not run here; use [('train', 1)]"
        )
    return problems


def account_for_keys(cfg: Mapping[str, Any]) -> None:
    """Refuse what cannot be honoured (one ``ConfigError`` line); log one INFO line with the keys this config
    sets that Determined replaces, and one with keys outside the table."""
    account(cfg, KEYS, refusals, "mmdet's tools")
