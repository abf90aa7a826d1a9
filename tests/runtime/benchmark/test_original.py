"""The independent original-style pipeline (the baseline) and the project's pipeline find the same faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime.benchmark.original import OriginalPipeline, loop_priors, numpy_nms
from runtime.postprocess import box_iou
from runtime.priors import prior_boxes


@pytest.fixture(scope="module")
def original(mnet_pth):
    from wts_export.checkpoint import load_state_dict
    from wts_export.model import build_model

    model = build_model(load_state_dict(mnet_pth))
    return OriginalPipeline(model, model.cfg, "cpu", (640, 640))


def test_loop_priors_equal_the_vectorised_ones():
    from network.config import MOBILENET_0_25

    assert np.array_equal(loop_priors(MOBILENET_0_25, 333, 517), prior_boxes(MOBILENET_0_25, 333, 517))


def test_numpy_nms_keeps_a_box_exactly_at_the_threshold():
    # "+1" areas: 100 px and 40 px nested boxes have IoU 0.4 exactly.
    dets = np.float32([[0, 0, 9, 9, 0.9], [0, 0, 9, 3, 0.8]])
    assert numpy_nms(dets, 0.4) == [0, 1] and numpy_nms(dets, 0.39) == [0]


@pytest.mark.parametrize("name", ["crowd_1024x624.jpg", "selfie_1600x898.jpg", "children_1024x768.jpg"])
def test_the_pipeline_finds_the_original_pipelines_faces(original, mnet_pth, shared_dir, name):
    from runtime.detector import Detector

    image = cv2.imread(str(shared_dir / "images" / name))
    expected = original.detect(image)
    with Detector.from_options(weights=str(mnet_pth), backend="torch", device="cpu", resize="stretch") as detector:
        got = detector.detect_arrays([image])[0]
    confident = expected[expected[:, 4] >= 0.1]
    assert len(confident) > 5
    best = box_iou(confident[:, :4], got[:, :4]).argmax(axis=1)
    assert (box_iou(confident[:, :4], got[:, :4]).max(axis=1) >= 0.99).all()
    assert np.abs(got[best, 4] - confident[:, 4]).max() <= 1e-4
