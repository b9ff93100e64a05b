# A small Mask R-CNN that learns the synthetic shapes dataset (model_hub_mmdet.tools.shapes) from scratch on
# the CPU in minutes. Self-contained on purpose: `_base_` paths are relative to this file, and nothing here may
# depend on where mmdet is installed. Generate the data first:
#     python -c "from model_hub_mmdet.tools.shapes import make_shapes; make_shapes('data/shapes')"
# Measurements behind every number below: bench/demo_tuning.md.

classes = ('rectangle', 'ellipse', 'triangle')
num_classes = len(classes)
# No pretrained weights exist offline, so BN statistics must be learned: norm_eval=False below.
norm_cfg = dict(type='BN', requires_grad=True)
fpn_channels = 64

model = dict(
    type='MaskRCNN',
    backbone=dict(
        type='ResNet',
        depth=18,
        base_channels=32,  # half-width ResNet-18: 32/64/128/256 channels
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        init_cfg=None),  # random init (Kaiming convs, zero-init residual BNs)
    neck=dict(type='FPN', in_channels=[32, 64, 128, 256], out_channels=fpn_channels, num_outs=4),
    rpn_head=dict(
        type='RPNHead',
        in_channels=fpn_channels,
        feat_channels=fpn_channels,
        anchor_generator=dict(
            type='AnchorGenerator',
            # Shapes span ~19-90 px on 128 px images: anchors of 16/32/64/128 px on strides 4/8/16/32.
            scales=[4],
            ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            # torchvision's RoIAlign (the same aligned op, multi-threaded on the CPU): the whole demo runs ~15%
            # faster than with mmcv's single-threaded CPU kernel, and that time buys 1800 batches instead of 1500.
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0, use_torchvision=True),
            out_channels=fpn_channels,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(
            type='Shared2FCBBoxHead',
            in_channels=fpn_channels,
            fc_out_channels=256,
            roi_feat_size=7,
            num_classes=num_classes,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            # 7x7 mask features and 14x14 masks (COCO's are 14 and 28): a mask RoI costs a quarter as much, and
            # the 128 px shapes need no finer masks (segm mAP rose, 0.52 -> 0.58).
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0, use_torchvision=True),
            out_channels=fpn_channels,
            featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=2,
            roi_feat_size=7,
            in_channels=fpn_channels,
            conv_out_channels=fpn_channels,
            num_classes=num_classes,
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    # At most 5 objects an image: far fewer samples and proposals than COCO's 256/512/2000 are enough. RoI
    # samples are 32 with half of them positive: the cost of RoIAlign's backward grows with the RoI count, while
    # learning grows with the positives (8 positives an image instead of 16 cost 0.08 bbox mAP at 1500 batches).
    train_cfg=dict(
        rpn=dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.7,
                neg_iou_thr=0.3,
                min_pos_iou=0.3,
                match_low_quality=True,
                ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=32, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        rpn_proposal=dict(nms_pre=500, max_per_img=100, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.5,
                min_pos_iou=0.5,
                match_low_quality=True,
                ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=32, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=True),
            mask_size=14,
            pos_weight=-1,
            debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=20, mask_thr_binary=0.5)))

# Data: 128 px images are used at their own size (never upscaled).
dataset_type = 'CocoDataset'
data_root = 'data/shapes/'
img_scale = (128, 128)
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', img_scale=img_scale, keep_ratio=True),
    # Shapes have no up or down: vertical flips are as valid as horizontal ones.
    dict(type='RandomFlip', flip_ratio=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels', 'gt_masks']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=img_scale,
        flip=False,
        transforms=[
            dict(type='Resize', keep_ratio=True),
            dict(type='RandomFlip'),
            dict(type='Normalize', **img_norm_cfg),
            dict(type='Pad', size_divisor=32),
            dict(type='ImageToTensor', keys=['img']),
            dict(type='Collect', keys=['img']),
        ]),
]
data = dict(
    samples_per_gpu=8,  # Determined's global_batch_size replaces this
    workers_per_gpu=1,
    train=dict(
        type=dataset_type,
        classes=classes,
        ann_file=data_root + 'annotations/train.json',
        img_prefix=data_root + 'train/',
        pipeline=train_pipeline),
    val=dict(
        type=dataset_type,
        classes=classes,
        ann_file=data_root + 'annotations/val.json',
        img_prefix=data_root + 'val/',
        pipeline=test_pipeline),
    test=dict(
        type=dataset_type,
        classes=classes,
        ann_file=data_root + 'annotations/val.json',
        img_prefix=data_root + 'val/',
        pipeline=test_pipeline))
evaluation = dict(interval=200, metric=['bbox', 'segm'])

# Schedule, counted in iterations (batches) so it means the same under Determined's searcher.max_length, which
# replaces runner.max_iters there: cosine annealing reads max_iters, so the decay always spans the whole run.
max_iters = 1800  # bbox mAP 0.49 at 1200, 0.58 at 1800 (bench/demo_tuning.md); see bench/demo_seeds.py
optimizer = dict(type='SGD', lr=0.04, momentum=0.9, weight_decay=0.0001)  # 0.02: -0.04 bbox mAP at 1200 it
optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))  # from-scratch heads spike early on
lr_config = dict(
    policy='CosineAnnealing',
    by_epoch=False,
    warmup='linear',
    warmup_iters=100,
    warmup_ratio=0.001,
    min_lr_ratio=0.01)
runner = dict(type='IterBasedRunner', max_iters=max_iters)
checkpoint_config = dict(interval=max_iters, by_epoch=False)
log_config = dict(interval=20, hooks=[dict(type='TextLoggerHook')])
custom_hooks = [dict(type='NumClassCheckHook')]

dist_params = dict(backend='gloo')
log_level = 'INFO'
load_from = None
resume_from = None
workflow = [('train', 1)]
opencv_num_threads = 0
mp_start_method = 'fork'
auto_scale_lr = dict(enable=False, base_batch_size=8)
