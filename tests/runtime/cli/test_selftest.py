"""`retinaface-trt selftest`: the dry run from the command line, the report file, exit codes and refusals."""

from __future__ import annotations

import _thread
import functools
import importlib.util
import json
import time

import pytest

import runtime.selftest
from runtime.cli.main import main
from runtime.selftest.engines import ExecutorStandIn
from tests.runtime.selftest.conftest import SMALL

FAST = ["--backend", "torch", "--device", "cpu", "--precision", "fp32", "--cases", "mobilenet0.25/fp32/fixed"]
TWO = FAST + ["mobilenet0.25/fp32/postprocess"]


@pytest.fixture(autouse=True)
def small_inputs(monkeypatch):
    """The CLI runs the issue's sizes; here the same cases on small inputs, to stay fast on a CPU."""
    monkeypatch.setattr(runtime.selftest, "run_selftest", functools.partial(runtime.selftest.run_selftest, sizes=SMALL))


def test_the_dry_run_prints_one_line_per_case_and_exits_0(capsys):
    assert main(["selftest", *TWO]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines if line.startswith("mobilenet0.25/")] == \
        [["mobilenet0.25/fp32/fixed", "passed"], ["mobilenet0.25/fp32/postprocess", "passed"]]
    assert "dry run" in lines[0] and lines[-1].startswith("2 passed, 0 failed, 0 skipped")
    assert "selftest [2/2] mobilenet0.25/fp32/postprocess: passed" in err


def test_the_report_is_written_as_json(tmp_path, capsys):
    report = tmp_path / "selftest.json"
    assert main(["selftest", *FAST, "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["passed"] is True and [c["name"] for c in data["cases"]] == ["mobilenet0.25/fp32/fixed"]
    assert f"report: {report}" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["selftest.json"]          # no temporary file left


@pytest.mark.parametrize("name, make, message", [
    ("selftest.json", lambda p: p.write_text("old"), "already exists; pass --force"),
    ("selftest.json", lambda p: p.mkdir(), "is a folder"),
    ("plain/selftest.json", lambda p: p.parent.write_text("x"), "plain is a file, not a folder"),
])
def test_an_unwritable_report_is_refused_before_any_work(tmp_path, capsys, name, make, message):
    report = tmp_path / name
    make(report)
    assert main(["selftest", *FAST, "--report", str(report)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and message in err and err.count("\n") == 1 and "selftest [" not in err


def test_force_overwrites_the_report(tmp_path):
    report = tmp_path / "selftest.json"
    report.write_text("old")
    assert main(["selftest", *FAST, "--report", str(report), "--force"]) == 0
    assert json.loads(report.read_text())["tool"] == "retinaface-trt selftest"


def test_a_failing_case_exits_1_and_says_where_to_send_the_report(tmp_path, monkeypatch, capsys):
    class Skewed(ExecutorStandIn):
        def open(self, engine_path):
            engine = super().open(engine_path)
            infer = engine.infer
            engine.infer = lambda batch: tuple(t * 1.5 if t.is_floating_point() else t for t in infer(batch))
            return engine

    monkeypatch.setattr("runtime.selftest.engines.ExecutorStandIn", Skewed)
    report = tmp_path / "r.json"
    assert main(["selftest", *TWO, "--report", str(report)]) == 1
    out, _ = capsys.readouterr()
    assert "0 passed, 2 failed" in out and "open an issue" in out.splitlines()[-1]
    assert json.loads(report.read_text())["summary"]["failed"] == 2


def test_a_pattern_matching_no_case_exits_1(capsys):
    assert main(["selftest", "--backend", "torch", "--cases", "fixd"]) == 1
    assert "--cases fixd matches no case" in capsys.readouterr().err


def test_a_missing_checkpoint_exits_1(tmp_path, capsys):
    assert main(["selftest", *FAST, "--weights", str(tmp_path / "none.pth")]) == 1
    assert "is not a file" in capsys.readouterr().err


def test_an_unknown_precision_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_:
        main(["selftest", "--precision", "int8"])
    assert exit_.value.code == 2


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_the_tensorrt_backend_without_tensorrt_exits_1_naming_the_dry_run(capsys):
    assert main(["selftest", "--cases", "fixed"]) == 1
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err and "--backend torch" in err and err.count("\n") == 1


def test_the_report_is_rewritten_after_each_case_so_an_interrupted_run_keeps_what_ran(tmp_path, monkeypatch):
    """Issue 25: the report used to be written only at the end."""
    report, seen = tmp_path / "selftest.json", []

    class Interrupted(ExecutorStandIn):
        def open(self, engine_path):
            if "postprocess" in str(engine_path):
                seen.append(json.loads(report.read_text()))
                _thread.interrupt_main()          # Ctrl-C while the second case runs
                time.sleep(5)
            return super().open(engine_path)

    monkeypatch.setattr("runtime.selftest.engines.ExecutorStandIn", Interrupted)
    assert main(["selftest", *TWO, "--report", str(report), "--case-budget", "60"]) == 130
    (during,) = seen
    assert during["finished"] is False and [c["name"] for c in during["cases"]] == ["mobilenet0.25/fp32/fixed"]
    assert json.loads(report.read_text()) == during


def test_full_and_the_case_budget_reach_the_run(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime.selftest, "run_selftest", lambda **kwargs: calls.append(kwargs) or pytest.skip("seen"))
    with pytest.raises(pytest.skip.Exception):
        main(["selftest", "--backend", "torch", "--full", "--case-budget", "42"])
    assert calls[0]["full"] is True and calls[0]["budget"] == 42


@pytest.mark.parametrize("bad", ["0", "-3", "soon"])
def test_a_bad_case_budget_is_a_usage_error(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["selftest", "--case-budget", bad])
    assert exit_.value.code == 2 and "--case-budget must be an integer" in capsys.readouterr().err
