"""What predictions.png shows: detections above the threshold, one box per object across classes."""

from __future__ import annotations

import numpy as np

from model_hub_mmdet.tools.report import shown_detections


def test_shown_detections_threshold_and_cross_class_merge() -> None:
    rect = np.array([[10, 10, 50, 50, 0.9], [60, 60, 90, 90, 0.3]], np.float32)  # the second is below 0.5
    tri = np.array([[11, 11, 51, 50, 0.7]], np.float32)  # the same object, detected as another class
    ellipse = np.array([[0, 60, 30, 100, 0.6]], np.float32)
    masks = [[np.ones((128, 128), bool), np.zeros((128, 128), bool)], [np.ones((128, 128), bool)], [None]]
    shown = shown_detections(([rect, ellipse, tri], masks), score_thr=0.5)
    assert [(d["label"], round(d["score"], 2)) for d in shown] == [(0, 0.9), (1, 0.6)]
    assert shown[0]["mask"].dtype == bool
    assert shown_detections([rect, ellipse, tri], score_thr=0.95) == []
