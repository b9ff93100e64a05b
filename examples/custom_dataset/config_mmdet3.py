# A custom dataset with its own class list (the MMDetection 3.x twin of config.py), on top of the shapes demo model.
# `metainfo.classes` keeps only two of the three categories in the annotation file: mmdet drops the others, and
# the heads are sized to match.
_base_ = "../shapes/mask_rcnn_shapes_mmdet3.py"
custom_imports = dict(imports=["examples.custom_dataset.shapes_dataset_mmdet3"], allow_failed_imports=False)

classes = ("rectangle", "triangle")
dataset_type = "ShapesDataset"
model = dict(roi_head=dict(bbox_head=dict(num_classes=2), mask_head=dict(num_classes=2)))
train_dataloader = dict(dataset=dict(type=dataset_type, metainfo=dict(classes=classes)))
val_dataloader = dict(dataset=dict(type=dataset_type, metainfo=dict(classes=classes)))
test_dataloader = val_dataloader
