"""The one thresholds object: defaults, validation, keywords, the engine's limit."""

import pytest

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.thresholds import MAX_TOP_K, Thresholds


def test_defaults_are_detect_py_s():
    assert Thresholds().as_dict() == {"confidence_threshold": 0.02, "nms_threshold": 0.4, "top_k": 5000,
                                      "keep_top_k": 750}


def test_fields_are_keywords_only():
    with pytest.raises(TypeError):
        Thresholds(0.5, 0.4)     # two orders of these fields existed: no positional form


@pytest.mark.parametrize("field, value", [("confidence_threshold", -0.1), ("nms_threshold", 1.01),
                                          ("nms_threshold", float("nan")), ("top_k", 0), ("keep_top_k", True),
                                          ("keep_top_k", 2.5)])
def test_a_bad_value_is_one_line_naming_the_field(field, value):
    with pytest.raises(RetinaFaceError, match=field):
        Thresholds(**{field: value})


def test_take_removes_the_keywords_it_uses_and_keeps_the_rest():
    options = {"confidence_threshold": "0.5", "keep_top_k": 7, "resize": "stretch"}
    assert Thresholds.take(options) == Thresholds(confidence_threshold=0.5, keep_top_k=7)
    assert options == {"resize": "stretch"}
    whole = Thresholds(top_k=10)
    assert Thresholds.take({"thresholds": whole}) is whole
    with pytest.raises(RetinaFaceError, match="one Thresholds object"):
        Thresholds.take({"thresholds": whole, "top_k": 3})


def test_the_engine_clips_top_k_and_refuses_keep_top_k_past_its_limit():
    assert Thresholds().in_engine().top_k == MAX_TOP_K == 3840
    assert Thresholds(top_k=12, keep_top_k=5).in_engine() == Thresholds(top_k=12, keep_top_k=5)
    with pytest.raises(RetinaFaceError, match="keep_top_k must be an integer in 1..3840"):
        Thresholds(keep_top_k=MAX_TOP_K + 1).in_engine()
    with pytest.raises(RetinaFaceError, match="top_k must be an integer in 1..3840"):
        Thresholds(top_k=MAX_TOP_K + 1).check_engine()
