"""``model-hub-mmdet check``'s MMDetection 2.x part: the config as the trial builds it, and what it implies.

The core (:mod:`model_hub_mmdet.tools.check`) checks the experiment file and calls these; each returns its
problems (one line each, naming the key or file). What both generations share is in
:mod:`model_hub_mmdet.check_shared`; this module is the 2.x hook for each.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_hub_mmdet import check_shared
from model_hub_mmdet.check_shared import AnnotationFindings
from model_hub_mmdet.expconf import section, trainer_plan
from model_hub_mmdet.metric_names import MetricNames

MASK_DETECTORS = {"SOLO", "SOLOv2", "CondInst", "YOLACT", "QueryInst", "MaskFormer", "Mask2Former", "PanopticFPN",
                  "SCNet"}


def override_problems(hparams: Mapping[str, Any], context_dir: Path) -> list[str]:
    """Every ``override_mmdet_config`` key applied on its own, so every bad key is reported, not only the first."""
    from model_hub_mmdet.mmdet2 import config

    return check_shared.override_problems(hparams, context_dir, config)


def build_config(hparams: Mapping[str, Any], conf: Mapping[str, Any], context_dir: Path) -> Any:
    """The final mmdet config, as the trial builds it."""
    from model_hub_mmdet.mmdet2.config import build_mmdet_config, finalize

    cfg = build_mmdet_config(hparams, section(conf, "data"), context_dir)
    finalize(cfg)
    return cfg


def storage_problems(conf: Mapping[str, Any]) -> list[str]:
    """``data.file_client_args.backend`` must be a registered FileClient backend."""

    def registered() -> list[str]:
        from mmcv import FileClient

        from model_hub_mmdet.mmdet2 import fileio

        fileio.register()
        return list(FileClient._backends)

    return check_shared.storage_problems(conf, registered)


def trainer_problems(conf: Mapping[str, Any], cfg: Any) -> list[str]:
    """Config values nothing here can honour (``resume_from``, a ``workflow`` with a val phase); gradient
    accumulation in the config must be Determined's (``optimizations.aggregation_frequency``)."""
    from model_hub_mmdet.mmdet2.config.keys import refusals

    plan = trainer_plan(conf)
    problems = refusals(cfg)
    opt_cfg = cfg.get("optimizer_config") or {}
    if "cumulative_iters" in opt_cfg:
        wanted = int(opt_cfg["cumulative_iters"])
        if wanted != plan.aggregation_frequency:
            problems.append(
                f"optimizer_config.cumulative_iters={wanted} needs optimizations.aggregation_frequency: {wanted}"
                f" (it is {plan.aggregation_frequency}); Determined accumulates the gradients"
            )
    return problems


def produced_metrics(cfg: Any) -> MetricNames:
    """The names the validation dataset's ``evaluate`` reports for ``cfg.evaluation``."""
    from model_hub_mmdet.mmdet2.config import split_evaluation_cfg
    from model_hub_mmdet.mmdet2.evaluation import metric_names

    return metric_names(split_evaluation_cfg(cfg.get("evaluation"))[0], cfg.data.get("val") or None)


def metric_problems(conf: Mapping[str, Any], cfg: Any) -> list[str]:
    """The searcher's metric is one the evaluation produces; segm needs a mask head."""
    from model_hub_mmdet.mmdet2.config import split_evaluation_cfg

    metric = split_evaluation_cfg(cfg.get("evaluation"))[0].get("metric")
    segm = "segm" in str(metric) and not check_shared.has_mask_head(cfg.model, MASK_DETECTORS)
    line = f"evaluation.metric asks for segm but {cfg.model.type} has no mask head" if segm else None
    return check_shared.metric_problems(conf, produced_metrics(cfg), "evaluation", line)


def annotation_problems(cfg: Any, conf: Mapping[str, Any], context_dir: Path) -> list[str]:
    """The libraries the datasets and evaluation need, then what MMDetection cannot train on in the annotation
    files of the train/val/test datasets that are on this machine (files in a bucket are checked when the trial
    starts): a COCO instances file by this package's checker, any other type by its dataset's own loader."""
    return _unregistered_types(cfg) + _library_problems(cfg) + _inspect_annotations(cfg, conf, context_dir)[0]


def annotation_warnings(cfg: Any, conf: Mapping[str, Any], context_dir: Path) -> list[str]:
    """What MMDetection tolerates in those files (trained as it trains it): one line per file, no problem."""
    return _inspect_annotations(cfg, conf, context_dir)[1]


def _unregistered_types(cfg: Any) -> list[str]:
    """A dataset type (wrappers included) that mmdet's registry lacks, as the trial's build says it."""
    from mmdet.datasets import DATASETS

    from model_hub_mmdet.mmdet2.config.walk import dataset_configs

    problems = []
    for split in ("train", "val", "test"):
        for node in dataset_configs(cfg.data.get(split) or {}):
            kind = node.get("type")
            if isinstance(kind, str) and DATASETS.get(kind) is None:
                problems.append(f"data.{split}: {kind} is not in the dataset registry; check the type name, or import"
                                " the module that registers it with custom_imports = dict(imports=[...])")
    return problems


def _library_problems(cfg: Any) -> list[str]:
    from mmdet.datasets import DATASETS, CityscapesDataset, CocoPanopticDataset, LVISV05Dataset

    from model_hub_mmdet.mmdet2.config import split_evaluation_cfg
    from model_hub_mmdet.mmdet2.config.walk import annotated_dataset

    needs: dict[str, str] = {}
    metric = split_evaluation_cfg(cfg.get("evaluation"))[0].get("metric")
    for split in ("train", "val", "test"):
        node = annotated_dataset(cfg.data.get(split) or {})
        kind = DATASETS.get(str(node.get("type"))) if isinstance(node, Mapping) else None
        if not isinstance(kind, type):
            continue
        if issubclass(kind, CocoPanopticDataset):
            needs.setdefault("panopticapi", kind.__name__)
        if issubclass(kind, LVISV05Dataset):
            needs.setdefault("lvis", kind.__name__)
        if split == "val" and issubclass(kind, CityscapesDataset) and "cityscapes" in str(metric):
            needs.setdefault("cityscapesscripts", "evaluation.metric 'cityscapes'")
    return check_shared.missing_library_problems(needs)


_FOUND: dict[tuple, tuple[list[str], list[str]]] = {}


def _inspect_annotations(cfg: Any, conf: Mapping[str, Any], context_dir: Path) -> tuple[list[str], list[str]]:
    from model_hub_mmdet.mmdet2.config.walk import annotated_dataset

    nodes = [(split, annotated_dataset(cfg.data.get(split) or {})) for split in ("train", "val", "test")]
    key = (repr(nodes), str(context_dir), repr(section(conf, "data").get("file_client_args")))
    if key not in _FOUND:  # check asks for problems and warnings apart
        _FOUND.clear()
        _FOUND[key] = check_shared.inspect_annotations(
            nodes, conf, context_dir, _path_of, lambda split, node, path: _inspect(split, node, path, context_dir))
    return _FOUND[key]


def _path_of(node: Mapping, context_dir: Path) -> str:
    """Where mmdet reads ``ann_file`` from, the trial running in the context directory (``data_root`` first)."""
    ann_file = node["ann_file"]
    return ann_file if os.path.isabs(ann_file) else os.path.join(str(context_dir), node.get("data_root") or "",
                                                                   ann_file)


def _inspect(split: str, node: Mapping, path: str, context_dir: Path) -> AnnotationFindings:
    """A COCO instances file (a dataset that loads with ``CocoDataset.load_annotations``) by this package's checker;
    any other type (panoptic, LVIS, VOC XML, the middle format, a user's own) by its own loader, as mmdet loads it."""
    from mmdet.datasets import DATASETS, CocoDataset

    kind = DATASETS.get(str(node.get("type")))
    if not isinstance(kind, type):
        return AnnotationFindings()
    loader = next((k for k in kind.__mro__ if "load_annotations" in vars(k)), None)
    if loader is CocoDataset and os.path.isfile(path):
        classes = node.get("classes") or kind.CLASSES
        from model_hub_mmdet.mmdet2.datasets.annotations import inspect_file

        report = inspect_file(path, tuple(classes) if not isinstance(classes, str) else classes,
                              filter_empty_gt=bool(node.get("filter_empty_gt", True)), test_mode=split != "train")
        return AnnotationFindings([f"{path}: {p}" for p in report.problems], report.warning_line(path))
    return _mmdet_load(split, node, path, kind, context_dir)


def _mmdet_load(split: str, node: Mapping, path: str, kind: type, context_dir: Path) -> AnnotationFindings:
    """Build the dataset as the trial does, without its pipeline: mmdet's own loading and filtering, nothing more."""
    import contextlib
    import copy
    import io
    import warnings

    from model_hub_mmdet.errors import UserError

    args = {k: copy.deepcopy(v) for k, v in node.items() if k != "type"}
    root = node.get("data_root") or ""
    # Relative paths are the context directory's, where the trial runs.
    args.update(pipeline=[], test_mode=split != "train", data_root=os.path.join(str(context_dir), root))
    try:
        # pycocotools' progress, and mmdet's notes on its own settings (they come again when the trial builds it)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            kind(**args)
    except UserError as err:
        return AnnotationFindings([str(err)])
    except Exception as err:  # noqa: BLE001 - what mmdet's own load raises is what the trial would meet
        return AnnotationFindings([check_shared.load_failure(path, kind.__name__, err)])
    return AnnotationFindings()


def summarize(cfg: Any) -> dict[str, Any]:
    """What ``check`` prints of the final config."""
    from model_hub_mmdet.mmdet2.config.walk import annotated_dataset

    lr_config = cfg.get("lr_config") or {}
    warmup = lr_config.get("warmup")
    warmup = f", {warmup} warmup {lr_config.get('warmup_iters')} it" if warmup else ""
    train = annotated_dataset(cfg.data.get("train") or {})
    classes = check_shared.classes_summary(train.get("classes"), train.get("type"))
    return check_shared.config_summary(cfg.model, (cfg.data.get("train") or {}).get("type"), classes,
                                       cfg.get("optimizer") or {}, f"{lr_config.get('policy', 'constant')}{warmup}",
                                       produced_metrics(cfg))
