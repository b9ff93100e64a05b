"""Every top-level key of an MMDetection 3.x config, accounted for: honoured, replaced by a named Determined
setting, or refused in one line. None is silently dropped.

The 3.x twin of ``model_hub_mmdet/mmdet2/config/keys.py``. :data:`KEYS` holds every key mmengine 0.10's
``Runner`` reads (``Runner.from_cfg`` and the runner's own ``cfg.get`` calls: a test checks the list against
mmengine's source) and the variables the bundled zoo configs define; docs/configuration.md prints it.
``"honoured"`` keys are used as mmengine's runner uses them when ``tools/train.py`` builds it; ``"replaced"`` keys
name the Determined setting (or command-line option) that does their job, and a run lists the ones its config
sets in one INFO line at start; ``"variable"`` keys are read by no runner (config variables, and what only
``tools/test.py`` reads); ``"refused"`` keys are refused whenever they are set. :func:`refusals` are the values
nothing here can honour. Keys outside the table are user variables: one INFO line names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model_hub_mmdet.config_keys import (
    HONOURED,
    REFUSED,
    REPLACED,
    VARIABLE,
    account,
    key_table,
    resume_refusal,
    variables,
)
from model_hub_mmdet.config_keys import is_set as _set

__all__ = ["HONOURED", "KEYS", "REFUSED", "REPLACED", "SUBKEYS", "VARIABLE", "account_for_keys", "refusals"]

KEYS: dict[str, tuple[str, str]] = key_table("""
model                    | honoured | MODELS.build, init_weights (SyncBN as BatchNorm without CUDA)
data_preprocessor        | honoured | the model's data_preprocessor when model sets none, as the runner does
train_dataloader         | honoured | DATASETS.build, sampler, batch_sampler, collate_fn, num_workers; batch_size =
                         |          | global_batch_size / slots
val_dataloader           | honoured | the validation set, shared out between the slots
train_cfg                | honoured | the loop's unit (epochs or iterations) for the schedule and hooks, its length
                         |          | when searcher.max_length is absent; val_interval and dynamic_intervals are
                         |          | replaced (below)
val_cfg                  | honoured | validation runs when it and val_dataloader are set; ValLoop's fp16 autocasts
                         |          | on GPUs
optim_wrapper            | honoured | mmengine's build_optim_wrapper (paramwise_cfg, constructors, clip_grad, AMP on
                         |          | GPUs); accumulative_counts needs optimizations.aggregation_frequency
param_scheduler          | honoured | mmengine's schedulers, applied per batch as the runner applies them
val_evaluator            | honoured | the metrics of each validation (coco/bbox_mAP, ...)
custom_hooks             | honoured | run at mmengine's runner calls in priority order; hooks Determined replaces
                         |          | are named in one INFO line
custom_imports           | honoured | imported before the config is used (modules of the context directory too)
default_scope            | honoured | the registry scope (mmdet unless set)
load_from                | honoured | warm start from these weights
auto_scale_lr            | honoured | enable=True or hyperparameters.auto_scale_lr scales every group's lr by the
                         |          | global batch / base_batch_size
randomness               | honoured | seed when Determined sets no trial seed (reproducibility.experiment_seed
                         |          | first), diff_rank_seed, deterministic
env_cfg                  | honoured | cudnn_benchmark, mp_cfg (start method, opencv threads), resource_limit;
                         |          | dist_cfg is Determined's launch (nccl on GPUs, gloo on CPUs)
find_unused_parameters   | honoured | nothing to pass on one slot (no DDP); refused on more, since Determined's
                         |          | wrap_model takes no DDP options
model_wrapper_cfg        | honoured | find_unused_parameters as above; other wrappers are refused
sync_bn                  | honoured | BatchNorm -> SyncBatchNorm when several GPUs train, as the runner converts it
activation_checkpointing | honoured | mmengine's turn_on_activation_checkpointing on those modules
efficient_conv_bn_eval   | honoured | mmengine's turn_on_efficient_conv_bn_eval on those modules
default_hooks            | replaced | Determined's loop: metrics and TensorBoard (timer, logger), the trial's
                         |          | schedule (param_scheduler), min_checkpoint_period (checkpoint), the trial's
                         |          | data order (sampler_seed), the predictions picture (visualization)
log_processor            | replaced | Determined's training metrics (every loss term, lr), averaged per report
visualizer               | replaced | TensorBoard under the run's tensorboard/ and the predictions picture
vis_backends             | replaced | TensorBoard under the run's tensorboard/
log_level                | replaced | --debug (DEBUG logs), else INFO
resume                   | replaced | Determined's resume (train --local --resume/--auto-resume; the cluster's
                         |          | checkpoints); load_from for weights only
launcher                 | replaced | Determined's distributed launch (resources.slots_per_trial, train --local
                         |          | --nproc)
work_dir                 | replaced | train --local --out; checkpoint_storage
experiment_name          | replaced | the experiment file's name
compile                  | refused  | torch.compile is not applied by the trial (a subclass's build_model may
                         |          | compile)
""")
# parts of honoured keys that a Determined setting replaces (named in the same INFO line as replaced keys)
SUBKEYS: dict[tuple[str, str], str] = {
    ("train_cfg", "val_interval"): "min_validation_period (model-hub-mmdet init converts it)",
    ("train_cfg", "dynamic_intervals"): "min_validation_period, one period throughout",
}
# read by mmdet's tools/test.py only, never when training (mmengine's runner builds them in test() alone)
for _name in ("test_dataloader", "test_evaluator", "test_cfg", "tta_model", "tta_pipeline"):
    KEYS[_name] = (VARIABLE, "read by mmdet's tools/test.py only; training reads it nowhere, nor does the trial")
# the zoo's config variables: read inside the config files, by no runner
KEYS.update(variables("""
dataset_type data_root backend_args train_pipeline test_pipeline max_epochs max_iters max_iter max_epoch base_lr
interval norm_cfg image_size img_scale img_scales pretrained batch_augments lang_model_name metainfo num_classes
num_last_epochs batch_size input_size embed_multi num_things_classes num_stuff_classes train_pipeline_stage2
stage2_num_epochs checkpoint conv_cfg dynamic_intervals num_stages num_proposals head_norm_cfg depths custom_keys
backbone_norm_multi backbone_embed_multi teacher_ckpt train_dataset num_levels num_workers load_pipeline
albu_train_transforms rpn_weight norm_multi img_norm_cfg cudnn_benchmark class_name palette METAINFO data
optimizer_config
""".split(), "mmengine's runner reads it"))


def refusals(cfg: Mapping[str, Any]) -> list[str]:
    """Values of keys that nothing here can honour, one line each."""
    problems = []
    if _set(cfg.get("resume")):
        problems.append(resume_refusal("resume", cfg["resume"],
                                       "set resume=False, and load_from to start from a checkpoint's weights"))
    if _set(cfg.get("compile")):
        problems.append(
            f"compile={cfg['compile']!r}: torch.compile is not applied by MMDetTrial; remove compile (or override"
            " build_model in a subclass to compile the model)"
        )
    wrapper = cfg.get("model_wrapper_cfg") or {}
    kind = wrapper.get("type", "MMDistributedDataParallel") if isinstance(wrapper, Mapping) else wrapper
    if kind != "MMDistributedDataParallel":
        problems.append(
            f"model_wrapper_cfg.type={kind!r}: Determined wraps the model in its DistributedDataParallel; remove"
            " model_wrapper_cfg (find_unused_parameters=True may stay)"
        )
    val_cfg = cfg.get("val_cfg")
    if isinstance(val_cfg, Mapping) and val_cfg.get("type", "ValLoop") != "ValLoop":
        problems.append(
            f"val_cfg.type={val_cfg['type']!r}: validation runs as mmengine's ValLoop (its fp16 option"
            " included); override evaluate_batch in a subclass for another loop"
        )
    return problems


def account_for_keys(cfg: Mapping[str, Any]) -> None:
    """Refuse what cannot be honoured (one ``ConfigError`` line); log one INFO line with the keys (and the parts of
    ``train_cfg``) this config sets that Determined replaces, and one with keys outside the table."""
    account(cfg, KEYS, refusals, "mmengine's runner", SUBKEYS)
