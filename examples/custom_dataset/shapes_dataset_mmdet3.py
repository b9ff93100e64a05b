"""A custom dataset class for MMDetection 3.x (the twin of ``shapes_dataset.py``), registered exactly as in plain
MMDetection 3 (``@DATASETS.register_module()`` of ``mmdet.registry``).

The config imports it with ``custom_imports``; model_hub_mmdet puts the context directory on ``sys.path`` (as
Determined does on a cluster), so ``examples.custom_dataset.shapes_dataset_mmdet3`` imports locally too.
"""

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS


@DATASETS.register_module()
class ShapesDataset(CocoDataset):
    """COCO-format annotations with this project's own class names and drawing colours."""

    METAINFO = {
        "classes": ("rectangle", "ellipse", "triangle"),
        "palette": [(220, 20, 60), (0, 130, 200), (60, 180, 75)],
    }
