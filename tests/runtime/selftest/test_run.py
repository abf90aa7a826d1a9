"""The selftest end to end as the dry run (the executor standing in for TensorRT), on small inputs: every case
through the same steps as with TensorRT, a wrong engine failing, missing extras skipped, the JSON report."""

from __future__ import annotations

import json
import sys

import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.selftest import as_dict, format_table, run_selftest
from runtime.selftest.cases import KINDS, Sizes
from runtime.selftest.engines import ExecutorStandIn
from tests.runtime.selftest.conftest import SMALL


# Every kind in fp32; in fp16 (float16 convolutions are slow on a CPU) the kinds judged differently.
DRY_RUN = ["mobilenet0.25/fp32/*", "mobilenet0.25/fp16/fixed", "mobilenet0.25/fp16/postprocess",
           "mobilenet0.25/fp16/onnx"]


@pytest.fixture(scope="module")
def mnet_dry_run():
    return run_selftest(backend="torch", device="cpu", patterns=DRY_RUN, sizes=SMALL)


def test_the_dry_run_passes_every_case(mnet_dry_run):
    statuses = {r.case.name: r.status for r in mnet_dry_run.results}
    assert len(statuses) == len(KINDS) + 3
    # TensorRT 11's rules (the executor's namespace is 11.4's): no ONNX model in fp16.
    assert [n for n, s in statuses.items() if s == "skipped"] == ["mobilenet0.25/fp16/onnx"]
    assert all(s == "passed" for n, s in statuses.items() if n != "mobilenet0.25/fp16/onnx")
    assert mnet_dry_run.passed


def test_each_case_ran_its_shapes_and_measured_them(mnet_dry_run):
    for result in mnet_dry_run.results:
        if result.status == "skipped":
            assert "weak typing" in result.reason and result.runs == []
            continue
        assert [tuple(run.shape) for run in result.runs] == list(result.case.runs)
        assert result.build_seconds >= 0 and result.engine_bytes > 0 and result.candidates.compared > 0
        assert (result.errors is None) == result.case.postprocess
        assert result.checks and all(c.passed for c in result.checks)


def test_fp32_stand_in_engines_are_within_float32_rounding_of_the_reference(mnet_dry_run):
    """The stand-in folds BatchNorm as an engine does, so its errors are rounding, not zero."""
    fp32 = [r for r in mnet_dry_run.results if r.case.precision == "fp32" and r.errors]
    assert all(0 < r.errors["abs"]["loc"] < 1e-4 for r in fp32)


def test_resnet50_cases_run_too():
    result = run_selftest(backend="torch", device="cpu", patterns=["resnet50/*/fixed"], sizes=SMALL)
    assert [(r.case.name, r.status) for r in result.results] == [("resnet50/fp32/fixed", "passed"),
                                                                  ("resnet50/fp16/fixed", "passed")]


def test_a_checkpoint_is_judged_on_faces(mnet_pth):
    sizes = Sizes(fixed=(192, 160), odd=(136, 200), large=(256, 192), batch=2)
    result = run_selftest(mnet_pth, backend="torch", device="cpu", precisions=["fp16"],
                          patterns=["fixed", "postprocess"], sizes=sizes)
    for case in result.results:
        assert case.status == "passed" and case.faces.reference >= 3, (case.case.name, case.reason, case.faces)
        assert [c.name for c in case.checks] == ["faces matched"]
    assert result.models[0]["random"] is False and result.models[0]["source"] == str(mnet_pth)


def changed_engines(transform):
    """An ``engines_factory``: the dry run's stand-in, its engines' outputs passed through ``transform``
    (loc, conf, landms) → (loc, conf, landms): what a wrong layer in an engine does."""
    class Changed(ExecutorStandIn):
        def open(self, engine_path):
            engine = super().open(engine_path)
            infer = engine.infer
            engine.infer = lambda batch: transform(*infer(batch))
            return engine

    return lambda work: Changed("cpu")


def test_a_wrong_engine_fails_its_case_and_the_run():
    result = run_selftest(backend="torch", patterns=["mobilenet0.25/fp32/fixed"], sizes=SMALL,
                          engines_factory=changed_engines(lambda loc, *rest: (loc + 0.01, *rest)))
    (case,) = result.results
    assert case.status == "failed" and case.reason.startswith("loc max abs 0.01") and not result.passed
    assert "failed" in format_table(result).splitlines()[-3]


def test_a_wrong_fp16_engine_fails_on_its_candidates():
    """fp16 with random weights is judged before NMS: boxes moved by a tenth of their size no longer agree."""
    result = run_selftest(backend="torch", patterns=["mobilenet0.25/fp16/fixed"], sizes=SMALL,
                          engines_factory=changed_engines(lambda loc, *rest: (loc + 1.0, *rest)))
    (case,) = result.results
    assert case.status == "failed" and case.reason.startswith("candidates agreeing 0 (≥ 0.99)")


def test_an_engine_that_raises_is_a_failed_case_not_a_crash():
    class Broken(ExecutorStandIn):
        def open(self, engine_path):
            raise RuntimeError("deserialization exploded")

    result = run_selftest(backend="torch", patterns=["mobilenet0.25/fp32/fixed", "mobilenet0.25/fp32/onnx"],
                          sizes=SMALL, engines_factory=lambda work: Broken("cpu"))
    assert [(r.status, r.step) for r in result.results] == [("failed", "load"), ("failed", "load")]
    assert result.results[0].reason == "load failed: RuntimeError: deserialization exploded"


def test_the_onnx_route_without_the_onnx_extra_is_skipped_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = run_selftest(backend="torch", device="cpu", precisions=["fp32"], patterns=["mobilenet0.25/*/onnx"],
                          sizes=SMALL)
    (case,) = result.results
    assert case.status == "skipped" and "onnxruntime not installed" in case.reason
    assert "pip install '.[onnx]' in the retinaface-trt checkout" in case.reason
    assert not result.passed          # nothing ran: a run of skipped cases proves nothing
    assert format_table(result).splitlines()[-1].startswith("nothing was tested")


def test_an_engine_giving_nan_fails_and_the_report_stays_strict_json():
    result = run_selftest(backend="torch", patterns=["mobilenet0.25/fp32/fixed"], sizes=SMALL,
                          engines_factory=changed_engines(lambda loc, *rest: (loc * float("nan"), *rest)))
    assert result.results[0].status == "failed" and "loc max abs nan" in result.results[0].reason
    report = json.loads(json.dumps(as_dict(result), allow_nan=False))
    assert report["cases"][0]["errors"]["abs"]["loc"] == "nan"


def test_the_report_holds_everything_and_is_json(mnet_dry_run):
    report = json.loads(json.dumps(as_dict(mnet_dry_run)))
    assert report["passed"] is True and report["summary"] == {"passed": 10, "failed": 0, "skipped": 1}
    assert report["backend"] == "torch" and "stands in" in report["engines"] and "issue" in report["send_to"]
    environment = report["environment"]
    assert {"project_version", "python", "torch", "tensorrt", "driver", "device", "onnxruntime"} <= set(environment)
    assert report["rules"]["fp32_max_abs"] == {"loc": 1e-3, "conf": 1e-4, "landms": 1e-3}
    case = next(c for c in report["cases"] if c["name"] == "mobilenet0.25/fp32/dynamic-size")
    assert case["status"] == "passed" and case["build"]["options"]["min_size"] == [40, 72]
    assert [run["shape"] for run in case["runs"]] == [[1, 72, 40], [1, 96, 128]]
    assert set(case["runs"][0]) == {"shape", "batches", "errors", "faces", "candidates", "counts"}
    assert {c["name"] for c in case["checks"]} == {"loc max abs", "conf max abs", "landms max abs"}
    post = next(c for c in report["cases"] if c["name"] == "mobilenet0.25/fp32/postprocess")
    assert post["errors"] is None and len(post["runs"][1]["counts"]["engine"]) == 2


def test_the_table_has_one_line_per_case_under_the_stated_rules(mnet_dry_run):
    lines = format_table(mnet_dry_run).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("case "))
    body = lines[header + 1:header + 1 + len(mnet_dry_run.results)]
    assert [line.split()[:2] for line in body] == [[r.case.name, r.status] for r in mnet_dry_run.results]
    assert any("loc ≤ 0.001, conf ≤ 0.0001, landms ≤ 0.001" in line for line in lines[:header])
    assert lines[-1].startswith("10 passed, 0 failed, 1 skipped")
    fixed = body[0].split()
    assert fixed[4].endswith("*") and not fixed[8].endswith("*")    # fp32 is judged on the outputs


def test_arguments_are_checked_before_any_work():
    with pytest.raises(RetinaFaceError, match="matches no case"):
        run_selftest(backend="torch", patterns=["nothing-like-this"])
    with pytest.raises(RetinaFaceError, match="not 'onnxruntime'"):
        run_selftest(backend="onnxruntime")
    with pytest.raises(RetinaFaceError, match="precisions must be"):
        run_selftest(backend="torch", precisions=["int8"])


def test_cases_of_another_backbone_than_the_checkpoint_are_refused(mnet_pth):
    with pytest.raises(RetinaFaceError, match="no selected case is for the mobilenet0.25 backbone"):
        run_selftest(mnet_pth, backend="torch", device="cpu", patterns=["resnet50/*"], sizes=SMALL)
