"""What the annotation checks add to MMDetection's own ``CocoDataset.load_annotations`` on a COCO-2017-size file.

    .venv/bin/python bench/coco_annotations.py [--pairs 3] [--quick] [--write bench/RESULTS.md]

Generates a COCO file of train2017's size (118,287 images, 860,001 annotations, 80 categories with COCO's ids
1..90, polygon masks, crowd regions in uncompressed RLE, about 1% of images without annotations, the two
zero-height boxes) once, then loads it alternately in fresh processes: ``mmdet`` is mmdet 2.28's own
``load_annotations`` (the method this package wraps), ``ours`` the wrapped one (mmdet's load, then both tiers of
the check on pycocotools' index). Each process reports the seconds of the call and its peak RSS (the parsed file
dominates it); the ours process then times the check alone once more on the same parsed file, which the load's
run-to-run variation does not blur. The ratios are taken within each pair, then the median. The polygons are
smaller than COCO's (8 points), so mmdet's side is cheaper than on the real file and the ratio is, if anything,
overstated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES, ANNOTATIONS = 118_287, 860_001
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]  # COCO's 80 ids


def generate(path: Path, images: int, annotations: int, seed: int = 0) -> None:
    """Write a COCO file of ``images`` images and ``annotations`` annotations with train2017's quirks."""
    from mmdet.datasets import CocoDataset

    rng = random.Random(seed)
    names = getattr(CocoDataset, "CLASSES", None) or CocoDataset.METAINFO["classes"]  # mmdet 2.x, 3.x
    cats = [{"id": cid, "name": name, "supercategory": "thing"} for cid, name in zip(COCO_IDS, names)]
    imgs = [{"id": 1 + i * 5, "file_name": f"{1 + i * 5:012d}.jpg", "width": 640, "height": 480, "license": 1}
            for i in range(images)]
    with_anns = [img["id"] for img in imgs[: int(images * 0.99)]]  # about 1% without annotations
    anns = []
    for n in range(annotations):
        x, y = round(rng.uniform(0, 600), 2), round(rng.uniform(0, 440), 2)
        w, h = round(rng.uniform(1, 40), 2), round(rng.uniform(1, 40), 2)
        ann = {"id": n + 1, "image_id": with_anns[n % len(with_anns)], "category_id": COCO_IDS[n % 80],
               "bbox": [x, y, w, h], "area": round(w * h, 2), "iscrowd": 0,
               "segmentation": [[round(v, 2) for v in (x, y, x + w / 2, y, x + w, y, x + w, y + h / 2, x + w,
                                                         y + h, x + w / 2, y + h, x, y + h, x, y + h / 2)]]}
        if n % 100 == 99:  # crowd regions, uncompressed RLE as train2017 stores them
            ann["iscrowd"] = 1
            ann["segmentation"] = {"counts": [int(480 * x) + int(y), int(h)] * 20 + [1000], "size": [480, 640]}
        anns.append(ann)
    for ann, bbox in zip(anns[:2], ([296.65, 388.33, 1.03, 0.0], [9.98, 188.56, 5.54, 0.0])):
        ann.update(bbox=bbox, area=0.0)  # train2017's annotations 918 and 2206849
    path.write_text(json.dumps({"info": {}, "licenses": [], "images": imgs, "annotations": anns,
                                "categories": cats}))


def load_once(path: str, side: str) -> dict:
    """In this process: run one side's ``load_annotations`` on ``path``; seconds and peak RSS."""
    import contextlib
    import io
    import logging

    from model_hub_mmdet import generation

    generation.setup()
    from mmdet.datasets import CocoDataset

    from model_hub_mmdet.mmdet2.datasets.patching import MARK

    logging.getLogger("model_hub_mmdet").setLevel(logging.ERROR)
    method = CocoDataset.load_annotations if side == "ours" else getattr(CocoDataset.load_annotations, MARK)
    dataset = CocoDataset.__new__(CocoDataset)  # only what load_annotations reads
    dataset.CLASSES, dataset.ann_file, dataset.filter_empty_gt, dataset.test_mode = (
        CocoDataset.CLASSES, path, True, False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        infos = method(dataset, path)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"side": side, "seconds": seconds, "peak_mb": peak / 1024, "start_mb": before / 1024,
           "images": len(infos), "annotations": len(dataset.coco.anns)}
    if side == "ours":  # the check alone, again on the same parsed file: what the wrapper adds, free of noise
        from model_hub_mmdet.mmdet2.datasets.annotations import inspect_coco

        started = time.perf_counter()
        inspect_coco(dataset.coco.dataset, dataset.CLASSES, coco=dataset.coco)
        out["check_seconds"] = time.perf_counter() - started
    return out


def run_side(path: Path, side: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", side, str(path)], capture_output=True, text=True,
                         check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tenth of the size, one pair (shape of the table)")
    parser.add_argument("--file", help="reuse this generated annotation file")
    parser.add_argument("--write", help="append the table to this markdown file")
    parser.add_argument("--json", help="full results as JSON here (default runs/bench/coco_annotations-TIME.json)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(load_once(args.child[1], args.child[0])))
        return
    images, annotations, pairs = (IMAGES // 10, ANNOTATIONS // 10, 1) if args.quick else (
        IMAGES, ANNOTATIONS, args.pairs)
    path = Path(args.file) if args.file else Path(tempfile.mkdtemp(prefix="bench-coco-")) / "instances.json"
    if not path.is_file():
        started = time.perf_counter()
        generate(path, images, annotations)
        print(f"generated {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
    rows = []
    for pair in range(pairs):
        order = ("mmdet", "ours") if pair % 2 == 0 else ("ours", "mmdet")
        result = {side: run_side(path, side) for side in order}
        rows.append(result)
        print(f"pair {pair + 1}: " + ", ".join(f"{s} {r['seconds']:.2f} s {r['peak_mb']:.0f} MB"
                                               for s, r in result.items())
              + f", check alone {result['ours']['check_seconds']:.2f} s", file=sys.stderr)
    time_ratio = statistics.median(r["ours"]["seconds"] / r["mmdet"]["seconds"] for r in rows)
    check_ratio = statistics.median(r["ours"]["check_seconds"] / r["mmdet"]["seconds"] for r in rows)
    mem_ratio = statistics.median(r["ours"]["peak_mb"] / r["mmdet"]["peak_mb"] for r in rows)

    def med(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in rows)

    lines = [
        f"{images:,} images, {annotations:,} annotations ({path.stat().st_size / 2**20:.0f} MiB of JSON), "
        f"{pairs} pair(s) of fresh processes, medians; {os.cpu_count()} cores.",
        "",
        "| load_annotations | seconds | peak RSS MB |",
        "|---|---:|---:|",
        f"| mmdet 2.28 (pycocotools parse + index, data_infos) | {med('mmdet', 'seconds'):.2f} |"
        f" {med('mmdet', 'peak_mb'):.0f} |",
        f"| ours (the same + both tiers of the check) | {med('ours', 'seconds'):.2f} | {med('ours', 'peak_mb'):.0f} |",
        f"| ours / mmdet (median of per-pair ratios) | {time_ratio:.3f} | {mem_ratio:.3f} |",
        f"| the check alone (timed again in the ours process) / mmdet | {check_ratio:.3f} | |",
        "",
        "All pairs (s, MB): " + "; ".join(
            f"mmdet {r['mmdet']['seconds']:.2f}/{r['mmdet']['peak_mb']:.0f}, ours {r['ours']['seconds']:.2f}/"
            f"{r['ours']['peak_mb']:.0f}" for r in rows),
    ]
    print("\n".join(lines))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import write_results

    write_results("coco_annotations", {"images": images, "annotations": annotations, "pairs": rows,
                                       "time_ratio": time_ratio, "memory_ratio": mem_ratio,
                                       "check_ratio": check_ratio}, args.json)
    if args.write:
        with open(args.write, "a", encoding="utf-8") as f:
            f.write("\n## COCO annotation checks (issue 20, item 1)\n\n" + "\n".join(lines) + "\n\nReproduce: "
                    "`.venv/bin/python bench/coco_annotations.py --pairs 3`.\n")


if __name__ == "__main__":
    main()
