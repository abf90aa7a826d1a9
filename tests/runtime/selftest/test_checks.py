"""The selftest's measurements (runtime.selftest.measure) and rules (runtime.selftest.checks): each rule passes on agreement and fails
on the disagreement it is there for, built right at its limit."""

from __future__ import annotations

import pytest
import torch

from runtime.selftest import checks
from runtime.selftest.checks import (AGREEMENT, FACE_IOU, FACE_SCORE, FP32_TOLERANCE, SCORE_MARGIN, Candidates, Check,
                                     Faces, judge)
from runtime.selftest.measure import candidate_agreement, face_agreement, row_agreement


def det(x1, y1, x2, y2, score, landmark_shift=0.0):
    """One detection row [15]: a box, its score and five landmarks inside it."""
    points = [x1 + (x2 - x1) * f + landmark_shift for f in (0.3, 0.7, 0.5, 0.35, 0.65) for _ in range(2)]
    return torch.tensor([x1, y1, x2, y2, score] + points, dtype=torch.float32)


def rows(*detections):
    return torch.stack(detections) if detections else torch.zeros(0, 15)


FACE = det(10, 10, 60, 70, 0.9)


def test_the_same_faces_agree():
    faces = face_agreement([rows(FACE, det(100, 20, 140, 70, 0.7))], [rows(FACE, det(100, 20, 140, 70, 0.7))])
    assert (faces.reference, faces.engine, faces.ratio) == (2, 2, 1.0)


def test_a_face_moved_below_the_iou_limit_is_not_matched():
    moved = det(10 + 0.06 * 50, 10, 60 + 0.06 * 50, 70, 0.9)      # shifted by 6% of its width: IoU ≈ 0.89
    faces = face_agreement([rows(moved)], [rows(FACE)])
    assert faces.ratio == 0.0 and (faces.reference, faces.engine) == (1, 1)
    slightly = det(12, 10, 62, 70, 0.9)                             # 2 px: IoU ≈ 0.93
    assert face_agreement([rows(slightly)], [rows(FACE)]).ratio == 1.0


def test_a_face_just_below_the_score_on_one_side_is_still_matched_within_the_margin():
    reference = rows(det(10, 10, 60, 70, FACE_SCORE + 0.01))
    near = face_agreement([rows(det(10, 10, 60, 70, FACE_SCORE - SCORE_MARGIN + 0.01))], [reference])
    far = face_agreement([rows(det(10, 10, 60, 70, FACE_SCORE - SCORE_MARGIN - 0.01))], [reference])
    assert (near.reference, near.engine, near.ratio) == (1, 0, 1.0)
    assert (far.reference, far.engine, far.ratio) == (1, 0, 0.0)


def test_a_missing_and_an_extra_face_both_count():
    faces = face_agreement([rows(FACE, det(200, 200, 260, 270, 0.8))], [rows(FACE, det(100, 20, 140, 70, 0.7))])
    assert (faces.matched_reference, faces.matched_engine, faces.ratio) == (1, 1, 0.5)


def test_faces_add_up_over_images_and_keep_the_worst_differences():
    a = face_agreement([rows(det(10, 10, 60, 70, 0.80))], [rows(det(10, 10, 60, 70, 0.83))])
    b = face_agreement([rows(FACE, det(100, 20, 140, 70, 0.7, landmark_shift=2.0))],
                       [rows(FACE, det(100, 20, 140, 70, 0.7))])
    both = a.add(b)
    assert (both.reference, both.engine, both.ratio) == (3, 3, 1.0)
    assert both.worst_score == pytest.approx(0.03, abs=1e-6)
    assert both.worst_landmark_px == pytest.approx(2.0 * 2 ** 0.5, abs=1e-5)


def test_no_face_gives_no_ratio_and_fails_the_check():
    faces = face_agreement([rows()], [rows()])
    assert faces.ratio is None and not Check("faces matched", faces.ratio, AGREEMENT, at_most=False).passed


def _decoded(*detections):
    return rows(*detections)[None]          # [1, P, 15]: one image, one row per prior


def test_candidates_agree_prior_by_prior():
    same = candidate_agreement(_decoded(FACE, det(0, 0, 16, 16, 0.03)), _decoded(FACE, det(0, 0, 16, 16, 0.03)))
    assert (same.compared, same.agreeing, same.worst_iou) == (2, 2, 1.0)


@pytest.mark.parametrize("changed, why", [
    (det(13.5, 10, 63.5, 70, 0.9), "box moved: IoU < FACE_IOU"),
    (det(10, 10, 60, 70, 0.9 - SCORE_MARGIN - 0.01), "score"),
    (det(10, 10, 60, 70, 0.9, landmark_shift=0.11 * 60), "landmarks moved by more than LANDMARK_FRACTION"),
])
def test_a_candidate_differing_in_box_score_or_landmarks_disagrees(changed, why):
    result = candidate_agreement(_decoded(changed, FACE), _decoded(FACE, FACE))
    assert (result.compared, result.agreeing) == (2, 1), why


def test_priors_below_the_candidate_score_on_both_sides_are_not_compared():
    low = checks.CANDIDATE_SCORE / 2
    result = candidate_agreement(_decoded(det(0, 0, 16, 16, low), FACE), _decoded(det(30, 30, 46, 46, low), FACE))
    assert (result.compared, result.agreeing) == (1, 1)


def test_engine_detections_are_compared_with_the_overlapping_candidate_closest_in_score():
    """A trained network's priors of one face share its box with different scores: the partner of a detection
    is the overlapping prior closest in score, not merely the first of those overlapping most."""
    cluster = _decoded(det(200, 200, 240, 250, 0.6), det(10, 10, 60, 70, 0.3), det(11, 10, 61, 70, 0.88))
    good = row_agreement([rows(det(10, 10, 60, 70, 0.88))], cluster)
    assert (good.compared, good.agreeing) == (1, 1) and good.worst_score == pytest.approx(0.0)
    wrong_landmarks = row_agreement([rows(det(10, 10, 60, 70, 0.88, landmark_shift=30.0))], cluster)
    nowhere = row_agreement([rows(det(400, 400, 440, 450, 0.9))], cluster)
    assert wrong_landmarks.agreeing == 0 and nowhere.agreeing == 0 and nowhere.worst_iou == 0.0
    assert row_agreement([rows()], cluster).compared == 0


def test_fp32_raw_outputs_are_judged_on_each_output_at_its_limit():
    at_limit = {"abs": dict(FP32_TOLERANCE)}
    assert all(c.passed for c in judge("fp32", False, True, at_limit, Faces(), Candidates()))
    for name, limit in FP32_TOLERANCE.items():
        over = {"abs": {**FP32_TOLERANCE, name: limit * 1.01}}
        failed = [c.name for c in judge("fp32", False, False, over, Faces(), Candidates()) if not c.passed]
        assert failed == [f"{name} max abs"]


def test_fp16_is_judged_on_faces_with_a_checkpoint_and_on_candidates_with_random_weights():
    faces, candidates = Faces(100, 100, 98, 99), Candidates(1000, 995)      # 98.5% and 99.5%
    assert [(c.name, c.passed) for c in judge("fp16", False, False, None, faces, candidates)] == \
        [("faces matched", False)]
    assert [(c.name, c.passed) for c in judge("fp16", False, True, None, faces, candidates)] == \
        [("candidates agreeing", True)]


def test_in_engine_post_processing_in_fp32_also_bounds_the_face_scores():
    faces = Faces(10, 10, 10, 10, worst_score=FP32_TOLERANCE["conf"] * 2)
    assert [(c.name, c.passed) for c in judge("fp32", True, False, None, faces, Candidates())] == \
        [("faces matched", True), ("face score difference", False)]
    assert [c.name for c in judge("fp16", True, False, None, faces, Candidates())] == ["faces matched"]


def test_the_agreement_limit_is_inclusive_and_nothing_to_compare_fails():
    assert Check("x", AGREEMENT, AGREEMENT, at_most=False).passed
    assert not Check("x", None, AGREEMENT, at_most=False).passed
    assert "nothing to compare" in Check("x", None, AGREEMENT, at_most=False).text()
    assert not Check("loc", float("nan"), 1e-3).passed


def test_the_rules_are_stated_with_their_numbers():
    text, data = checks.rules_text(), checks.rules()
    assert "loc ≤ 0.001" in text and "conf ≤ 0.0001" in text and "99%" in text and f"IoU ≥ {FACE_IOU}" in text
    assert data["fp32_max_abs"] == FP32_TOLERANCE and data["agreement"] == AGREEMENT
