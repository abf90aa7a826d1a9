"""Backends: what runs the network. Everything before and after it is shared (:mod:`runtime.detector`).

A backend has ``name`` (str), ``cfg`` (:class:`network.config.RetinaFaceConfig`), ``device``
(:class:`torch.device`), ``fixed_input_size`` ((W, H) of an engine built for one size, or None) and

* ``infer(batch)``: float32 [N, 3, H, W] (BGR minus mean) on ``device`` →
  (loc [N, P, 4], conf [N, P, 2] after softmax, landms [N, P, 10]) float32 tensors on ``device``;
* ``close()``: release what it holds (GPU memory included); safe to call twice.

:func:`create_backend` picks and builds one by name. Names: ``auto`` (TensorRT when it is importable, a
GPU is present and an engine file is given; ONNX Runtime for an ``.onnx`` file, and for fp32 weights on a CPU when
the ``onnx`` extra is installed; otherwise the PyTorch executor), ``tensorrt``, ``torch``
(the executor of the hand-built network, on CPU or CUDA) and ``onnxruntime`` (an ``.onnx`` file given as
``engine``, or ``.onnx`` / ``.pth`` / ``.wts`` given as ``weights``; see
:mod:`runtime.backends.onnxruntime`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, replace
from typing import Protocol

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.extras import install_hint

log = logging.getLogger("retinaface_trt")

BACKENDS = ("auto", "tensorrt", "torch", "onnxruntime")
FLOAT_PRECISIONS = ("fp32", "fp16")
PRECISIONS = FLOAT_PRECISIONS + ("int8",)          # int8 needs calibration images (runtime.calibration)


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


@dataclass(frozen=True)
class BackendRequest:
    """What :func:`create_backend` is asked to build.

    precision:    "fp32" or "fp16" (the torch executor runs a float16 network; TensorRT engines built from
                  weights use it; an existing engine keeps the precision it was built with)
    input_size:   (W, H) of engines built automatically from weights (stretch / letterbox sizes)
    engine_cache: folder of engines built from weights (default :func:`runtime.backends.tensorrt.cache.default_engine_cache`)
    postprocess:  a ``network.postprocess.PostprocessSettings`` to build the network with decoding and NMS
                  inside (fixed ``input_size``), or None for the raw outputs
    threads:      CPU threads for the network and the pipeline's own work (None: one per core)
    int8:         a ``runtime.calibration.Int8Settings`` for precision "int8" (the executor runs the explicit
                  INT8 network, emulated; TensorRT engines built from weights are INT8 engines)
    """

    weights: object = None
    engine: object = None
    device: str | None = "cpu"
    precision: str = "fp32"
    input_size: tuple[int, int] = (640, 640)
    engine_cache: object = None
    postprocess: object = None
    threads: int | None = None
    int8: object = None


def create_backend(name: str = "auto", weights=None, engine=None, device: str | None = "cpu",
                   precision: str = "fp32", input_size=(640, 640), engine_cache=None, postprocess=None,
                   threads: int | None = None, int8=None) -> Backend:
    """Build the backend called ``name`` from a weights file (.pth/.wts, or a state_dict) or an engine file."""
    if name not in BACKENDS:
        raise RetinaFaceError(f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise RetinaFaceError(f"unknown precision {precision!r}; expected one of: {', '.join(PRECISIONS)}")
    from runtime.calibration import check_int8_request

    check_int8_request(precision, int8)
    request = BackendRequest(weights, engine, device, precision, tuple(input_size), engine_cache, postprocess,
                             threads, int8)
    if threads:
        import torch

        torch.set_num_threads(threads)       # process-wide: the executor and the pipeline's torch work
    if name == "auto":
        name = _pick_auto(weights, engine)
        if name == "torch" and _onnxruntime_is_faster(request):
            name = "onnxruntime"
        elif name == "torch":         # an engine given was checked and reported unused by _pick_auto
            request = replace(request, engine=None)
    backend = _BUILDERS[name](request)
    _warn_fp16_on_cpu(backend, precision)
    log.info("backend: %s on %s (%s, %s)", backend.name, backend.device, backend.cfg.name,
             getattr(backend, "precision", precision))
    return backend


def _warn_fp16_on_cpu(backend, precision: str) -> None:
    """PyTorch's CPU kernels have no fast float16 convolutions: the network then takes seconds per photo where
    fp32 takes a fraction of one (a user measured 14 s against 0.2 s), which the user should hear about once."""
    if precision == "fp16" and getattr(getattr(backend, "device", None), "type", None) == "cpu":
        log.warning("fp16 on a CPU is emulated and runs many times slower than fp32 (seconds per image); "
                    "use --precision fp32 on a CPU, fp16 on a GPU")


def _pick_auto(weights, engine) -> str:
    import torch

    if any(str(path).lower().endswith(".onnx") for path in (engine, weights) if isinstance(path, (str, os.PathLike))):
        return "onnxruntime"
    if engine is not None and tensorrt_available() and torch.cuda.is_available():
        return "tensorrt"
    why = "TensorRT is not installed" if not tensorrt_available() else "no CUDA GPU is present"
    if weights is None:
        raise RetinaFaceError(f"cannot run engine {engine}: {why}; pass --weights to use the PyTorch executor")
    if engine is not None:
        _unused_engine(engine, why)
    return "torch"


def _unused_engine(engine, why: str) -> None:
    """An engine given but not run is still checked (size, sha256, sidecar schema: no TensorRT needed), so that
    a damaged engine is an error whatever the backend, and its being unused is said."""
    from runtime.backends.tensorrt.sidecar import check_engine_file

    check_engine_file(engine)
    log.warning("engine %s is not used (%s); running the PyTorch executor on the weights", engine, why)


def _onnxruntime_is_faster(request: BackendRequest) -> bool:
    """On a CPU, ONNX Runtime runs the float32 network in about half the executor's time (docs/benchmarks.md):
    ``auto`` takes it for weights files when it is installed."""
    import torch

    on_cpu = (request.device or "auto").lower() == "cpu" or (
        (request.device or "auto").lower() == "auto" and not torch.cuda.is_available())
    is_file = isinstance(request.weights, (str, os.PathLike)) and request.engine is None and not request.postprocess
    return (on_cpu and is_file and request.precision == "fp32"
            and importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None)


def _torch_backend(request: BackendRequest):
    from runtime.backends.executor import ExecutorBackend

    if request.weights is None:
        raise RetinaFaceError("the torch backend needs --weights (a .pth or .wts file), not an engine")
    if request.engine is not None:
        _unused_engine(request.engine, "--backend torch runs the weights")
    return ExecutorBackend(request.weights, device=request.device, precision=request.precision,
                           postprocess=request.postprocess, input_size=request.input_size, int8=request.int8)


def _tensorrt_backend(request: BackendRequest):
    """An engine as given; or one built from the weights into the engine cache (also when the given
    engine was built with another TensorRT version or GPU and the weights are at hand). An engine that
    fails its file checks (size, sha256, sidecar schema) is an error, never silently replaced."""
    if not tensorrt_available():
        raise RetinaFaceError(f"TensorRT is not installed: {install_hint('tensorrt')} "
                              "(or use --backend torch, which needs no TensorRT)")
    from runtime.backends.tensorrt.engine import TensorRTBackend
    from runtime.backends.tensorrt.sidecar import EngineMismatchError

    if request.engine is None and request.weights is None:
        raise RetinaFaceError("the tensorrt backend needs --engine (a serialized engine) or --weights to build one")
    if request.engine is not None:
        try:
            return TensorRTBackend(request.engine, device=request.device)
        except EngineMismatchError as error:
            if request.weights is None:
                raise
            log.warning("%s; rebuilding it from %s", error, request.weights)
    return TensorRTBackend(_cached_engine(request), device=request.device)


def _cached_engine(request: BackendRequest):
    from runtime.backends.tensorrt.cache import default_engine_cache, ensure_engine
    from runtime.backends.tensorrt.engine import TorchCuda

    if not isinstance(request.weights, (str, bytes)) and not hasattr(request.weights, "__fspath__"):
        raise RetinaFaceError("building a TensorRT engine needs a weights file path (.pth or .wts)")
    device = TorchCuda().resolve(request.device)     # --device cpu is refused here, before minutes of building
    return ensure_engine(request.weights, request.engine_cache or default_engine_cache(), request.precision,
                         request.input_size, device_index=device.index, postprocess=request.postprocess,
                         int8=request.int8)


def _onnxruntime_backend(request: BackendRequest):
    from runtime.backends.onnxruntime import OnnxRuntimeBackend

    model = request.engine if request.engine is not None else request.weights
    if request.engine is None and isinstance(model, (str, os.PathLike)) and not os.path.isfile(model):
        raise RetinaFaceError(f"weights file {model} not found; expected a .pth or .wts file")
    if model is None or not isinstance(model, (str, os.PathLike)):
        raise RetinaFaceError("the onnxruntime backend needs a model file: --engine MODEL.onnx "
                              "(or --weights .onnx/.pth/.wts)")
    if request.precision != "fp32":
        raise RetinaFaceError("the onnxruntime backend runs the float32 export; use --precision fp32")
    return OnnxRuntimeBackend(model, device=request.device, threads=request.threads or 0)


_BUILDERS = {"torch": _torch_backend, "tensorrt": _tensorrt_backend, "onnxruntime": _onnxruntime_backend}
