# Data settings shared by the tiny test models: 64 px shapes images, 3 classes. Paths are set per test with
# override_mmdet_config (data.*.ann_file / img_prefix).
classes = ("rectangle", "ellipse", "triangle")
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="Resize", img_scale=(64, 64), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="DefaultFormatBundle"),
    dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels", "gt_masks"]),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(
        type="MultiScaleFlipAug",
        img_scale=(64, 64),
        flip=False,
        transforms=[
            dict(type="Resize", keep_ratio=True),
            dict(type="RandomFlip"),
            dict(type="Normalize", **img_norm_cfg),
            dict(type="Pad", size_divisor=32),
            dict(type="ImageToTensor", keys=["img"]),
            dict(type="Collect", keys=["img"]),
        ],
    ),
]
data = dict(
    samples_per_gpu=2,
    workers_per_gpu=0,
    train=dict(type="CocoDataset", classes=classes, ann_file="", img_prefix="", pipeline=train_pipeline),
    val=dict(type="CocoDataset", classes=classes, ann_file="", img_prefix="", pipeline=test_pipeline),
    test=dict(type="CocoDataset", classes=classes, ann_file="", img_prefix="", pipeline=test_pipeline),
)
optimizer = dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0001)
lr_config = dict(policy="step", warmup="linear", warmup_iters=2, warmup_ratio=0.1, step=[8])
evaluation = dict(interval=1, metric=["bbox"], save_best="bbox_mAP")
