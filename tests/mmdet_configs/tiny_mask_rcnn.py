# Merged over mmdet's mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py: a ResNet-18 sized for 64 px CPU tests.
_base_ = "./_tiny_data.py"
model = dict(
    backbone=dict(depth=18, init_cfg=None, norm_eval=False, frozen_stages=-1),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        mask_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes=3),
        mask_head=dict(num_convs=1, in_channels=32, conv_out_channels=32, num_classes=3),
    ),
)
evaluation = dict(metric=["bbox", "segm"])
