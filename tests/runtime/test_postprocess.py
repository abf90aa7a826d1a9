"""Decoding and NMS against the stored detections and against a slow, loop-based reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime.options import DetectionOptions
from runtime.postprocess import detect_faces, iou_plus_one, nms_plus_one


def _slow_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS, one pair at a time, with the "+1 pixel" areas (float64)."""
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
        inter = w * h
        area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)
        return inter / (area(a) + area(b) - inter)

    keep = []
    for i in sorted(range(len(scores)), key=lambda k: -scores[k]):
        if all(iou(boxes[i], boxes[k]) <= threshold for k in keep):
            keep.append(i)
    return keep


def _pair_at_iou_threshold(shift: float) -> np.ndarray:
    """Two boxes 7 px wide (+1 convention) and 1 px high, the second shifted right by 3 + ``shift``.

    At shift 0 the overlap is 4 px and the union 10 px: IoU exactly 0.4 (exact in float32 as 4/10).
    A negative shift increases the overlap, so the IoU is just above 0.4.
    """
    return np.array([[0, 0, 6, 0], [3 + shift, 0, 9 + shift, 0]], dtype=np.float32)


def test_iou_exactly_at_threshold_is_kept():
    boxes = _pair_at_iou_threshold(0.0)
    assert iou_plus_one(torch.from_numpy(boxes[0]), torch.from_numpy(boxes[1:])).item() == pytest.approx(0.4)
    kept = nms_plus_one(torch.from_numpy(boxes), torch.tensor([0.9, 0.8]), 0.4)
    assert kept.tolist() == [0, 1] == _slow_nms(boxes, [0.9, 0.8], 0.4)


def test_iou_just_above_threshold_is_removed():
    boxes = _pair_at_iou_threshold(-0.01)
    kept = nms_plus_one(torch.from_numpy(boxes), torch.tensor([0.9, 0.8]), 0.4)
    assert kept.tolist() == [0] == _slow_nms(boxes, [0.9, 0.8], 0.4)


def test_nms_matches_slow_reference_on_random_boxes():
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 80, (300, 2)).astype(np.float32)
    boxes = np.hstack([corners, corners + rng.uniform(2, 30, (300, 2)).astype(np.float32)])
    scores = rng.permutation(300).astype(np.float32) / 300
    kept = nms_plus_one(torch.from_numpy(boxes), torch.from_numpy(scores), 0.4)
    assert kept.tolist() == _slow_nms(boxes, scores, 0.4)


def test_nms_of_nothing_is_empty():
    kept = nms_plus_one(torch.zeros(0, 4), torch.zeros(0), 0.4)
    assert kept.shape == (0,) and kept.dtype == torch.int64


def _raw(crowd_reference):
    return [torch.from_numpy(crowd_reference[k])[0] for k in ("loc_640", "conf_640", "landms_640")]


def test_detections_equal_stored_detections(crowd_reference):
    priors = torch.from_numpy(crowd_reference["priors_640"])
    dets = detect_faces(*_raw(crowd_reference), priors, 640, 640).numpy()
    np.testing.assert_allclose(dets, crowd_reference["dets_640_in640coords"], rtol=0, atol=1e-5)


def test_detections_sorted_and_above_confidence(crowd_reference):
    priors = torch.from_numpy(crowd_reference["priors_640"])
    scores = detect_faces(*_raw(crowd_reference), priors, 640, 640).numpy()[:, 4]
    assert np.all(np.diff(scores) <= 0) and scores.min() > 0.02


def test_keep_top_k_caps_the_count(crowd_reference):
    priors = torch.from_numpy(crowd_reference["priors_640"])
    dets = detect_faces(*_raw(crowd_reference), priors, 640, 640, DetectionOptions(keep_top_k=7)).numpy()
    np.testing.assert_array_equal(dets, crowd_reference["dets_640_in640coords"][:7])


def test_top_k_limits_candidates_before_nms(crowd_reference):
    priors = torch.from_numpy(crowd_reference["priors_640"])
    dets = detect_faces(*_raw(crowd_reference), priors, 640, 640, DetectionOptions(top_k=1)).numpy()
    assert dets.shape == (1, 15) and dets[0, 4] == crowd_reference["conf_640"][0, :, 1].max()
