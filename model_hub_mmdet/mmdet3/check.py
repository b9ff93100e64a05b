"""``model-hub-mmdet check``'s MMDetection 3.x part: the config as the trial builds it, and what it implies.

The core (:mod:`model_hub_mmdet.tools.check`) checks the experiment file and calls these; each returns its
problems (one line each, naming the key or file). What both generations share is in
:mod:`model_hub_mmdet.check_shared`; this module is the 3.x hook for each.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_hub_mmdet import check_shared
from model_hub_mmdet.check_shared import AnnotationFindings
from model_hub_mmdet.errors import UserError
from model_hub_mmdet.expconf import section, trainer_plan
from model_hub_mmdet.metric_names import MetricNames

# Detectors that predict masks whatever their heads say (RTMDet only with an ``Ins`` head).
MASK_DETECTORS = {"SOLO", "SOLOv2", "CondInst", "BoxInst", "YOLACT", "QueryInst", "MaskFormer", "Mask2Former",
                  "PanopticFPN", "SCNet"}


def _slots(conf: Mapping[str, Any]) -> int:
    slots = section(conf, "resources").get("slots_per_trial", 1) or 1
    return slots if isinstance(slots, int) and slots > 0 else 1


def override_problems(hparams: Mapping[str, Any], context_dir: Path) -> list[str]:
    """Every ``override_mmdet_config`` key applied on its own, so every bad key is reported, not only the first."""
    from model_hub_mmdet.mmdet3 import config

    return check_shared.override_problems(hparams, context_dir, config)


def build_config(hparams: Mapping[str, Any], conf: Mapping[str, Any], context_dir: Path) -> Any:
    """The final mmdet config, as the trial builds it."""
    from model_hub_mmdet.mmdet3.config import build_mmdet_config

    return build_mmdet_config(hparams, section(conf, "data"), context_dir, slots=_slots(conf))


def storage_problems(conf: Mapping[str, Any]) -> list[str]:
    """``data.file_client_args.backend`` must be a registered mmengine file I/O backend (or ``disk``)."""

    def registered() -> set[str]:
        from mmengine.fileio.backends import backends

        from model_hub_mmdet.mmdet3 import fileio

        fileio.register()
        return set(backends) | {"disk"}

    return check_shared.storage_problems(conf, registered)


def trainer_problems(conf: Mapping[str, Any], cfg: Any) -> list[str]:
    """Config values nothing here can honour (``resume``, ``compile``, another model wrapper or validation loop);
    gradient accumulation in the config must be Determined's; DDP's ``find_unused_parameters`` cannot be set
    through Determined's ``wrap_model``."""
    from model_hub_mmdet.mmdet3.config.keys import refusals

    plan = trainer_plan(conf)
    problems = refusals(cfg)
    wanted = int((cfg.get("optim_wrapper") or {}).get("accumulative_counts", 1) or 1)
    if wanted != plan.aggregation_frequency:
        problems.append(
            f"optim_wrapper.accumulative_counts={wanted} needs optimizations.aggregation_frequency: {wanted}"
            f" (it is {plan.aggregation_frequency}); Determined accumulates the gradients"
        )
    if find_unused_parameters(cfg) and _slots(conf) > 1:
        problems.append(find_unused_line())
    return problems


def find_unused_parameters(cfg: Any) -> bool:
    """Whether the config asks DDP to find unused parameters (top level or ``model_wrapper_cfg``)."""
    wrapper = cfg.get("model_wrapper_cfg") or {}
    return bool(cfg.get("find_unused_parameters") or wrapper.get("find_unused_parameters"))


def find_unused_line() -> str:
    """The one line for ``find_unused_parameters`` on several slots."""
    return ("find_unused_parameters=True cannot be passed to Determined's DistributedDataParallel (wrap_model takes"
            " no DDP arguments): train on one slot, or make every parameter take part in the loss")


def produced_metrics(cfg: Any) -> MetricNames:
    """The names the ``val_evaluator`` reports, each metric's ``prefix`` and keys."""
    from model_hub_mmdet.mmdet3.evaluation import metric_names

    return metric_names(cfg.get("val_evaluator"), _classes(cfg))


def metric_problems(conf: Mapping[str, Any], cfg: Any) -> list[str]:
    """The searcher's metric is one the evaluation produces; segm needs a mask head."""
    produced = produced_metrics(cfg)
    segm = any(name.startswith("coco/segm") for name in produced.names) and not _has_mask_head(cfg.model)
    line = f"val_evaluator asks for segm but {cfg.model.type} has no mask head" if segm else None
    return check_shared.metric_problems(conf, produced, "val_evaluator", line)


def annotation_problems(cfg: Any, conf: Mapping[str, Any], context_dir: Path) -> list[str]:
    """The libraries the datasets and metrics need, then the annotation files of the train/val/test datasets that
    are on this machine, loaded as the trial loads them (the dataset's own class, with this package's checks for
    COCO: JSON, COCO sections, images, the dataset's classes); files in a bucket are checked when the trial
    starts."""
    from model_hub_mmdet.mmdet3.config.walk import SPLITS, annotated_dataset, split_dataset

    nodes = [(split, annotated_dataset(split_dataset(cfg, split))) for split in SPLITS]
    found = check_shared.inspect_annotations(
        nodes, conf, context_dir, _path_of, lambda split, node, path: _load(node, path, context_dir))
    return _library_problems(cfg) + found[0]


def annotation_warnings(cfg: Any, conf: Mapping[str, Any], context_dir: Path) -> list[str]:
    """What MMDetection tolerates in the COCO instances files on this machine (trained as it trains it: boxes it
    drops, crowd regions, ...), one line per file, by the checker both generations share."""
    from model_hub_mmdet.mmdet3.config.walk import SPLITS, annotated_dataset, split_dataset

    nodes = [(split, annotated_dataset(split_dataset(cfg, split))) for split in SPLITS]
    return check_shared.inspect_annotations(nodes, conf, context_dir, _path_of, _tolerated)[1]


def _tolerated(split: str, node: Mapping, path: str) -> AnnotationFindings:
    """The checker's warning line for a dataset that reads COCO instances as ``CocoDataset`` does (its problems
    are left to mmdet's own load: :func:`annotation_problems`)."""
    from mmdet.datasets import CocoDataset
    from mmdet.registry import DATASETS

    from model_hub_mmdet.coco_annotations import inspect_file

    kind = DATASETS.get(str(node.get("type"))) if node.get("type") else None
    owners = {next((k for k in getattr(kind, "__mro__", ()) if name in vars(k)), None)
              for name in ("load_data_list", "parse_data_info")}
    if owners != {CocoDataset} or not os.path.isfile(path):
        return AnnotationFindings()
    classes = (node.get("metainfo") or {}).get("classes") or kind.METAINFO.get("classes")
    filter_empty_gt = bool((node.get("filter_cfg") or {}).get("filter_empty_gt", False))
    report = inspect_file(path, tuple(classes) if classes else None, filter_empty_gt=filter_empty_gt,
                          test_mode=bool(node.get("test_mode", split != "train")))
    return AnnotationFindings(warning=None if report.problems else report.warning_line(path))


def _library_problems(cfg: Any) -> list[str]:
    from mmdet.registry import DATASETS, METRICS

    from model_hub_mmdet.mmdet3.config.walk import SPLITS, annotated_dataset, split_dataset
    from model_hub_mmdet.mmdet3.evaluation import metric_configs

    needs: dict[str, str] = {}
    kinds = [(DATASETS.get(str(annotated_dataset(split_dataset(cfg, s)).get("type"))), "") for s in SPLITS]
    kinds += [(METRICS.get(str(m.get("type"))), "val_evaluator ") for m in metric_configs(cfg.get("val_evaluator"))]
    for kind, where in kinds:
        names = {k.__name__ for k in getattr(kind, "__mro__", ())}
        for marker, library in (("CocoPanoptic", "panopticapi"), ("LVIS", "lvis"), ("CityScapesMetric",
                                                                                     "cityscapesscripts")):
            if any(n.startswith(marker) for n in names):
                needs.setdefault(library, f"{where}{kind.__name__}")
    return check_shared.missing_library_problems(needs)


def _path_of(node: Mapping, context_dir: Path) -> str:
    ann_file = node["ann_file"]
    root = node.get("data_root") or ""
    return ann_file if os.path.isabs(ann_file) else os.path.join(str(context_dir), root, ann_file)


def _load(node: Mapping, path: str, context_dir: Path) -> AnnotationFindings:
    """The dataset built as the trial builds it, without its pipeline (mmdet's own load and this package's checks
    on it); relative paths are the context directory's, where the trial runs."""
    from mmdet.registry import DATASETS

    root = os.path.join(str(context_dir), node.get("data_root") or "")
    dataset_cfg = {**copy.deepcopy(dict(node)), "data_root": root, "pipeline": [], "lazy_init": False}
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress
            DATASETS.build(dataset_cfg)
    except UserError as err:
        return AnnotationFindings([str(err)])
    except Exception as err:  # noqa: BLE001 - what mmdet's own load raises is what the trial would meet
        return AnnotationFindings([check_shared.load_failure(path, str(node.get("type")), err)])
    return AnnotationFindings()


def summarize(cfg: Any) -> dict[str, Any]:
    """What ``check`` prints of the final config."""
    from model_hub_mmdet.mmdet3.config.walk import annotated_dataset, split_dataset

    schedulers = cfg.get("param_scheduler") or []
    schedulers = [schedulers] if isinstance(schedulers, Mapping) else list(schedulers)
    schedule = " + ".join(str(s.get("type")) for s in schedulers if isinstance(s, Mapping)) or "constant"
    train = annotated_dataset(split_dataset(cfg, "train"))
    classes = check_shared.classes_summary((train.get("metainfo") or {}).get("classes"), train.get("type"))
    optimizer = (cfg.get("optim_wrapper") or {}).get("optimizer") or {}
    return check_shared.config_summary(cfg.model, train.get("type"), classes, optimizer, schedule,
                                       produced_metrics(cfg))


def _classes(cfg: Any) -> list[str] | None:
    """The validation dataset's classes (its ``metainfo``, or its class's default)."""
    from mmdet.registry import DATASETS

    from model_hub_mmdet.mmdet3.config.walk import annotated_dataset, split_dataset

    val = annotated_dataset(split_dataset(cfg, "val"))
    classes = (val.get("metainfo") or {}).get("classes")
    if not classes:
        kind = DATASETS.get(str(val.get("type"))) if val.get("type") else None
        classes = (getattr(kind, "METAINFO", None) or {}).get("classes")
    return list(classes) if classes and not isinstance(classes, str) else None


def _has_mask_head(model_cfg: Mapping) -> bool:
    head = model_cfg.get("bbox_head") or {}
    return check_shared.has_mask_head(model_cfg, MASK_DETECTORS, "Ins" in str(head.get("type", "")))
