"""A dataset class of a user's own for MMDetection 3.x: a BaseDetDataset subclass reading ``labels.jsonl`` (one
image per line: ``{"image": name, "size": [w, h], "objects": [{"class": name, "box": [x1, y1, x2, y2]}]}``)."""

import json

from mmdet.datasets import BaseDetDataset
from mmdet.registry import DATASETS
from mmengine.fileio import get_text


@DATASETS.register_module()
class JsonLinesDataset(BaseDetDataset):
    METAINFO = {"classes": ("rectangle", "ellipse", "triangle")}

    def load_data_list(self) -> list:
        classes = list(self.metainfo["classes"])
        data_list = []
        for i, line in enumerate(get_text(self.ann_file).splitlines()):
            if not line.strip():
                continue
            item = json.loads(line)
            width, height = item["size"]
            instances = [dict(bbox=obj["box"], bbox_label=classes.index(obj["class"]), ignore_flag=0)
                         for obj in item["objects"] if obj["class"] in classes]
            data_list.append(dict(img_path=f"{self.data_prefix['img']}/{item['image']}", img_id=i, width=width,
                                  height=height, instances=instances))
        return data_list
