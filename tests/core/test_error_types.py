"""A wrapper's one-line error is also the library's exception type (model_hub_mmdet.error_types)."""

from __future__ import annotations

import json
import pickle

import pytest

from model_hub_mmdet.bad_images import BadImageError
from model_hub_mmdet.error_types import keeping, keeping_type
from model_hub_mmdet.errors import DataError


def _raised(call) -> BaseException:
    try:
        call()
    except Exception as err:  # noqa: BLE001 - whatever the library raises is the point
        return err
    raise AssertionError("nothing raised")


@pytest.mark.parametrize("original", [FileNotFoundError(2, "gone"), AssertionError("ids are not unique!"),
                                      KeyError("file_name"), AttributeError("shape")], ids=type)
def test_ours_is_also_theirs_and_survives_a_pickle(original: BaseException) -> None:
    err = keeping(BadImageError, original, "a.png", "why")
    for e in (err, pickle.loads(pickle.dumps(err))):
        assert isinstance(e, type(original)) and isinstance(e, BadImageError) and isinstance(e, DataError)
        assert str(e) == "a.png: why" and e.filename == "a.png" and e.reason == "why"
    assert type(pickle.loads(pickle.dumps(err))) is type(err)  # one class per combination


def test_a_type_with_an_init_of_its_own_stands_in_by_its_plain_base() -> None:
    original = _raised(lambda: json.loads("{not json"))  # JSONDecodeError(msg, doc, pos): a ValueError
    err = keeping(DataError, original, "f.json: not valid JSON")
    assert type(err) is DataError and isinstance(err, ValueError) and str(err) == "f.json: not valid JSON"


def test_types_python_cannot_combine_leave_ours_alone() -> None:
    original = _raised(lambda: b"\xff".decode("utf-8"))  # UnicodeDecodeError: another C layout than OSError's
    assert keeping_type(DataError, FileNotFoundError, type(original)) is DataError


def test_ours_inside_ours_flattens() -> None:
    inner = keeping(DataError, FileNotFoundError(), "bucket/key: missing")
    outer = keeping(BadImageError, inner, "a.png", str(inner))
    assert isinstance(outer, FileNotFoundError) and isinstance(pickle.loads(pickle.dumps(outer)), FileNotFoundError)
