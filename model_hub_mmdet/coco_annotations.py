"""COCO instances annotation files in two tiers: what MMDetection cannot train on, and what it tolerates. The
checker both generations share (no mmcv, mmengine or mmdet import: it reads the JSON and pycocotools' index).

The rule: never stricter than MMDetection on data it trains on, never silently different from it.

* **Refused** (one line naming the file, before any training): what mmdet 2.28's ``CocoDataset`` cannot train on.
  Not JSON, not an object, a missing section, entries of the wrong type or without the keys mmdet reads
  (``file_name``, ``width``, ``height``; an annotation's ``id``, ``image_id``, ``category_id``, ``bbox`` of four
  finite numbers, and ``area`` where mmdet reads it), ids that break the file's structure (duplicate image, category
  or annotation ids), two categories of one class name, and ``classes`` that would get labels other than their
  index (below).
* **Trained exactly as mmdet trains it**, counted in one warning line per file with a first example of each kind:
  boxes mmdet drops (outside the image, area <= 0, width or height < 1), annotations marked ``ignore``, of a
  category outside ``classes``, of an image or category id the file does not list, crowd regions (ignored boxes),
  images without annotations of the classes (left out of training by ``filter_empty_gt``). mmdet 3.3's
  ``CocoDataset`` drops and ignores the same (its ``parse_data_info``), so 3.x's ``check`` reports this tier too.

Labels: ``CocoDataset`` numbers the labels in the order of the file's categories that are named in ``classes``, not
in the order of ``classes``, while the model and the exported checkpoint name label ``k`` ``classes[k]``. A class
the file lacks, or categories in another order, would silently give classes the wrong label; that is refused
exactly when some class would get a label other than its index, naming the classes and an order that works.
Missing classes after every present one shift nothing: a warning.

Where mmdet raised for a bad file, the error here is a subclass of what it raised too (``AssertionError`` for
duplicate annotation ids, ``KeyError`` for a missing key, ``TypeError`` for a wrong type), so code that caught
mmdet's error still catches it. Each generation hooks it into its dataset (2.x:
:mod:`model_hub_mmdet.mmdet2.datasets.annotations`). ``bench/coco_annotations.py`` measures the cost.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from model_hub_mmdet.errors import DataError
from model_hub_mmdet.gc_pause import gc_paused

Reader = Callable[[str], bytes]  # a path (local or in a bucket) -> its bytes
SECTIONS = ("images", "annotations", "categories")
DROPPED = "boxes of zero area, under 1 px wide or high, or outside their image (dropped)"


class AnnotationError(DataError):
    """An annotation file MMDetection cannot train on; the message names the file and every problem, on one line.

    Raised as a subclass that also derives from the exceptions mmdet itself raised for the same file (see
    :func:`error_class`)."""

    def __str__(self) -> str:  # KeyError's own str() would quote the message
        return str(self.args[0]) if self.args else ""


@functools.cache
def error_class(*mmdet_errors: type[BaseException]) -> type[AnnotationError]:
    """:class:`AnnotationError` that is also each of ``mmdet_errors`` (e.g. ``AssertionError``)."""
    bases = tuple(e for e in dict.fromkeys(mmdet_errors) if not issubclass(AnnotationError, e))
    if not bases:
        return AnnotationError
    return type("AnnotationError", (AnnotationError, *bases), {"__module__": __name__})


def _kind(value: Any) -> str:
    """A JSON-ish name for ``value``'s type (for messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (messages stay one short line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


class _Tally:
    """Problems of one kind counted, with the first occurrence as an example."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.first: dict[str, str] = {}

    def add(self, kind: str, where: str, count: int = 1) -> None:
        if kind not in self.counts:
            self.counts[kind] = 0
            self.first[kind] = where
        self.counts[kind] += count

    def lines(self) -> list[str]:
        return [f"{kind}: {count} (first: {self.first[kind]})" for kind, count in self.counts.items()]


class AnnotationReport:
    """What :func:`inspect_coco` found: ``problems`` refuse the file, ``warnings`` describe what mmdet tolerates
    (and how it trains it); ``raises`` are the exception types mmdet raised or would raise for the problems."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.raises: list[type[BaseException]] = []

    def refuse(self, problem: str, raises: type[BaseException] | None = None) -> None:
        self.problems.append(problem)
        if raises is not None:
            self.raises.append(raises)

    def error(self, name: str, limit: int = 5) -> AnnotationError:
        """One error line for the problems, naming the file ``name``."""
        more = f"; and {len(self.problems) - limit} more" if len(self.problems) > limit else ""
        raises = sorted(set(self.raises), key=lambda e: e.__name__)
        return error_class(*raises)(f"{name}: {'; '.join(self.problems[:limit])}{more}")

    def warning_line(self, name: str) -> str | None:
        """The one warning line of the file, or None when there is nothing to say."""
        if not self.warnings:
            return None
        return f"{name}: trained as MMDetection trains it: {'; '.join(self.warnings)}"


# ------------------------------------------------------------------------------------------------- tier 1
NUMBER, TEXT = ((int, float), "a number"), ((str,), "a string")


def _entries(
    items: Sequence[Any], section: str, keys: dict[str, tuple[tuple[type, ...], str]], report: AnnotationReport
) -> dict[Any, Any]:
    """Check the entries of ``images``/``categories``: objects with a unique id and ``keys`` (key -> (accepted
    types, description)); return the complete ones by id. One fast test per entry; the reasons are worked out
    only for entries that fail it."""
    tally: dict[str, tuple[int, str, type[BaseException]]] = {}

    def add(kind: str, where: str, raises: type[BaseException]) -> None:
        count, first, _ = tally.get(kind, (0, where, raises))
        tally[kind] = (count + 1, first, raises)

    wanted = list(keys.items())
    by_id: dict[Any, Any] = {}
    for pos, item in enumerate(items):
        if type(item) is dict:
            ident = item.get("id")
            if (type(ident) is int or type(ident) is str) and ident not in by_id and all(
                    type(item.get(k)) in kinds for k, (kinds, _) in wanted):
                by_id[ident] = item
                continue
        where = f"{section}[{pos}]"
        if not isinstance(item, Mapping):
            add(f"{section} entries that are not objects", f"{where} is a {_kind(item)}", TypeError)
            continue
        ident = item.get("id")
        if not _is_id(ident):
            add(f"{section} entries without an 'id'", f"{where} id={_short(ident)}",
                KeyError if "id" not in item else TypeError)
            continue
        if ident in by_id:
            add(f"{section} entries with a duplicate 'id'", f"{where} id {_short(ident)}", AssertionError)
            continue
        complete = True
        for key, (kinds, what) in wanted:
            value = item.get(key)
            if not isinstance(value, kinds) or isinstance(value, bool):
                add(f"{section} entries without {what} '{key}'", f"{where} {key}={_short(value)}",
                    KeyError if key not in item else TypeError)
                complete = False
        if complete:  # the later checks read these keys
            by_id[ident] = item
    for kind, (count, first, raises) in tally.items():
        report.refuse(f"{kind}: {count} (first: {first})", raises)
    return by_id


def _sections(obj: Any, report: AnnotationReport) -> dict[str, Sequence[Any] | None]:
    if not isinstance(obj, Mapping):
        report.refuse(f"must be a JSON object with {', '.join(SECTIONS)} (COCO format), but the file holds a JSON"
                      f" {_kind(obj)}", TypeError)
        return dict.fromkeys(SECTIONS)
    sections: dict[str, Sequence[Any] | None] = {}
    for key in SECTIONS:
        value = obj.get(key)
        if key not in obj:
            report.refuse(f"has no '{key}' list (COCO format needs {', '.join(SECTIONS)})", KeyError)
        elif not isinstance(value, (list, tuple)):
            report.refuse(f"'{key}' must be a list, got a JSON {_kind(value)}", TypeError)
        sections[key] = value if isinstance(value, (list, tuple)) else None
    return sections


# --------------------------------------------------------------------------------------------- the labels
def _label_problems(
    cats: Sequence[Mapping[str, Any]], classes: Sequence[str], report: AnnotationReport, warn: _Tally
) -> list[Any]:
    """mmdet's ``cat_ids`` (``coco.get_cat_ids(cat_names=classes)``: the file's order); refuse when a class
    would get a label other than its index in ``classes``."""
    wanted = set(classes)
    named = [c for c in cats if isinstance(c, Mapping) and c.get("name") in wanted]
    names = [c["name"] for c in named]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        report.refuse(f"categories that share a class name get one label each, more labels than classes:"
                      f" {', '.join(_short(n, 40) for n in twice[:10])}; rename or remove the extra categories")
        return [c["id"] for c in named]
    label = {name: k for k, name in enumerate(names)}
    missing = [c for c in classes if c not in label]
    wrong = [(k, c) for k, c in enumerate(classes) if c in label and label[c] != k]
    if wrong:
        shown = ", ".join(f"{_short(c, 40)} (index {k}) would be label {label[c]}" for k, c in wrong[:5])
        lacks = f"; the file lacks {', '.join(_short(c, 40) for c in missing[:5])}" if missing else ""
        order = ", ".join(_short(c, 40) for c in [*names, *missing])
        report.refuse(
            f"classes would get other labels than their index, since mmdet numbers the labels in the order of the"
            f" file's categories: {shown}{', ...' if len(wrong) > 5 else ''}{lacks}; an order of classes that"
            f" works: ({order})"
        )
    elif missing:
        warn.add("classes without a category in the file (no label shifts: they come after every present class)",
                 ", ".join(_short(c, 40) for c in missing[:5]), len(missing))
    return [c["id"] for c in named]


# ----------------------------------------------------------------------------------------- the annotations
def _bad_annotation(ann: Any) -> tuple[str, str, type[BaseException]]:
    """Why ``CocoDataset`` cannot read ``ann`` (kind, example, what mmdet raises); only for the few that fail the
    fast path of :func:`_annotations`."""
    if not isinstance(ann, Mapping):
        return "annotations that are not objects", f"is a {_kind(ann)}", TypeError
    for key in ("id", "image_id", "category_id", "bbox"):
        if key not in ann:
            return f"annotations without {key!r}", f"id {_short(ann.get('id'))}", KeyError
    for key in ("id", "image_id", "category_id"):
        try:
            hash(ann[key])
        except TypeError:  # pycocotools keys its index by these
            return f"annotations with an unusable {key!r}", f"{key}={_short(ann[key])}", TypeError
    bbox = ann["bbox"]
    return ("annotations without a 'bbox' of 4 finite numbers [x, y, width, height]",
            f"id {_short(ann['id'])} bbox={_short(bbox)}", TypeError)


def _annotations(
    anns: Sequence[Any],
    sizes: Mapping[Any, tuple[Any, Any]],
    all_cats: Mapping[Any, Any],
    cat_ids: set,
    report: AnnotationReport,
    warn: _Tally,
    coco: Any,
) -> set:
    """Check each annotation as ``CocoDataset._parse_ann_info`` reads it, in its order of tests; return the ids of
    the images that hold an annotation of ``cat_ids`` (mmdet's ``ids_in_cat``). ``sizes``: image id -> (width,
    height). This loop is the check's whole cost on a large file (bench/coco_annotations.py): one fast path, and
    the reasons are worked out only for annotations that leave it."""
    bad: dict[str, tuple[int, str, type[BaseException]]] = {}

    def refuse(kind: str, where: str, raises: type[BaseException]) -> None:
        count, first, _ = bad.get(kind, (0, where, raises))
        bad[kind] = (count + 1, first, raises)

    index = getattr(coco, "catToImgs", None)
    ids_in_cat: set = set()
    if index is not None:  # mmdet's own _filter_imgs reads the same index
        for cat_id in cat_ids:
            ids_in_cat.update(index.get(cat_id, ()))
    # pycocotools keys its index by annotation id: as many entries as annotations means no duplicates
    seen: set | None = None if coco is not None and len(getattr(coco, "anns", ())) == len(anns) else set()
    fast = seen is None and index is not None  # with pycocotools' index, most annotations need one test
    for pos, ann in enumerate(anns):
        if fast:
            try:
                x1, y1, w, h = ann["bbox"]
                width, height = sizes[ann["image_id"]]
                if (w >= 1 and h >= 1 and x1 >= 0 and y1 >= 0 and x1 + w <= width and y1 + h <= height
                        and ann["area"] > 0 and ann["category_id"] in cat_ids and not ann.get("iscrowd")
                        and not ann.get("ignore")):
                    continue  # a box inside its image that mmdet keeps: nothing to count (NaN fails every test)
            except Exception:  # noqa: BLE001, S110 - the full tests below say what is wrong
                pass
        try:
            image_id, cat_id = ann["image_id"], ann["category_id"]
            x1, y1, w, h = ann["bbox"]
            total = x1 + y1 + w + h
            if total - total != 0:  # NaN or infinite (or not numbers: TypeError)
                raise ValueError
            size = sizes.get(image_id)
            in_classes = cat_id in cat_ids
            if seen is not None:
                ident = ann["id"]
                if ident in seen:
                    refuse("annotations with a duplicate 'id'", f"annotations[{pos}] id {_short(ident)}",
                           AssertionError)
                seen.add(ident)
        except Exception:  # noqa: BLE001 - KeyError, TypeError, ValueError: worked out below
            kind, example, raises = _bad_annotation(ann)
            refuse(kind, f"annotations[{pos}] {example}", raises)
            continue
        if size is None:
            warn.add("annotations of an image id not in 'images' (never read)",
                     f"annotations[{pos}] id {_short(ann.get('id'))} image_id={_short(image_id)}")
            continue
        if in_classes and index is None:
            ids_in_cat.add(image_id)  # any annotation of the classes counts, even one mmdet drops
        if ann.get("ignore", False):
            warn.add("annotations marked 'ignore' (skipped)", f"annotations[{pos}] id {_short(ann.get('id'))}")
            continue
        width, height = size
        right, bottom = x1 + w, y1 + h
        inter_w = (right if right < width else width) - (x1 if x1 > 0 else 0)
        inter_h = (bottom if bottom < height else height) - (y1 if y1 > 0 else 0)
        if inter_w <= 0 or inter_h <= 0 or inter_w * inter_h == 0:
            warn.add(DROPPED, f"annotations[{pos}] id {_short(ann.get('id'))} on image {_short(image_id)}, bbox"
                     f" {_short(ann['bbox'])}")
            continue
        area = ann.get("area")
        if type(area) is not float and type(area) is not int and not isinstance(area, (int, float)):
            refuse("annotations without an 'area' number", f"annotations[{pos}] id {_short(ann.get('id'))}",
                   KeyError if "area" not in ann else TypeError)
            continue
        if area <= 0 or w < 1 or h < 1:
            warn.add(DROPPED, f"annotations[{pos}] id {_short(ann.get('id'))} on image {_short(image_id)}, bbox"
                     f" {_short(ann['bbox'])}")
        elif not in_classes:
            kind = ("annotations of a category id not in 'categories' (dropped)" if cat_id not in all_cats
                    else "annotations of categories outside classes (dropped)")
            warn.add(kind, f"annotations[{pos}] id {_short(ann.get('id'))} category_id={_short(cat_id)}")
        elif ann.get("iscrowd", False):
            warn.add("crowd regions (ignored boxes)", f"annotations[{pos}] id {_short(ann.get('id'))} on image"
                     f" {_short(image_id)}")
    for kind, (count, first, raises) in bad.items():
        report.refuse(f"{kind}: {count} (first: {first})", raises)
    return ids_in_cat


def inspect_coco(
    obj: Any,
    classes: Sequence[str] | None = None,
    *,
    coco: Any = None,
    filter_empty_gt: bool = True,
    test_mode: bool = False,
) -> AnnotationReport:
    """Both tiers of a parsed COCO annotation object (messages without the file name).

    ``classes``: the dataset's ``CLASSES`` (None: the labels are not checked). ``coco``: mmdet's pycocotools
    index of ``obj`` when it exists (its dicts make the id checks cheap). ``filter_empty_gt`` and ``test_mode``
    as the dataset's: they say what happens to images without annotations.
    """
    report = AnnotationReport()
    warn = _Tally()
    sections = _sections(obj, report)
    images, cats, anns = sections["images"], sections["categories"], sections["annotations"]
    imgs = _entries(images, "images", {"file_name": TEXT, "width": NUMBER, "height": NUMBER}, report) \
        if images is not None else {}
    before = len(report.problems)
    all_cats = _entries(cats, "categories", {"name": TEXT}, report) if cats is not None else {}
    cats_ok = len(report.problems) == before  # labels are only worth checking on well-formed categories
    cat_ids: set = set()
    if cats is not None and classes is not None and cats_ok:
        cat_ids = set(_label_problems(cats, list(classes), report, warn))
    elif cats is not None:
        cat_ids = set(all_cats)
    if anns is not None:
        sizes = {ident: (img["width"], img["height"]) for ident, img in imgs.items()}
        ids_in_cat = _annotations(anns, sizes, all_cats, cat_ids, report, warn, coco)
        empty = [i for i in imgs if i not in ids_in_cat]
        if empty:
            fate = "left out of training by filter_empty_gt" if filter_empty_gt and not test_mode else \
                "kept, without ground truth"
            warn.add(f"images without annotations of the classes ({fate})", f"image id {_short(empty[0])}",
                     len(empty))
    report.warnings = warn.lines()
    return report


# -------------------------------------------------------------------------------------------- file access
def _read(path: str | os.PathLike, read: Reader | None) -> tuple[Any, str | None]:
    """The parsed file, or (None, problem). ``read``: the generation's storage reader (None: the local disk)."""
    try:
        if read is not None:
            data = read(str(path))
        else:
            with open(path, "rb") as f:
                data = f.read()
    except DataError as err:  # object stores: names bucket and key
        return None, str(err)
    except FileNotFoundError:
        return None, "annotation file not found"
    except IsADirectoryError:
        return None, "is a directory, not an annotation file"
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})"
    try:
        text = bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return None, f"not UTF-8 text (byte {err.start}); COCO annotation files are UTF-8 JSON"
    if not text.strip():
        return None, "the file is empty; expected COCO JSON with images, annotations and categories"
    try:
        with gc_paused():  # a COCO-size file is millions of new objects and no cycles (model_hub_mmdet.gc_pause)
            return json.loads(text), None
    except json.JSONDecodeError as err:
        return None, f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
    except RecursionError:
        return None, "not usable JSON: nested too deeply"


def inspect_file(
    path_or_obj: str | os.PathLike | Mapping | Any,
    classes: Sequence[str] | None = None,
    read: Reader | None = None,
    **kwargs: Any,
) -> AnnotationReport:
    """:func:`inspect_coco` of a file (read by ``read`` when given, else from disk) or of an
    already parsed object; a file that cannot be read or parsed is one problem (a ``ValueError``, as mmdet's
    ``json`` error)."""
    if isinstance(path_or_obj, (str, os.PathLike)):
        obj, problem = _read(path_or_obj, read)
        if problem is not None:
            report = AnnotationReport()
            report.refuse(problem, ValueError)
            return report
        path_or_obj = obj
    return inspect_coco(path_or_obj, classes, **kwargs)


def validate_coco_annotations(
    path_or_obj: str | os.PathLike | Mapping | Any,
    classes: Sequence[str] | None = None,
    read: Reader | None = None,
    name: str | None = None,
) -> list[str]:
    """The problems MMDetection cannot train on, each one line starting with the file's name; [] when usable
    (what it tolerates is in :func:`annotation_warnings`). ``name`` is how the file is named (default: the path)."""
    shown = name or (str(path_or_obj) if isinstance(path_or_obj, (str, os.PathLike)) else "annotations")
    report = inspect_file(path_or_obj, classes, read)
    return [f"{shown}: {p}" for p in report.problems]


def annotation_warnings(
    path_or_obj: str | os.PathLike | Mapping | Any,
    classes: Sequence[str] | None = None,
    read: Reader | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> list[str]:
    """The file's warning line (what mmdet tolerates, and how it trains it) in a list; [] when there is none or
    the file is refused."""
    shown = name or (str(path_or_obj) if isinstance(path_or_obj, (str, os.PathLike)) else "annotations")
    report = inspect_file(path_or_obj, classes, read, **kwargs)
    line = report.warning_line(shown)
    return [line] if line and not report.problems else []


def annotation_error(name: str, problems: list[str], limit: int = 5) -> AnnotationError:
    """One :class:`AnnotationError` line for the problems of ``name`` (as returned with that name)."""
    bare = [p[len(name) + 2 :] if p.startswith(f"{name}: ") else p for p in problems]
    more = f"; and {len(bare) - limit} more" if len(bare) > limit else ""
    return AnnotationError(f"{name}: {'; '.join(bare[:limit])}{more}")
