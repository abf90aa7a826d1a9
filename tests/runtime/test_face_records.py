"""runtime.face.report: the record made from the detections array at once is image_record's of the reported faces,
to the byte."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.face import array_record, faces_from_array, image_record, report, to_json


@pytest.mark.parametrize("seed", range(5))
def test_array_record_is_image_record_of_the_faces(seed):
    rng = np.random.default_rng(seed)
    dets = (rng.standard_normal((40, 15)) * 300).astype(np.float32)
    dets[:, 4] = rng.choice([0.2, 0.6, 0.7, 0.95, float(np.float32(0.6) + 1e-7)], 40)   # ties, the boundary
    for threshold in (0.0, 0.6, 0.60000001, 0.9, 1.0):
        faces = sorted((f for f in faces_from_array(dets) if f.score >= threshold), key=lambda f: -f.score)
        want = image_record("a.jpg", 640, 480, faces)                     # the filter and order written out here
        got = report("a.jpg", 640, 480, dets, threshold)
        assert to_json(got.record) == to_json(want) and got.record == want
        assert [f.score for f in got.faces] == [f.score for f in faces]


def test_no_detections_give_an_empty_face_list():
    assert array_record(None, 3, 2, np.zeros((0, 15), np.float32)) == {"image": None, "width": 3, "height": 2,
                                                                       "faces": []}
    assert report(None, 3, 2, np.zeros((0, 15), np.float32)).record["faces"] == []
