"""Backend selection: names, devices and the errors for what is not installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime import backends
from runtime.backends.base import Backend
from runtime.device import resolve_device


def test_unknown_backend_is_refused_with_the_known_names():
    with pytest.raises(RetinaFaceError, match="auto, tensorrt, executor, onnxruntime, openvino, torch"):
        backends.create_backend("tflite", weights="w.pth")


def test_torch_is_the_executor_s_old_name(mnet_pth):
    with backends.create_backend("torch", weights=str(mnet_pth), device="cpu") as backend:
        assert backend.name == "executor"


def test_tensorrt_missing_names_the_install_command(monkeypatch):
    monkeypatch.setattr(backends, "tensorrt_available", lambda: False)
    with pytest.raises(RetinaFaceError, match=r"pip install '\.\[tensorrt\]' in the retinaface-trt checkout"):
        backends.create_backend("tensorrt", engine="model.engine")


def test_onnxruntime_without_a_model_file_says_what_it_needs():
    with pytest.raises(RetinaFaceError, match="needs a model file"):
        backends.create_backend("onnxruntime")


def test_auto_with_engine_only_and_no_tensorrt_explains(monkeypatch):
    monkeypatch.setattr(backends, "tensorrt_available", lambda: False)
    with pytest.raises(RetinaFaceError, match="TensorRT is not installed"):
        backends.create_backend("auto", engine="model.engine")


def test_torch_backend_missing_weights_file(tmp_path):
    with pytest.raises(RetinaFaceError, match="not found"):
        backends.create_backend("torch", weights=tmp_path / "absent.pth")


def test_unknown_device_is_refused():
    with pytest.raises(RetinaFaceError, match="device"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_gpu_is_refused():
    with pytest.raises(RetinaFaceError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_weights_of_another_network_are_refused():
    from runtime.backends.executor import ExecutorBackend

    classifier = {"features.0.weight": np.zeros((8, 3, 3, 3), np.float32), "fc.weight": np.zeros((2, 8), np.float32)}
    with pytest.raises(RetinaFaceError, match="not a RetinaFace checkpoint"):
        ExecutorBackend(classifier, device="cpu")


def test_weights_of_the_wrong_backbone_are_refused(mnet_pth):
    """MobileNet weights under a ResNet-50 marker: the first ResNet layer's weights are missing."""
    from runtime.backends.executor import ExecutorBackend

    state = torch.load(mnet_pth, map_location="cpu", weights_only=True)
    weights = {k: v.numpy() for k, v in state.items()}
    weights["body.conv1.weight"] = weights.pop("body.stage1.0.0.weight")
    with pytest.raises(RetinaFaceError, match="do not match"):
        ExecutorBackend(weights, device="cpu")


class _FakeTensorRTBackend(Backend):
    """Stands in for runtime.backends.tensorrt.engine.TensorRTBackend: engines named 'stale*' were built elsewhere."""

    def __init__(self, engine, device="cuda"):
        from runtime.backends.tensorrt.sidecar import EngineMismatchError

        if str(engine).startswith("stale"):
            raise EngineMismatchError(f"engine {engine} was built with TensorRT 8.6.1 (running 10.3.0)")
        self.engine, self.name, self.device = engine, "tensorrt", torch.device("cpu")
        self.cfg = type("Cfg", (), {"name": "mobilenet0.25"})()


@pytest.fixture
def fake_tensorrt(monkeypatch):
    from runtime.backends.tensorrt import engine as trt_engine

    built = []
    monkeypatch.setattr(backends, "tensorrt_available", lambda: True)
    monkeypatch.setattr(trt_engine, "TensorRTBackend", _FakeTensorRTBackend)
    monkeypatch.setattr(backends, "_cached_engine", lambda request: built.append(request) or "cache/built.engine")
    return built


def test_tensorrt_engine_is_used_as_given(fake_tensorrt):
    backend = backends.create_backend("tensorrt", engine="model.engine", weights="w.pth")
    assert backend.engine == "model.engine" and fake_tensorrt == []


def test_stale_engine_is_rebuilt_from_weights_into_the_cache(fake_tensorrt):
    backend = backends.create_backend("tensorrt", engine="stale.engine", weights="w.pth", precision="fp16",
                                      input_size=(512, 384))
    assert backend.engine == "cache/built.engine"
    assert [(r.weights, r.precision, r.input_size) for r in fake_tensorrt] == [("w.pth", "fp16", (512, 384))]


def test_stale_engine_without_weights_says_how_to_rebuild(fake_tensorrt):
    with pytest.raises(RetinaFaceError, match="built with TensorRT 8.6.1"):
        backends.create_backend("tensorrt", engine="stale.engine")
    assert fake_tensorrt == []


def test_weights_alone_build_an_engine(fake_tensorrt):
    assert backends.create_backend("tensorrt", weights="w.pth").engine == "cache/built.engine"


def test_unknown_precision_is_refused():
    with pytest.raises(RetinaFaceError, match="fp32, fp16, int8"):
        backends.create_backend("torch", weights="w.pth", precision="int4")


def test_int8_without_calibration_images_is_refused():
    with pytest.raises(RetinaFaceError, match="--precision int8 needs calibration images"):
        backends.create_backend("torch", weights="w.pth", precision="int8")


def test_tensorrt_on_the_cpu_is_refused_before_an_engine_is_built(mnet_pth, monkeypatch):
    """--backend tensorrt --device cpu used to build an engine on cuda:0 (minutes) and only then be refused."""
    from runtime.backends.tensorrt import cache

    monkeypatch.setattr(backends, "tensorrt_available", lambda: True)
    monkeypatch.setattr(cache, "ensure_engine", lambda *a, **k: pytest.fail("an engine was built for --device cpu"))
    with pytest.raises(RetinaFaceError, match="the tensorrt backend runs on an NVIDIA GPU, not on cpu"):
        backends.create_backend("tensorrt", weights=mnet_pth, device="cpu")


@pytest.mark.parametrize("precision, warned", [("fp16", True), ("fp32", False)])
def test_fp16_on_a_cpu_is_said_to_be_slow(mnet_pth, caplog, precision, warned):
    with caplog.at_level("WARNING", logger="retinaface_trt"):
        backends.create_backend("torch", weights=str(mnet_pth), device="cpu", precision=precision).close()
    said = [r.getMessage() for r in caplog.records if "fp16 on a CPU" in r.getMessage()]
    assert len(said) == int(warned) and (not warned or "use --precision fp32 on a CPU" in said[0])
