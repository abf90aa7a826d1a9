"""runtime.anonymize: only the enlarged face regions change, and they are hidden."""

from __future__ import annotations

import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.anonymize import METHODS, AnonymizeSettings, anonymized, regions


def test_regions_are_enlarged_rounded_outwards_and_clipped():
    found = regions([[10.2, 20.5, 30.2, 60.5], [-5, 90, 15, 130]], width=100, height=120, margin=0.25)
    # box 1: 20 wide, 40 high → 5 and 10 more per side; box 2 clipped to the image
    assert found.tolist() == [[5, 10, 36, 71], [0, 80, 20, 120]]


@pytest.mark.parametrize("method", METHODS)
def test_only_the_regions_change(crowd_image, method):
    boxes = np.array([[100.5, 50.2, 160.0, 130.0], [600.0, 300.0, 640.0, 350.0], [1000.0, 600.0, 1100.0, 700.0]])
    out = anonymized(crowd_image, boxes, AnonymizeSettings(method, 0.2))
    inside = np.zeros(crowd_image.shape[:2], bool)
    for x1, y1, x2, y2 in regions(boxes, 1024, 624, 0.2):
        inside[y1:y2, x1:x2] = True
    assert (out[~inside] == crowd_image[~inside]).all()
    assert out.shape == crowd_image.shape and out.dtype == np.uint8
    for x1, y1, x2, y2 in regions(boxes, 1024, 624, 0.2)[:2]:
        changed = (out[y1:y2, x1:x2] != crowd_image[y1:y2, x1:x2]).any(-1).mean()
        assert changed > 0.5, f"{method} left {1 - changed:.0%} of a face region as it was"


def test_fill_is_black(crowd_image):
    out = anonymized(crowd_image, [[10, 10, 50, 50]], AnonymizeSettings("fill", 0.0))
    assert (out[10:50, 10:50] == 0).all()


def test_no_faces_is_an_unchanged_copy(crowd_image):
    out = anonymized(crowd_image, np.zeros((0, 4)))
    assert (out == crowd_image).all() and out is not crowd_image


@pytest.mark.parametrize("settings", [dict(method="smudge"), dict(margin=-1), dict(margin="a")])
def test_bad_settings_are_one_line(settings):
    with pytest.raises(RetinaFaceError):
        AnonymizeSettings(**settings)
