"""The selftest's cases (runtime.selftest.cases): the issue's shapes, valid profiles, selection by pattern."""

from __future__ import annotations

import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.selftest.cases import KINDS, Sizes, plan_cases, select
from tests.runtime.selftest.conftest import SMALL

ALL = plan_cases(["mobilenet0.25", "resnet50"], ["fp32", "fp16"])


def test_every_backbone_precision_and_kind_is_one_case():
    assert len(ALL) == 2 * 2 * len(KINDS) and len({c.name for c in ALL}) == len(ALL)
    assert {c.kind for c in ALL} == set(KINDS)
    assert ALL[0].name == "mobilenet0.25/fp32/fixed"


def test_the_issues_shapes_are_the_defaults():
    runs = {c.kind: c.runs for c in ALL if c.backbone == "mobilenet0.25" and c.precision == "fp32"}
    assert runs["fixed"] == ((1, 640, 640),)
    assert runs["dynamic-batch"] == ((1, 640, 640), (4, 640, 640))
    assert runs["dynamic-size"] == ((1, 328, 200), (1, 624, 1024))       # 200×328 and 1024×624 (W×H)
    assert Sizes() == Sizes((640, 640), (200, 328), (1024, 624), 4, batches=4)
    assert all(c.batches == 4 for c in ALL)


@pytest.mark.parametrize("sizes", [Sizes(), SMALL], ids=["issue", "small"])
def test_each_profile_is_valid_and_covers_the_shapes_its_case_runs(sizes):
    for case in plan_cases(["mobilenet0.25"], ["fp32"], sizes):
        options = case.options()
        options.validate()
        profile = options.profile()
        for n, h, w in case.runs:
            shape = (n, 3, h, w)
            assert all(lo <= s <= hi for lo, s, hi in zip(profile["min"], shape, profile["max"])), case.name
        fixed = options.input_shape()[2:]
        assert all(d == -1 for d in fixed) == (case.kind in ("dynamic-size", "onnx")), case.name


def test_the_kinds_set_what_they_are_named_after():
    options = {c.kind: c.options() for c in plan_cases(["resnet50"], ["fp16"])}
    assert options["fixed"].precision == "fp16" and options["fixed"].max_batch == 1
    assert options["postprocess"].postprocess is not None and options["fixed"].postprocess is None
    assert options["version-compatible"].version_compatible and not options["fixed"].version_compatible
    assert (options["ampere+"].hardware_compatibility, options["same-cc"].hardware_compatibility) == ("ampere+", "same-cc")
    assert [c.onnx for c in plan_cases(["resnet50"], ["fp16"])] == [k == "onnx" for k in KINDS]


def test_a_small_postprocess_case_keeps_at_most_its_candidates():
    small = next(c for c in plan_cases(["mobilenet0.25"], ["fp32"], SMALL) if c.kind == "postprocess")
    priors = 2 * sum(-(-64 // s) * -(-96 // s) for s in (8, 16, 32))
    assert small.build["postprocess"].keep_top_k == priors < 750


def test_patterns_match_a_kind_or_a_whole_name():
    assert [c.name for c in select(ALL, ["resnet50/fp16/dynamic-*"])] == ["resnet50/fp16/dynamic-batch",
                                                                          "resnet50/fp16/dynamic-size"]
    assert {c.kind for c in select(ALL, ["fixed", "onnx"])} == {"fixed", "onnx"} and len(select(ALL, ["fixed", "onnx"])) == 8
    assert select(ALL, None) == ALL


def test_a_pattern_matching_nothing_is_refused_with_the_names():
    with pytest.raises(RetinaFaceError, match=r"--cases fixd matches no case; the cases are mobilenet0.25/fp32/fixed"):
        select(ALL, ["fixed", "fixd"])
