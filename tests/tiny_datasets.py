"""Tiny datasets in the file formats of every dataset type MMDetection ships, for the tests of both generations.

Each ``make_*`` writes a few 64 px images of coloured shapes (``model_hub_mmdet.tools.shapes``) under ``root`` in
one format and returns the paths an experiment needs. The same images serve as training and validation set (the
tests train one or two batches and compare scores, they do not measure learning). Only numpy, OpenCV and the
standard library are used: no mmdet import, so either generation's suite can use this module.

Formats, as MMDetection's loaders read them:

* ``coco``/``objects365``/``cityscapes``: COCO instances JSON (Cityscapes as mmdet's ``cityscapes.py`` converter
  writes it, images under ``leftImg8bit/``);
* ``voc``: ``VOC2007/{JPEGImages,Annotations,ImageSets/Main}``; ``wider_face``: WIDER Face's XML layout;
* ``panoptic``: COCO panoptic JSON and PNG segment maps (id = R + 256 G + 256^2 B), one stuff class;
* ``lvis_v0.5``/``lvis_v1``: LVIS JSON (``file_name`` / ``coco_url``, ``frequency``, ``neg_category_ids``);
* ``openimages``: the OpenImages v6 CSVs, class hierarchy JSON and image-level labels;
* ``crowdhuman``: CrowdHuman ``.odgt`` lines (``fbox``/``vbox``/``hbox``);
* ``middle``: mmdet 2.x's ``CustomDataset`` middle format (a pickle); ``jsonl``: a format of the user's own.
"""

from __future__ import annotations

import csv
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model_hub_mmdet.tools.shapes import CLASSES, ShapesSpec, is_annotated, polygons, render_image

SIZE = 64
COUNT = 2
STUFF = "background"  # the panoptic set's one stuff class: every pixel no shape covers


@dataclass
class Obj:
    """One annotated shape: its class index, visible mask, tight box ``[x, y, w, h]`` and COCO polygons."""

    label: int
    mask: np.ndarray
    box: list[float]
    polys: list[list[float]]

    @property
    def area(self) -> float:
        return float(self.mask.sum())

    @property
    def xyxy(self) -> list[float]:
        x, y, w, h = self.box
        return [x, y, x + w, y + h]


def scenes(count: int = COUNT, seed: int = 0) -> list[tuple[np.ndarray, list[Obj]]]:
    """``count`` RGB images with their annotated shapes (each image has at least one)."""
    rng = np.random.RandomState(seed)
    spec = ShapesSpec(size=SIZE, min_objects=2, max_objects=3, min_extent=0.3, max_extent=0.6)
    out: list[tuple[np.ndarray, list[Obj]]] = []
    while len(out) < count:
        img, shapes = render_image(rng, spec)
        objs = []
        for shape in shapes:
            polys = polygons(shape.visible) if is_annotated(shape, spec) else []
            if not polys:
                continue
            ys, xs = np.nonzero(shape.visible)
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            objs.append(Obj(shape.label, shape.visible, [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], polys))
        if objs:
            out.append((img, objs))
    return out


def _write_jpg(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])


def _coco(root: Path, names: list[str], seed: int, categories: list[dict] | None = None) -> dict:
    """Write the images at ``root/names[i]`` and return their COCO instances dict (category ids 1..3)."""
    images, anns = [], []
    for i, (img, objs) in enumerate(scenes(len(names), seed)):
        _write_jpg(root / names[i], img)
        images.append(dict(id=i + 1, file_name=names[i], width=SIZE, height=SIZE))
        for o in objs:
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=o.label + 1, bbox=o.box, area=o.area,
                             segmentation=o.polys, iscrowd=0))
    cats = categories or [dict(id=i + 1, name=n, supercategory="shape") for i, n in enumerate(CLASSES)]
    return dict(images=images, annotations=anns, categories=cats)


def _dump(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def make_coco(root: Path, seed: int = 0) -> dict[str, Path]:
    """COCO instances: ``annotations/instances.json`` and ``images/``."""
    doc = _coco(root / "images", [f"{i:06d}.jpg" for i in range(COUNT)], seed)
    return dict(root=root, ann_file=_dump(root / "annotations" / "instances.json", doc), img_dir=root / "images")


make_objects365 = make_coco  # Objects365 ships COCO-format JSON


def make_cityscapes(root: Path, seed: int = 0) -> dict[str, Path]:
    """Cityscapes as mmdet's converter leaves it: COCO JSON with ``city/name_leftImg8bit.png``-style names."""
    names = [f"aachen/aachen_{i:06d}_000019_leftImg8bit.jpg" for i in range(COUNT)]
    doc = _coco(root / "leftImg8bit" / "train", names, seed)
    for img in doc["images"]:
        img["segm_file"] = img["file_name"].replace("_leftImg8bit.jpg", "_gtFine_labelTrainIds.png")
    ann = _dump(root / "annotations" / "instancesonly_filtered_gtFine_train.json", doc)
    return dict(root=root, ann_file=ann, img_dir=root / "leftImg8bit" / "train")


def _voc_xml(folder: str, name: str, objs: list[Obj], classes: tuple[str, ...]) -> str:
    parts = [f"<annotation><folder>{folder}</folder><filename>{name}.jpg</filename>",
             f"<size><width>{SIZE}</width><height>{SIZE}</height><depth>3</depth></size>"]
    for o in objs:
        x0, y0, x1, y1 = (int(v) for v in o.xyxy)
        parts.append(f"<object><name>{classes[o.label]}</name><difficult>0</difficult><truncated>0</truncated>"
                     f"<bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>"
                     "</object>")
    return "".join(parts) + "</annotation>"


def make_voc(root: Path, seed: int = 0) -> dict[str, Path]:
    """Pascal VOC: ``VOC2007/{JPEGImages,Annotations}`` and ``ImageSets/Main/trainval.txt`` (1-based corners)."""
    voc = root / "VOC2007"
    ids = [f"{i:06d}" for i in range(COUNT)]
    for name, (img, objs) in zip(ids, scenes(COUNT, seed)):
        _write_jpg(voc / "JPEGImages" / f"{name}.jpg", img)
        (voc / "Annotations").mkdir(parents=True, exist_ok=True)
        (voc / "Annotations" / f"{name}.xml").write_text(_voc_xml("VOC2007", name, objs, CLASSES))
    ann = voc / "ImageSets" / "Main" / "trainval.txt"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text("\n".join(ids) + "\n")
    return dict(root=root, ann_file=ann, img_dir=voc)


def make_wider_face(root: Path, seed: int = 0) -> dict[str, Path]:
    """WIDER Face as mmdet reads it: ``WIDER_train/Annotations/<id>.xml`` (VOC-like, one class ``face``), images in
    ``WIDER_train/<folder>/<id>.jpg``, the ids in ``train.txt``."""
    base = root / "WIDER_train"
    folder = "0--Parade"
    ids = [f"0_Parade_marchingband_1_{i}" for i in range(COUNT)]
    for name, (img, objs) in zip(ids, scenes(COUNT, seed)):
        _write_jpg(base / folder / f"{name}.jpg", img)
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        faces = [Obj(0, o.mask, o.box, o.polys) for o in objs]
        (base / "Annotations" / f"{name}.xml").write_text(_voc_xml(folder, name, faces, ("face",)))
    ann = root / "train.txt"
    ann.write_text("\n".join(ids) + "\n")
    return dict(root=root, ann_file=ann, img_dir=base)


def make_panoptic(root: Path, seed: int = 0) -> dict[str, Path]:
    """COCO panoptic: ``annotations/panoptic.json``, PNG maps in ``annotations/panoptic/``, images in ``images/``.
    Things: the three shapes; stuff: :data:`STUFF`, every other pixel."""
    cats = [dict(id=i + 1, name=n, supercategory="shape", isthing=1) for i, n in enumerate(CLASSES)]
    cats.append(dict(id=len(CLASSES) + 1, name=STUFF, supercategory="stuff", isthing=0))
    images, anns = [], []
    seg_dir = root / "annotations" / "panoptic"
    seg_dir.mkdir(parents=True, exist_ok=True)
    for i, (img, objs) in enumerate(scenes(COUNT, seed)):
        name = f"{i:06d}"
        _write_jpg(root / "images" / f"{name}.jpg", img)
        images.append(dict(id=i + 1, file_name=f"{name}.jpg", width=SIZE, height=SIZE))
        ids = np.zeros((SIZE, SIZE), np.int64)
        segments = []
        for k, o in enumerate(objs):
            seg_id = (i + 1) * 1000 + k + 1
            ids[o.mask] = seg_id
            segments.append(dict(id=seg_id, category_id=o.label + 1, bbox=o.box, area=o.area, iscrowd=0))
        stuff = ids == 0
        if stuff.any():
            ys, xs = np.nonzero(stuff)
            seg_id = (i + 1) * 1000
            ids[stuff] = seg_id
            box = [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]
            segments.append(dict(id=seg_id, category_id=len(CLASSES) + 1, bbox=box, area=float(stuff.sum()),
                                 iscrowd=0))
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
        cv2.imwrite(str(seg_dir / f"{name}.png"), rgb[:, :, ::-1])
        anns.append(dict(image_id=i + 1, file_name=f"{name}.png", segments_info=segments))
    ann = _dump(root / "annotations" / "panoptic.json", dict(images=images, annotations=anns, categories=cats))
    return dict(root=root, ann_file=ann, img_dir=root / "images", seg_dir=seg_dir)


def make_lvis(root: Path, version: str = "v1", seed: int = 0) -> dict[str, Path]:
    """LVIS ``v0.5`` (``file_name``) or ``v1`` (``coco_url``): images in ``train2017/`` below ``root``."""
    names = [f"{i:012d}.jpg" for i in range(COUNT)]
    freq = "rcf"
    cats = [dict(id=i + 1, name=n, synset=f"{n}.n.01", frequency=freq[i % 3], image_count=1, instance_count=1,
                 synonyms=[n], def_="a shape") for i, n in enumerate(CLASSES)]
    doc = _coco(root / "train2017", names, seed, categories=cats)
    for img in doc["images"]:
        img.update(neg_category_ids=[], not_exhaustive_category_ids=[])
        if version == "v1":
            img["coco_url"] = f"http://images.cocodataset.org/train2017/{img.pop('file_name')}"
        else:
            img["file_name"] = f"train2017/{img['file_name']}"
    ann = _dump(root / "annotations" / f"lvis_{version}_train.json", doc)
    return dict(root=root, ann_file=ann, img_dir=root)


def make_openimages(root: Path, seed: int = 0) -> dict[str, Path]:
    """OpenImages v6: box CSV (normalised corners), class descriptions, hierarchy JSON, image-level labels and the
    image metas pickle mmdet's ``get_image_metas.py`` writes. The classes are MIDs ``/m/0shape<k>``."""
    mids = [f"/m/0shape{k}" for k in range(len(CLASSES))]
    ann_dir = root / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    rows, labels, metas = [], [], []
    for i, (img, objs) in enumerate(scenes(COUNT, seed)):
        image_id = f"{i:016x}"
        _write_jpg(root / "OpenImages" / "train" / f"{image_id}.jpg", img)
        metas.append(dict(filename=f"{image_id}.jpg", ori_shape=(SIZE, SIZE, 3)))
        for o in objs:
            x0, y0, x1, y1 = (v / SIZE for v in o.xyxy)
            rows.append([image_id, "xclick", mids[o.label], 1, x0, x1, y0, y1, 0, 0, 0, 0, 0])
        for label in sorted({o.label for o in objs}):
            labels.append([image_id, "verification", mids[label], 1])
    head = ["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax", "IsOccluded",
            "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside"]
    _csv(ann_dir / "oidv6-train-annotations-bbox.csv", head, rows)
    _csv(ann_dir / "class-descriptions-boxable.csv", None, [[m, n] for m, n in zip(mids, CLASSES)])
    _csv(ann_dir / "oidv6-train-annotations-human-imagelabels.csv", ["ImageID", "Source", "LabelName", "Confidence"],
         labels)
    hierarchy = {"LabelName": "/m/0bl9f", "Subcategory": [{"LabelName": m} for m in mids]}
    _dump(ann_dir / "bbox_labels_600_hierarchy.json", hierarchy)
    (ann_dir / "train-image-metas.pkl").write_bytes(pickle.dumps(metas))
    return dict(root=root, ann_file=ann_dir / "oidv6-train-annotations-bbox.csv",
                label_file=ann_dir / "class-descriptions-boxable.csv",
                hierarchy_file=ann_dir / "bbox_labels_600_hierarchy.json",
                image_level_ann_file=ann_dir / "oidv6-train-annotations-human-imagelabels.csv",
                meta_file=ann_dir / "train-image-metas.pkl", img_dir=root / "OpenImages" / "train")


def _csv(path: Path, head: list[str] | None, rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        if head:
            w.writerow(head)
        w.writerows(rows)


def make_crowdhuman(root: Path, seed: int = 0) -> dict[str, Path]:
    """CrowdHuman: ``annotation_train.odgt`` (one JSON object per line; every shape a ``person`` with full, visible
    and head boxes) and ``Images/<ID>.jpg``."""
    lines = []
    for i, (img, objs) in enumerate(scenes(COUNT, seed)):
        image_id = f"273271,{i:05x}"
        _write_jpg(root / "Images" / f"{image_id}.jpg", img)
        boxes = [dict(tag="person", fbox=[int(v) for v in o.box], vbox=[int(v) for v in o.box],
                      hbox=[int(o.box[0]), int(o.box[1]), max(1, int(o.box[2]) // 2), max(1, int(o.box[3]) // 3)],
                      extra=dict(box_id=k, occ=0), head_attr=dict(ignore=0, occ=0, unsure=0))
                 for k, o in enumerate(objs)]
        lines.append(json.dumps(dict(ID=image_id, gtboxes=boxes)))
    ann = root / "annotation_train.odgt"
    ann.write_text("\n".join(lines) + "\n")
    return dict(root=root, ann_file=ann, img_dir=root / "Images")


def make_middle(root: Path, seed: int = 0) -> dict[str, Path]:
    """mmdet 2.x's ``CustomDataset`` middle format: a pickled list of ``{filename, width, height, ann: {bboxes,
    labels}}`` (boxes ``x1, y1, x2, y2`` float32, labels int64 from 0)."""
    infos = []
    for i, (img, objs) in enumerate(scenes(COUNT, seed)):
        name = f"{i:06d}.jpg"
        _write_jpg(root / "images" / name, img)
        infos.append(dict(filename=name, width=SIZE, height=SIZE, ann=dict(
            bboxes=np.array([o.xyxy for o in objs], np.float32), labels=np.array([o.label for o in objs], np.int64))))
    ann = root / "annotations.pkl"
    ann.write_bytes(pickle.dumps(infos))
    return dict(root=root, ann_file=ann, img_dir=root / "images")


def make_jsonl(root: Path, seed: int = 0) -> dict[str, Path]:
    """A format of the user's own: one JSON object per line, ``{"image": name, "size": [w, h], "objects":
    [{"class": name, "box": [x1, y1, x2, y2]}]}``."""
    lines = []
    for i, (img, objs) in enumerate(scenes(COUNT, seed)):
        name = f"{i:06d}.jpg"
        _write_jpg(root / "images" / name, img)
        lines.append(json.dumps(dict(image=name, size=[SIZE, SIZE],
                                     objects=[{"class": CLASSES[o.label], "box": o.xyxy} for o in objs])))
    ann = root / "labels.jsonl"
    ann.write_text("\n".join(lines) + "\n")
    return dict(root=root, ann_file=ann, img_dir=root / "images")


MAKERS = {
    "coco": make_coco, "voc": make_voc, "panoptic": make_panoptic, "lvis_v0.5": lambda r: make_lvis(r, "v0.5"),
    "lvis_v1": lambda r: make_lvis(r, "v1"), "cityscapes": make_cityscapes, "openimages": make_openimages,
    "objects365": make_objects365, "crowdhuman": make_crowdhuman, "wider_face": make_wider_face,
    "middle": make_middle, "jsonl": make_jsonl,
}


def make(kind: str, root: Path) -> dict[str, Path]:
    """Write the tiny dataset of ``kind`` (a key of :data:`MAKERS`) under ``root/kind``."""
    return MAKERS[kind](Path(root) / kind)
