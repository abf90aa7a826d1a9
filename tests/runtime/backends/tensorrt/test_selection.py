"""Which backend runs a given engine (runtime.backends: ``_pick_auto``, ``_tensorrt_backend``): an engine
that fails its checks is an error whatever the backend choice, and an unused engine is said."""

from __future__ import annotations

import logging
import sys
import types

import pytest
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime import backends
from runtime.backends.tensorrt.sidecar import write_sidecar
from tests.runtime.backends.tensorrt.fakes import info_for


@pytest.fixture()
def engine(tmp_path):
    path = tmp_path / "m.engine"
    plan = b"serialized plan" * 10
    path.write_bytes(plan)
    write_sidecar(path, info_for(plan))
    return path


@pytest.fixture()
def no_tensorrt(monkeypatch):
    monkeypatch.setattr(backends, "tensorrt_available", lambda: False)


def test_auto_with_a_corrupt_engine_and_weights_is_an_error(engine, mnet_pth, no_tensorrt):
    """Issue 13: `detect --engine CORRUPT --weights W --backend auto` silently ran the executor."""
    engine.write_bytes(b"x" * engine.stat().st_size)
    with pytest.raises(RetinaFaceError, match="does not match the sha256"):
        backends.create_backend("auto", weights=mnet_pth, engine=engine)


def test_auto_with_an_engine_whose_sidecar_is_invalid_is_an_error(engine, mnet_pth, no_tensorrt):
    engine.with_name(engine.name + ".json").write_text('{"format": 1, "input_shape": "abc"}')
    with pytest.raises(RetinaFaceError, match="not a valid engine sidecar"):
        backends.create_backend("auto", weights=mnet_pth, engine=engine)


def test_auto_with_a_missing_engine_and_weights_is_an_error(tmp_path, mnet_pth, no_tensorrt):
    with pytest.raises(RetinaFaceError, match="does not exist"):
        backends.create_backend("auto", weights=mnet_pth, engine=tmp_path / "absent.engine")


def test_auto_with_an_intact_engine_it_cannot_run_says_so_and_uses_the_weights(engine, mnet_pth, no_tensorrt,
                                                                                caplog):
    with caplog.at_level(logging.WARNING, "retinaface_trt"):
        backend = backends.create_backend("auto", weights=mnet_pth, engine=engine, device="cpu")
    assert backend.name == "executor" and f"engine {engine} is not used (TensorRT is not installed)" in caplog.text
    assert caplog.text.count("is not used") == 1           # one check of the file, one line saying so


def test_tensorrt_with_a_corrupt_engine_is_not_rebuilt_from_the_weights(engine, mnet_pth, monkeypatch):
    """A mismatch (another version or GPU) is rebuilt from the weights; a damaged file is an error."""
    built = []
    monkeypatch.setattr(backends, "tensorrt_available", lambda: True)
    monkeypatch.setattr(backends, "_cached_engine", lambda request: built.append(request) or "cache.engine")
    engine.write_bytes(b"truncated")
    with pytest.raises(RetinaFaceError, match="truncated"):
        backends.create_backend("tensorrt", weights=mnet_pth, engine=engine)
    assert built == []


def test_tensorrt_without_tensorrt_names_the_install_and_the_alternative(no_tensorrt):
    with pytest.raises(RetinaFaceError, match=r"pip install '\.\[tensorrt\]' in the retinaface-trt checkout.*--backend executor"):
        backends.create_backend("tensorrt", engine="m.engine")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_tensorrt_on_a_machine_without_gpu_says_so(engine, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.16.1.11"))
    monkeypatch.setattr(backends, "tensorrt_available", lambda: True)
    with pytest.raises(RetinaFaceError, match="TensorRT needs an NVIDIA GPU, but PyTorch sees no CUDA device"):
        backends.create_backend("tensorrt", engine=engine, device="cuda")


def test_torch_with_a_corrupt_engine_is_an_error_too(engine, mnet_pth):
    engine.write_bytes(b"truncated")
    with pytest.raises(RetinaFaceError, match="truncated"):
        backends.create_backend("torch", weights=mnet_pth, engine=engine, device="cpu")


def test_torch_with_an_intact_engine_says_it_is_not_used(engine, mnet_pth, caplog):
    with caplog.at_level(logging.WARNING, "retinaface_trt"):
        backend = backends.create_backend("torch", weights=mnet_pth, engine=engine, device="cpu")
    assert backend.name == "executor" and f"engine {engine} is not used" in caplog.text
