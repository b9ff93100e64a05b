"""The collector paused around a build (model_hub_mmdet.gc_pause); the trial's use of it is tested in
tests/test_trial_options.py."""

from __future__ import annotations

import gc
import json

import pytest

from model_hub_mmdet import coco_annotations
from model_hub_mmdet.gc_pause import ENV, gc_paused


@pytest.fixture(autouse=True)
def _collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_the_collector_is_off_inside_and_on_again_after_even_on_an_error() -> None:
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_nested_pause_and_a_program_without_the_collector_are_left_as_they_are() -> None:
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block does not turn it back on
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_the_switch_leaves_the_collector_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "0")
    with gc_paused():
        assert gc.isenabled()


def test_the_checker_parses_an_annotation_file_with_the_collector_paused(tmp_path, monkeypatch) -> None:
    seen = []

    def loads(text: str):
        seen.append(gc.isenabled())
        return json.JSONDecoder().decode(text)

    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    monkeypatch.setattr(coco_annotations.json, "loads", loads)
    assert coco_annotations._read(path, None) == ({"images": [], "annotations": [], "categories": []}, None)
    assert seen == [False] and gc.isenabled()
