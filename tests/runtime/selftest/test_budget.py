"""The selftest's default set, its graph replays, its per-case time budget and its report as it goes (issue 25):
the dry run on small inputs."""

from __future__ import annotations

import time

import pytest

from runtime.selftest import run_selftest
from runtime.selftest.cases import BACKBONES_BY_DEFAULT, DEFAULT_KINDS, KINDS, chosen_cases, plan_cases
from runtime.selftest.engines import ExecutorStandIn
from tests.runtime.selftest.conftest import SMALL


def test_the_default_set_is_the_engines_most_users_build_and_full_is_every_case():
    names = [c.name for c in chosen_cases(["mobilenet0.25", "resnet50"], ["fp32", "fp16"], SMALL)]
    assert names == ["mobilenet0.25/fp32/dynamic-batch", "mobilenet0.25/fp16/dynamic-batch"]
    assert DEFAULT_KINDS == ("dynamic-batch",) and BACKBONES_BY_DEFAULT == ("mobilenet0.25",)
    full = chosen_cases(["mobilenet0.25", "resnet50"], ["fp32", "fp16"], SMALL, full=True)
    assert full == plan_cases(["mobilenet0.25", "resnet50"], ["fp32", "fp16"], SMALL)
    assert len(full) == 2 * 2 * len(KINDS)
    only = chosen_cases(["resnet50"], ["fp16"], SMALL)     # the checkpoint's backbone
    assert [c.name for c in only] == ["resnet50/fp16/dynamic-batch"]
    picked = chosen_cases(["mobilenet0.25", "resnet50"], ["fp32"], SMALL, patterns=["resnet50/*/fixed"])
    assert [c.name for c in picked] == ["resnet50/fp32/fixed"]


@pytest.fixture(scope="module")
def default_run():
    lines, reports = [], []
    result = run_selftest(backend="torch", device="cpu", sizes=SMALL, progress=lines.append, on_result=reports.append)
    return result, lines, reports


def test_the_default_run_alternates_batch_shapes_and_checks_every_call(default_run):
    result, _, _ = default_run
    assert [r.case.name for r in result.results] == ["mobilenet0.25/fp32/dynamic-batch",
                                                     "mobilenet0.25/fp16/dynamic-batch"]
    for case in result.results:
        assert case.status == "passed", case.reason
        shapes = [tuple(r.shape) for r in case.replays]
        assert shapes == [(1, 64, 96), (2, 64, 96)] * 3       # alternating, every call compared
        assert all(r.candidates.compared > 0 for r in case.replays)


def test_a_line_per_case_with_its_time_and_budget_and_the_report_as_it_goes(default_run):
    result, lines, reports = default_run
    done = [line for line in lines if ": passed" in line]
    assert len(done) == 2 and all(" s of its " in line and "s budget" in line for line in done)
    assert [len(r.results) for r in reports] == [1, 2] and [r.finished for r in reports] == [False, True]
    assert all(0 < r.seconds <= r.budget for r in result.results)


class _WrongOnReplay(ExecutorStandIn):
    """An engine right on a shape's first call and wrong on later ones (a graph replaying stale state)."""

    def open(self, engine_path):
        engine = super().open(engine_path)
        infer, seen = engine.infer, set()

        def wrong_later(batch):
            outputs = infer(batch)
            key = tuple(batch.shape)
            if key in seen:
                outputs = (outputs[0] + 0.05, *outputs[1:])
            seen.add(key)
            return outputs
        engine.infer = wrong_later
        return engine


def test_a_wrong_replay_fails_the_case():
    result = run_selftest(backend="torch", device="cpu", precisions=["fp32"], sizes=SMALL,
                          engines_factory=lambda work: _WrongOnReplay("cpu"))
    (case,) = result.results
    assert case.status == "failed" and case.reason.startswith("loc max abs 0.05"), case.reason


class _Stuck(ExecutorStandIn):
    def open(self, engine_path):
        time.sleep(8)
        return super().open(engine_path)


def test_a_case_over_its_budget_fails_and_the_run_ends_without_waiting_for_it():
    start = time.monotonic()
    result = run_selftest(backend="torch", device="cpu", sizes=SMALL, budget=2.0,
                          engines_factory=lambda work: _Stuck("cpu"))
    assert time.monotonic() - start < 20
    first, second = result.results
    assert first.status == "failed" and "did not finish within its budget of 2 s" in first.reason
    assert first.step == "load" and second.status == "skipped" and "did not finish" in second.reason
    assert not result.passed
