"""The selftest's TensorRT path (runtime.selftest.engines.TensorRTEngines) with fakes of TensorRT that compute:
the project's builder and TensorRTBackend run for real around them. The real bindings: tests/conformance."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.backends.tensorrt.sidecar import DeviceInfo, read_sidecar
from runtime.selftest.cases import plan_cases, select
from runtime.selftest.engines import TensorRTEngines
from runtime.selftest.run import References, run_case
from tests.runtime.backends.tensorrt.fakes import FakeCuda, fake_trt
from tests.runtime.selftest.conftest import SMALL
from tests.runtime.selftest.fake_engines import computing_trt

H100 = DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", 0)
T4 = DeviceInfo("Tesla T4", "7.5", 1)


def engines_for(tmp_path, trt, device="cuda:1", devices=(H100, H100)):
    cuda = trt.cuda or FakeCuda(devices=devices)
    return TensorRTEngines(tmp_path, device=device, trt=trt, cuda=cuda, input_device=torch.device("cpu"))


def case(pattern, precision="fp32"):
    return select(plan_cases(["mobilenet0.25"], [precision], SMALL), [pattern])[0]


def run(tmp_path, engines, model, pattern, precision="fp32"):
    return run_case(case(pattern, precision), engines, model, References(model, "cpu"), tmp_path)


@pytest.mark.parametrize("pattern", ["fixed", "dynamic-batch", "dynamic-size", "postprocess", "version-compatible"])
def test_a_case_is_built_serialized_deserialized_and_run_through_tensorrts_code(tmp_path, mnet_model, pattern):
    trt = computing_trt(cuda=FakeCuda(devices=(H100, H100)))
    result = run(tmp_path, engines_for(tmp_path, trt), mnet_model, pattern)
    assert result.status == "passed", result.reason
    assert [b["device"] for b in trt.builds] == [1]                        # built on the chosen device
    ran = [tuple(run.shape) for run in result.runs]
    assert ran == list(case(pattern).runs) and result.engine_bytes == len(next(iter(trt.plans)))
    deserialized = [c for c in trt.calls if c[0] == "deserialize"]
    assert deserialized == [("deserialize", 1, pattern == "version-compatible")]   # host code for VC only


def test_each_shape_runs_on_several_batches_of_different_images(tmp_path, mnet_model, monkeypatch):
    import dataclasses

    from tests.runtime.selftest import fake_engines

    trt = computing_trt(cuda=FakeCuda(devices=(H100, H100)))
    engines, seen = engines_for(tmp_path, trt), []
    real = fake_engines.ComputingEngine.__init__
    monkeypatch.setattr(fake_engines.ComputingEngine, "__init__",
                        lambda self, *args: (real(self, *args), seen.append(self.run_input))[0])
    two = dataclasses.replace(case("dynamic-batch"), batches=2)
    result = run_case(two, engines, mnet_model, References(mnet_model, "cpu"), tmp_path)
    assert result.status == "passed" and [r.batches for r in result.runs] == [2, 2]
    inputs, replayed = seen[0][:4], seen[0][4:]
    assert [tuple(x.shape[:1]) for x in inputs] == [(1,), (1,), (2,), (2,)]
    assert [x.shape[0] for x in replayed] == [1, 2] * 3 and len(result.replays) == 6     # then alternating
    assert not torch.equal(inputs[0], inputs[1]) and torch.equal(inputs[0][0], inputs[2][0])
    assert torch.equal(inputs[1][0], inputs[2][1])          # image 1: the second batch of 1, in the first of 2
    (tmp_path / "one").mkdir()
    single = run(tmp_path / "one", engines, mnet_model, "dynamic-batch")
    assert result.candidates.compared > single.candidates.compared      # the batches' measurements add up


def test_the_sidecar_written_is_the_builders(tmp_path, mnet_model):
    trt = computing_trt(cuda=FakeCuda(devices=(H100, H100)))
    run(tmp_path, engines_for(tmp_path, trt), mnet_model, "dynamic-size")
    info = read_sidecar(tmp_path / "mobilenet0.25-fp32-dynamic-size.engine")
    assert info["input_shape"] == [-1, 3, -1, -1] and info["weights_sha256"] == mnet_model.sha256
    assert info["profile"]["min"] == [1, 3, 72, 40] and info["profile"]["max"] == [1, 3, 96, 128]


def test_fp16_builds_the_strongly_typed_half_graph_and_is_judged_on_candidates(tmp_path, mnet_model):
    trt = computing_trt(cuda=FakeCuda(devices=(H100, H100)))
    result = run(tmp_path, engines_for(tmp_path, trt), mnet_model, "fixed", "fp16")
    assert ("create_network", 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)) in trt.calls
    assert result.status == "passed", result.reason
    assert [c.name for c in result.checks] == ["candidates agreeing"]


def test_a_build_tensorrt_rejects_is_a_failed_case_with_its_message(tmp_path, mnet_model):
    trt = computing_trt(cuda=FakeCuda(devices=(H100, H100)),
                        reject="[network.cpp::validate::3004] Error Code 4: Internal Error (layer ssh1: no tactic)")
    result = run(tmp_path, engines_for(tmp_path, trt), mnet_model, "fixed")
    assert result.status == "failed" and result.step == "build"
    assert result.reason.startswith("build failed: TensorRT said: ERROR: [network.cpp::validate::3004]")
    assert "could not build the engine" in result.reason and "\n" not in result.reason
    assert any("Error Code 4" in line for line in result.log)
    assert not list(tmp_path.glob("*.engine"))                             # nothing half-written


def test_an_engine_that_computes_something_else_fails_its_checks(tmp_path, mnet_model, monkeypatch):
    from tests.runtime.selftest import fake_engines

    trt = computing_trt(cuda=FakeCuda(devices=(H100, H100)))
    real = fake_engines.ComputingEngine.__init__

    def skewed(self, *args):
        real(self, *args)
        program = self.program
        self.program = lambda inputs: {k: v * 1.01 if k == "loc" else v for k, v in program(inputs).items()}

    monkeypatch.setattr(fake_engines.ComputingEngine, "__init__", skewed)
    result = run(tmp_path, engines_for(tmp_path, trt), mnet_model, "fixed")
    assert result.status == "failed" and result.reason.startswith("loc max abs")
    assert [c.passed for c in result.checks] == [False, True, True]


def test_same_cc_is_skipped_where_the_version_lacks_it(tmp_path, mnet_model):
    trt = fake_trt("10.3.0", same_cc=False, cuda=FakeCuda(devices=(H100, H100)))
    reason = engines_for(tmp_path, trt).unsupported(case("same-cc"))
    assert reason and "10.10" in reason


def test_ampere_plus_is_skipped_on_an_older_gpu(tmp_path):
    trt = fake_trt("10.16.1.11", cuda=FakeCuda(devices=(T4, T4)))
    engines = engines_for(tmp_path, trt, device="cuda:0", devices=(T4, T4))
    assert "compute capability 8.0+" in engines.unsupported(case("ampere+"))
    assert engines.unsupported(case("same-cc")) is None and engines.unsupported(case("fixed")) is None


def test_onnx_fp16_is_skipped_on_11_with_tensorrts_reason(tmp_path):
    trt = fake_trt("11.4.0.106", cuda=FakeCuda(devices=(H100, H100)))
    engines = engines_for(tmp_path, trt)
    assert "weak typing" in engines.unsupported(case("onnx", "fp16"))
    assert engines.unsupported(case("onnx", "fp32")) is None


def test_the_onnx_route_is_skipped_without_the_onnx_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)       # import onnx now raises ImportError
    engines = engines_for(tmp_path, fake_trt("10.16.1.11", cuda=FakeCuda(devices=(H100, H100))))
    reason = engines.unsupported(case("onnx"))
    assert "[onnx] extra (onnx not installed)" in reason and "pip install" in reason


def test_a_tensorrt_version_the_project_does_not_know_is_refused_once(tmp_path):
    with pytest.raises(RetinaFaceError, match="TensorRT 12.0.0 is not a version this project builds for"):
        engines_for(tmp_path, fake_trt("12.0.0", creation_flags=["STRONGLY_TYPED"], builder_flags=["TF32"],
                                       cuda=FakeCuda(devices=(H100, H100))))


def test_without_a_gpu_the_error_names_the_dry_run(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(RetinaFaceError, match="no CUDA device.*--backend torch"):
        TensorRTEngines(tmp_path, trt=fake_trt("10.16.1.11"))


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_without_tensorrt_the_error_names_the_install_and_the_dry_run(tmp_path):
    with pytest.raises(RetinaFaceError, match="TensorRT is not installed.*pip install.*--backend torch"):
        TensorRTEngines(tmp_path)
