# A custom dataset with its own class list and annotation files, on top of the shapes demo model.
# `classes` keeps only two of the three categories in the annotation file: mmdet drops the others,
# and the heads are sized to match.
_base_ = "../shapes/mask_rcnn_shapes.py"
custom_imports = dict(imports=["examples.custom_dataset.shapes_dataset"], allow_failed_imports=False)

classes = ("rectangle", "triangle")
dataset_type = "ShapesDataset"
data_root = "data/shapes/"
model = dict(roi_head=dict(bbox_head=dict(num_classes=2), mask_head=dict(num_classes=2)))
data = dict(
    train=dict(type=dataset_type, classes=classes, ann_file=data_root + "annotations/train.json",
               img_prefix=data_root + "train/"),
    val=dict(type=dataset_type, classes=classes, ann_file=data_root + "annotations/val.json",
             img_prefix=data_root + "val/"),
    test=dict(type=dataset_type, classes=classes, ann_file=data_root + "annotations/val.json",
              img_prefix=data_root + "val/"),
)
