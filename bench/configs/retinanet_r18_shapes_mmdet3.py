# Merged over MMDetection 3.x's retinanet/retinanet_r50_fpn_1x_coco.py by `bench/parity.py --generation 3`: the
# RetinaNet R18 the 2.x runs train (tests/mmdet_configs/tiny_retinanet.py over the 2.x RetinaNet config), written
# with 3.x's keys, on the 3-class shapes data. Paths, image scale and loader workers are set by parity.py's
# override_mmdet_config.
classes = ('rectangle', 'ellipse', 'triangle')
model = dict(
    backbone=dict(depth=18, init_cfg=None, norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                  frozen_stages=-1),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=32),
    bbox_head=dict(num_classes=3, in_channels=32, stacked_convs=1, feat_channels=32))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(metainfo=dict(classes=classes), ann_file='annotations/train.json', data_prefix=dict(img='train/')))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(metainfo=dict(classes=classes), ann_file='annotations/val.json', data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
param_scheduler = [  # the 2.x config's lr_config: linear warm-up over 2 batches from 0.1x, a step at epoch 8
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8], gamma=0.1),
]
