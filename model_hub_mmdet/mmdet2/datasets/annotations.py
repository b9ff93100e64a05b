"""COCO annotation files checked before any training: every problem is one line that names the file.

mmdet 2.28 reads a COCO file with pycocotools, which assumes a well-formed file: ``{not json`` surfaces as
``TypeError: JSONDecodeError.__init__() missing 2 required positional arguments`` (mmcv's ``build_from_cfg``
re-raises every error as ``type(e)(message)``), a missing key as a bare ``KeyError``, annotations of unknown
images or categories and zero-size boxes are dropped without a word, and ``classes`` that are not categories of
the file silently shift every label.

:func:`validate_coco_annotations` lists the problems of a file (or of an already parsed object);
:func:`install` makes ``CocoDataset.load_annotations`` (and so every subclass that does not override it, at any
dataset-wrapper depth) raise :class:`AnnotationError` with them. It wraps mmdet's loader rather than replacing
it: the file is parsed once, by pycocotools, and the check then reads the parsed dict; only when mmdet's own
loading fails is the file read again to say why.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from model_hub_mmdet.errors import DataError
from model_hub_mmdet.mmdet2.datasets.patching import wrap_method

SECTIONS = ("images", "annotations", "categories")


class AnnotationError(DataError):
    """An annotation file that cannot be used; the message names the file and every problem, on one line."""


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


def _is_positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


class _Tally:
    """Problems of one kind counted, with the first occurrence as an example: one line per kind."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.first: dict[str, str] = {}

    def add(self, problem: str, where: str) -> None:
        if problem not in self.counts:
            self.counts[problem] = 0
            self.first[problem] = where
        self.counts[problem] += 1

    def lines(self) -> list[str]:
        out = []
        for problem, count in self.counts.items():
            out.append(f"{problem}: {count} (first: {self.first[problem]})")
        return out


def _read(path: str | os.PathLike, file_client_args: Mapping | None) -> tuple[Any, str | None]:
    """The parsed file, or (None, problem)."""
    try:
        if file_client_args:
            from mmcv import FileClient

            from model_hub_mmdet.storage.base import normalize_file_client_args

            data = FileClient(**normalize_file_client_args(dict(file_client_args))).get(str(path))
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
        return json.loads(text), None
    except json.JSONDecodeError as err:
        return None, f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
    except RecursionError:
        return None, "not usable JSON: nested too deeply"


def _ids(items: Sequence[Any], section: str, tally: _Tally, required: Iterable[str]) -> set[Hashable]:
    """Check the entries of ``images``/``categories``; return their ids."""
    seen: set[Hashable] = set()
    for pos, item in enumerate(items):
        where = f"{section}[{pos}]"
        if not isinstance(item, Mapping):
            tally.add(f"{section} entries that are not objects", f"{where} is a {_kind(item)}")
            continue
        ident = item.get("id")
        if not _is_id(ident):
            tally.add(f"{section} entries without an 'id'", where)
        elif ident in seen:
            tally.add(f"{section} entries with a duplicate 'id'", f"{where} id {_short(ident)}")
        else:
            seen.add(ident)
        for key in required:
            value = item.get(key)
            if key in ("width", "height"):
                if not _is_positive(value):
                    tally.add(f"{section} entries without a positive '{key}'", f"{where} {key}={_short(value)}")
            elif not isinstance(value, str) or not value:
                tally.add(f"{section} entries without a '{key}' string", f"{where} {key}={_short(value)}")
    return seen


def _check_annotations(
    anns: Sequence[Any], image_ids: set[Hashable], cat_ids: set[Hashable], check_refs: tuple[bool, bool], tally: _Tally
) -> None:
    seen: set[Hashable] = set()
    for pos, ann in enumerate(anns):
        where = f"annotations[{pos}]"
        if not isinstance(ann, Mapping):
            tally.add("annotations that are not objects", f"{where} is a {_kind(ann)}")
            continue
        ident = ann.get("id")
        if not _is_id(ident):
            tally.add("annotations without an 'id'", where)
        elif ident in seen:
            tally.add("annotations with a duplicate 'id'", f"{where} id {_short(ident)}")
        else:
            seen.add(ident)
        image_id, cat_id = ann.get("image_id"), ann.get("category_id")
        if check_refs[0] and not (_is_id(image_id) and image_id in image_ids):
            tally.add("annotations of an image id not in 'images'", f"{where} image_id={_short(image_id)}")
        if check_refs[1] and not (_is_id(cat_id) and cat_id in cat_ids):
            tally.add("annotations of a category id not in 'categories'", f"{where} category_id={_short(cat_id)}")
        bbox = ann.get("bbox")
        if not (
            isinstance(bbox, (list, tuple))
            and len(bbox) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
        ):
            tally.add("annotations without a 'bbox' of 4 numbers [x, y, width, height]", f"{where} bbox={_short(bbox)}")
        elif bbox[2] <= 0 or bbox[3] <= 0:
            tally.add("annotations with a box of non-positive width or height", f"{where} bbox={_short(list(bbox))}")


def coco_problems(obj: Any, classes: Sequence[str] | None = None) -> list[str]:
    """The problems of a parsed COCO annotation object, one line each, without the file name."""
    if not isinstance(obj, Mapping):
        return [
            f"must be a JSON object with {', '.join(SECTIONS)} (COCO format), but the file holds a JSON {_kind(obj)}"
        ]
    problems: list[str] = []
    sections: dict[str, Sequence[Any] | None] = {}
    for key in SECTIONS:
        value = obj.get(key)
        if key not in obj:
            problems.append(f"has no '{key}' list (COCO format needs {', '.join(SECTIONS)})")
        elif not isinstance(value, (list, tuple)):
            problems.append(f"'{key}' must be a list, got a JSON {_kind(value)}")
        sections[key] = value if isinstance(value, (list, tuple)) else None
    tally = _Tally()
    images, cats, anns = sections["images"], sections["categories"], sections["annotations"]
    image_ids = _ids(images, "images", tally, ("file_name", "width", "height")) if images is not None else set()
    cat_ids = _ids(cats, "categories", tally, ("name",)) if cats is not None else set()
    if anns is not None:
        _check_annotations(anns, image_ids, cat_ids, (images is not None, cats is not None), tally)
    problems += tally.lines()
    if classes is not None and cats is not None:
        names = {c.get("name") for c in cats if isinstance(c, Mapping) and isinstance(c.get("name"), str)}
        missing = [_short(c, 40) for c in classes if c not in names]  # repr: a name may hold a newline
        if missing:
            have = [_short(n, 40) for n in sorted(n for n in names if isinstance(n, str))]
            shown = ", ".join(have[:10]) + (", ..." if len(have) > 10 else "")
            problems.append(
                f"classes {', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''} are not categories of the"
                f" file (it has: {shown or 'none'}); set the dataset's classes to category names of the file"
            )
    return problems


def validate_coco_annotations(
    path_or_obj: str | os.PathLike | Mapping | Any,
    classes: Sequence[str] | None = None,
    file_client_args: Mapping | None = None,
    name: str | None = None,
) -> list[str]:
    """Every problem of a COCO annotation file, each one line that starts with the file's name; [] when usable.

    ``path_or_obj`` is a path (read through ``file_client_args`` when given, e.g. an s3 backend; else from
    disk) or an already parsed object. ``classes``: the dataset's class names, each of which must be a
    category name of the file. ``name`` is how the file is named in the messages (default: the path).
    Checks: readable, UTF-8, JSON, an object with ``images``/``annotations``/``categories`` lists; images with
    id, file_name, positive width and height; categories with id and name; annotations with a unique id, an
    image and category that exist, and a ``bbox`` of four numbers with positive width and height.
    """
    if isinstance(path_or_obj, (str, os.PathLike)):
        shown = name or str(path_or_obj)
        obj, problem = _read(path_or_obj, file_client_args)
        if problem is not None:
            return [f"{shown}: {problem}"]
    else:
        shown, obj = name or "annotations", path_or_obj
    return [f"{shown}: {p}" for p in coco_problems(obj, classes)]


def annotation_error(name: str, problems: list[str], limit: int = 5) -> AnnotationError:
    """One :class:`AnnotationError` line for the problems of ``name`` (as returned with that name)."""
    bare = [p[len(name) + 2 :] if p.startswith(f"{name}: ") else p for p in problems]
    more = f"; and {len(bare) - limit} more" if len(bare) > limit else ""
    return AnnotationError(f"{name}: {'; '.join(bare[:limit])}{more}")


def _checked_load(original: Any) -> Any:
    def load_annotations(self: Any, ann_file: str) -> list:
        # mmdet passes a local copy (get_local_path) for remote files; name the file the user configured.
        shown = str(getattr(self, "ann_file", None) or ann_file)
        classes = getattr(self, "CLASSES", None)
        try:
            infos = original(self, ann_file)
        except Exception as err:
            problems = validate_coco_annotations(ann_file, classes, name=shown)
            if problems:
                raise annotation_error(shown, problems) from err
            raise
        coco = getattr(self, "coco", None)
        problems = validate_coco_annotations(getattr(coco, "dataset", None), classes, name=shown)
        if problems:
            raise annotation_error(shown, problems)
        return infos

    return load_annotations


def install() -> None:
    """Make ``CocoDataset.load_annotations`` raise :class:`AnnotationError` for a bad file (idempotent)."""
    from mmdet.datasets import CocoDataset

    wrap_method(CocoDataset, "load_annotations", _checked_load)
