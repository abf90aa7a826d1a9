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


@pytest.mark.parametrize("seed", range(3))
def test_the_json_text_reads_back_as_the_very_record(seed):
    """Every float of orjson's text reads back as the same float (magnitudes from 1e-6 to 1e4: exponents are
    written 1e-6 where json.dumps writes 1e-06), and the text is compact, with non-ASCII names as UTF-8."""
    import json

    rng = np.random.default_rng(seed)
    dets = (rng.standard_normal((60, 15)) * 10.0 ** rng.integers(-6, 5, (60, 15))).astype(np.float32)
    dets[:, 4] = rng.random(60)
    record = report("ünïcode/ phötö.jpg", 640, 480, dets, 0.0).record
    text = to_json(record)
    assert json.loads(text) == record
    assert text.startswith('{"image":"ünïcode/ phötö.jpg","width":640,"height":480,"faces":[{"score":')


def test_a_file_name_that_is_not_utf8_is_written_escaped():
    """An undecodable byte in a POSIX file name reaches Python as a lone surrogate, which orjson refuses."""
    import json

    name = b"caf\xe9.jpg".decode("utf-8", "surrogateescape")
    text = to_json(report(name, 4, 4, np.zeros((0, 15), np.float32)).record)
    assert "\\udce9" in text and json.loads(text)["image"] == name


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_detections_that_are_not_finite_are_refused_not_written_as_null(bad):
    from retinaface_trt.errors import RetinaFaceError

    dets = np.ones((1, 15), np.float32)
    dets[0, 7] = bad
    with pytest.raises(RetinaFaceError, match="not finite"):
        report("a.jpg", 4, 4, dets, 0.5)
    with pytest.raises(RetinaFaceError, match="not finite"):
        to_json({"x": float(bad)}, indent=2)
