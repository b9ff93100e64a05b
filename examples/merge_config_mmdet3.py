# An mmdet-format file merged over `config_file` by `hyperparameters.merge_config` (the 3.x twin of
# merge_config.py; mmengine's merge rules: dicts merge key by key, `_delete_=True` replaces the base's dict, lists
# replace the base's list whole). Here: AdamW with a warmup and a cosine schedule instead of SGD with steps, and
# gradient clipping.
optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=0.1, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="CosineAnnealingLR", by_epoch=False, begin=0, eta_min_ratio=0.01),  # ends where the run ends
]
