# DINO (4 scales, two-stage, box refinement, denoising queries), shrunk for the CPU: ResNet-18 without pretrained
# weights, one encoder and one decoder layer, 30 queries; 64 px shapes.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'

classes = ('rectangle', 'ellipse', 'triangle')
dims = 256  # DINO's decoder encodes reference points with 128 features per coordinate: 4 x 128 = 2 x 256
model = dict(
    num_queries=30,
    backbone=dict(depth=18, frozen_stages=-1, norm_eval=False, norm_cfg=dict(type='BN', requires_grad=True),
                  init_cfg=None),
    neck=dict(in_channels=[128, 256, 512], out_channels=dims, norm_cfg=dict(type='GN', num_groups=32)),
    encoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=dict(embed_dims=dims),
                                              ffn_cfg=dict(embed_dims=dims, feedforward_channels=256))),
    decoder=dict(num_layers=1, layer_cfg=dict(self_attn_cfg=dict(embed_dims=dims),
                                              cross_attn_cfg=dict(embed_dims=dims),
                                              ffn_cfg=dict(embed_dims=dims, feedforward_channels=256))),
    positional_encoding=dict(num_feats=dims // 2),
    bbox_head=dict(num_classes=3, embed_dims=dims),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=10)),
    test_cfg=dict(max_per_img=20))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(metainfo=dict(classes=classes), ann_file='annotations/train.json', data_prefix=dict(img='train/'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(metainfo=dict(classes=classes), ann_file='annotations/val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
