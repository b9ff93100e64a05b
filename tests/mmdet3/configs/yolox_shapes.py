# YOLOX-tiny, narrowed for the CPU, on 64 px shapes with its Mosaic/MixUp dataset wrapper, the batch-synchronised
# random resize (which reads the iteration from MessageHub) and its YOLOXModeSwitchHook, SyncNormHook and EMAHook.
# With 12 batches of 2 (3 epochs of 4) the mode switch comes at epoch 1.
_base_ = 'mmdet::yolox/yolox_tiny_8xb8-300e_coco.py'

classes = ('rectangle', 'ellipse', 'triangle')
img_scale = (64, 64)
model = dict(
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchSyncRandomResize', random_size_range=(64, 96), size_divisor=32, interval=2)]),
    backbone=dict(widen_factor=0.125),
    neck=dict(in_channels=[32, 64, 128], out_channels=32),
    bbox_head=dict(num_classes=3, in_channels=32, feat_channels=32))

train_pipeline = [
    dict(type='Mosaic', img_scale=img_scale, pad_val=114.0),
    dict(type='RandomAffine', scaling_ratio_range=(0.5, 1.5), border=(-32, -32)),
    dict(type='MixUp', img_scale=img_scale, ratio_range=(0.8, 1.6), pad_val=114.0),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='MultiImageMixDataset',
        dataset=dict(type='CocoDataset', metainfo=dict(classes=classes), ann_file='annotations/train.json',
                     data_prefix=dict(img='train/'),
                     pipeline=[dict(type='LoadImageFromFile', backend_args=None),
                               dict(type='LoadAnnotations', with_bbox=True)],
                     filter_cfg=dict(filter_empty_gt=False, min_size=4)),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(metainfo=dict(classes=classes), ann_file='annotations/val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
custom_hooks = [
    dict(type='YOLOXModeSwitchHook', num_last_epochs=1, priority=48),
    dict(type='SyncNormHook', priority=48),
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, update_buffers=True, priority=49),
]
