"""Backends: what runs the network. Everything before and after it is shared (:mod:`runtime.detector`).

A backend has ``name`` (str), ``cfg`` (:class:`network.config.RetinaFaceConfig`), ``device``
(:class:`torch.device`), ``fixed_input_size`` ((W, H) of an engine built for one size, or None) and

* ``infer(batch)``: float32 [N, 3, H, W] (BGR minus mean) on ``device`` →
  (loc [N, P, 4], conf [N, P, 2] after softmax, landms [N, P, 10]) float32 tensors on ``device``;
* ``close()``: release what it holds (GPU memory included); safe to call twice.

:func:`create_backend` picks and builds one by name. Names: ``auto`` (TensorRT when it is importable, a
GPU is present and an engine file is given; ONNX Runtime for an ``.onnx`` file; otherwise the PyTorch executor), ``tensorrt``, ``torch``
(the executor of the hand-built network, on CPU or CUDA) and ``onnxruntime`` (an ``.onnx`` file given as
``engine``, or ``.onnx`` / ``.pth`` / ``.wts`` given as ``weights``; see
:mod:`runtime.backends.onnxruntime_backend`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Protocol

from retinaface_trt.errors import RetinaFaceError

log = logging.getLogger("retinaface_trt")

BACKENDS = ("auto", "tensorrt", "torch", "onnxruntime")
DEVICES_HELP = "cpu, cuda, cuda:N or auto (cuda when available)"


class Backend(Protocol):
    name: str
    cfg: object
    device: object
    fixed_input_size: tuple[int, int] | None

    def infer(self, batch): ...

    def close(self) -> None: ...


def tensorrt_available() -> bool:
    """True when the ``tensorrt`` Python package can be imported (without importing it)."""
    return importlib.util.find_spec("tensorrt") is not None


def resolve_device(device: str | None = "cpu"):
    """Turn ``cpu`` / ``cuda`` / ``cuda:N`` / ``auto`` into a torch.device; raise if CUDA is asked for but absent."""
    import torch

    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise RetinaFaceError(f"unknown device {device!r}; expected {DEVICES_HELP}") from None
    if resolved.type not in ("cpu", "cuda"):
        raise RetinaFaceError(f"unsupported device {device!r}; expected {DEVICES_HELP}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RetinaFaceError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return resolved


def create_backend(name: str = "auto", weights=None, engine=None, device: str | None = "cpu") -> Backend:
    """Build the backend called ``name`` from a weights file (.pth/.wts, or a state_dict) or an engine file."""
    if name not in BACKENDS:
        raise RetinaFaceError(f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}")
    if name == "auto":
        name = _pick_auto(weights, engine)
    backend = _BUILDERS[name](weights, engine, device)
    log.info("backend: %s on %s (%s)", backend.name, backend.device, backend.cfg.name)
    return backend


def _pick_auto(weights, engine) -> str:
    import torch

    if any(str(path).lower().endswith(".onnx") for path in (engine, weights) if isinstance(path, (str, os.PathLike))):
        return "onnxruntime"
    if engine is not None and tensorrt_available() and torch.cuda.is_available():
        return "tensorrt"
    if weights is None:
        why = "TensorRT is not installed" if not tensorrt_available() else "no CUDA GPU is present"
        raise RetinaFaceError(f"cannot run engine {engine}: {why}; pass --weights to use the PyTorch executor")
    return "torch"


def _torch_backend(weights, engine, device):
    from runtime.backends.torch_backend import TorchBackend

    if weights is None:
        raise RetinaFaceError("the torch backend needs --weights (a .pth or .wts file), not an engine")
    return TorchBackend(weights, device=device)


def _tensorrt_backend(weights, engine, device):
    if not tensorrt_available():
        raise RetinaFaceError("TensorRT is not installed: pip install 'retinaface-trt[tensorrt]' "
                              "(or use --backend torch)")
    if engine is None:
        raise RetinaFaceError("the tensorrt backend needs --engine (a serialized TensorRT engine file)")
    try:
        from runtime.trt_engine import TensorRTBackend
    except ImportError as error:
        raise RetinaFaceError(f"the TensorRT runner is not available in this build ({error}); "
                              "use --backend torch") from None
    return TensorRTBackend(engine, device=device)


def _onnxruntime_backend(weights, engine, device):
    from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    model = engine if engine is not None else weights
    if model is None or isinstance(model, dict):
        raise RetinaFaceError("the onnxruntime backend needs a model file: --engine MODEL.onnx "
                              "(or --weights .onnx/.pth/.wts)")
    return OnnxRuntimeBackend(model, device=device)


_BUILDERS = {"torch": _torch_backend, "tensorrt": _tensorrt_backend, "onnxruntime": _onnxruntime_backend}
