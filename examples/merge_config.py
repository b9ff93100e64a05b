# An mmdet-format file merged over `config_file` by `hyperparameters.merge_config` (MMDetection's merge rules:
# dicts merge key by key, `_delete_=True` replaces the base's dict, lists replace the base's list whole).
# Here: AdamW with a cosine schedule instead of SGD with steps, and gradient clipping.
optimizer = dict(
    _delete_=True,
    type="AdamW",
    lr=0.0001,
    betas=(0.9, 0.999),
    weight_decay=0.05,
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
optimizer_config = dict(_delete_=True, grad_clip=dict(max_norm=0.1, norm_type=2))
lr_config = dict(
    _delete_=True,
    policy="CosineAnnealing",
    warmup="linear",
    warmup_iters=500,
    warmup_ratio=0.001,
    min_lr_ratio=0.01,
    by_epoch=False,
)
