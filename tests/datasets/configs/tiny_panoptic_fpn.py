# Merged over mmdet's panoptic_fpn/panoptic_fpn_r50_fpn_1x_coco.py: a ResNet-18 PanopticFPN for 64 px CPU tests,
# 3 thing classes (the shapes) and 1 stuff class. Paths are set by the test's own merge file.
_base_ = "../../mmdet_configs/tiny_mask_rcnn.py"
model = dict(
    semantic_head=dict(num_things_classes=3, num_stuff_classes=1, in_channels=32, inner_channels=32,
                       norm_cfg=dict(type="GN", num_groups=8, requires_grad=True)),
    panoptic_fusion_head=dict(num_things_classes=3, num_stuff_classes=1),
    # A 64 px image has 4096 pixels: mmdet's default stuff_area_limit (4096) would drop every stuff region.
    test_cfg=dict(panoptic=dict(score_thr=0.05, stuff_area_limit=16)),
)
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadPanopticAnnotations", with_bbox=True, with_mask=True, with_seg=True),
    dict(type="Resize", img_scale=(64, 64), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="SegRescale", scale_factor=1 / 4),
    dict(type="DefaultFormatBundle"),
    dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels", "gt_masks", "gt_semantic_seg"]),
]
data = dict(train=dict(pipeline=train_pipeline))
