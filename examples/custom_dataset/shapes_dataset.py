"""A custom dataset class, registered exactly as in plain MMDetection (``@DATASETS.register_module()``).

The config imports it with ``custom_imports``; model_hub_mmdet puts the context directory on ``sys.path``
(as Determined does on a cluster), so ``examples.custom_dataset.shapes_dataset`` imports locally too.
"""

from mmdet.datasets import DATASETS, CocoDataset


@DATASETS.register_module()
class ShapesDataset(CocoDataset):
    """COCO-format annotations with this project's own class names and drawing colours."""

    CLASSES = ("rectangle", "ellipse", "triangle")
    PALETTE = [(220, 20, 60), (0, 130, 200), (60, 180, 75)]
