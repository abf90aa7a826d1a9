"""Backends: what runs the network. Everything before and after it is shared (:mod:`runtime.detector`).

Every backend is a :class:`runtime.backends.base.Backend` (the contract: its attributes with their defaults,
``infer`` and ``close``). This module is the one registry of them: :func:`register` lists a backend's name,
how to build it from a :class:`BackendRequest`, the packages it needs and whether ``auto`` may pick it on a
CPU; :func:`create_backend` builds one by name. A name not registered fails with the list of known ones.

Registered: ``tensorrt`` (a serialized engine, or one built from weights, on an NVIDIA GPU), ``executor``
(the project's executor of the hand-built network, on CPU or CUDA; ``torch`` is its old name, kept as an
alias), ``onnxruntime`` (:mod:`runtime.backends.onnxruntime`) and ``openvino``
(:mod:`runtime.backends.openvino`), both on an ``.onnx`` file or weights exported on the fly.

``auto``: TensorRT when it is importable, a GPU is present and an engine file is given; the ONNX Runtime
for an ``.onnx`` file; for a weights file in float32 on a CPU, the first installed of the CPU backends in
:data:`CPU_PREFERENCE` (measured fastest first, docs/benchmarks.md; each computes float32 like the executor,
to rounding); otherwise the executor.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass, replace
from typing import Callable

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.extras import install_hint

log = logging.getLogger("retinaface_trt")

from network.config import FLOAT_PRECISIONS, PRECISIONS, check_precision  # noqa: F401 - listed once, there
ALIASES = {"torch": "executor"}                   # old name → registered name


@dataclass(frozen=True)
class Registration:
    """One registered backend: ``build(request)`` makes it; ``needs`` are the packages it imports (``auto``
    skips it when one is missing)."""

    name: str
    build: Callable
    needs: tuple[str, ...] = ()

    def installed(self) -> bool:
        return all(importlib.util.find_spec(package) is not None for package in self.needs)


_REGISTRY: dict[str, Registration] = {}


def register(name: str, build: Callable, needs: tuple[str, ...] = ()) -> None:
    """Add a backend to the registry (see :class:`Registration`). ``build`` may be a module path: its
    ``from_request(request)`` is called, the module imported only then (optional packages stay optional)."""
    if isinstance(build, str):
        module = build
        build = lambda request: importlib.import_module(module).from_request(request)   # noqa: E731
    _REGISTRY[name] = Registration(name, build, tuple(needs))


def backend_names() -> tuple[str, ...]:
    """What ``--backend`` accepts: ``auto``, every registered backend, then the aliases."""
    return ("auto",) + tuple(_REGISTRY) + tuple(ALIASES)


def canonical_name(name: str) -> str:
    """The registered name of ``name`` (an alias resolved); RetinaFaceError listing the known ones."""
    name = ALIASES.get(name, name)
    if name != "auto" and name not in _REGISTRY:
        raise RetinaFaceError(f"unknown backend {name!r}; expected one of: {', '.join(backend_names())}")
    return name


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
    postprocess:  a :class:`retinaface_trt.thresholds.Thresholds` to build the network with decoding and NMS
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
                   threads: int | None = None, int8=None):
    """Build the backend called ``name`` from a weights file (.pth/.wts, or a state_dict) or an engine file."""
    name = canonical_name(name)
    check_precision(precision)
    from runtime.calibration import check_int8_request

    check_int8_request(precision, int8)
    request = BackendRequest(weights, engine, device, precision, tuple(input_size), engine_cache, postprocess,
                             threads, int8)
    if threads:
        import torch

        torch.set_num_threads(threads)       # process-wide: the executor and the pipeline's torch work
    if name == "auto":
        name = _pick_auto(weights, engine)
        if name == "executor":       # an engine given was checked and reported unused by _pick_auto
            name = _fastest_on_cpu(request) or name
            request = replace(request, engine=None)
    backend = _REGISTRY[name].build(request)
    _warn_fp16_on_cpu(backend, precision)
    log.info("backend: %s on %s (%s, %s)", backend.name, backend.device, backend.cfg.name,
             backend.precision)
    return backend


def _warn_fp16_on_cpu(backend, precision: str) -> None:
    """PyTorch's CPU kernels have no fast float16 convolutions: the network then takes seconds per photo where
    fp32 takes a fraction of one (a user measured 14 s against 0.2 s), which the user should hear about once."""
    if precision == "fp16" and backend.device.type == "cpu":
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
    return "executor"


def _unused_engine(engine, why: str) -> None:
    """An engine given but not run is still checked (size, sha256, sidecar schema: no TensorRT needed), so that
    a damaged engine is an error whatever the backend, and its being unused is said."""
    from runtime.backends.tensorrt.sidecar import check_engine_file

    check_engine_file(engine)
    log.warning("engine %s is not used (%s); running the PyTorch executor on the weights", engine, why)


def _fastest_on_cpu(request: BackendRequest) -> str | None:
    """The first installed backend of :data:`CPU_PREFERENCE` for float32 weights files on a CPU, else None
    (the executor). The order is measured (docs/benchmarks.md: 640×640 ``detect`` on a 2-core CPU)."""
    import torch

    device = (request.device or "auto").lower()
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    is_file = isinstance(request.weights, (str, os.PathLike)) and request.engine is None and not request.postprocess
    if not (on_cpu and is_file and request.precision == "fp32"):
        return None
    return next((name for name in CPU_PREFERENCE if name in _REGISTRY and _REGISTRY[name].installed()), None)


def _executor_backend(request: BackendRequest):
    from runtime.backends.executor import ExecutorBackend

    if request.weights is None:
        raise RetinaFaceError("the executor backend needs --weights (a .pth or .wts file), not an engine")
    if request.engine is not None:
        _unused_engine(request.engine, "--backend executor runs the weights")
    return ExecutorBackend(request.weights, device=request.device, precision=request.precision,
                           postprocess=request.postprocess, input_size=request.input_size, int8=request.int8)


def _tensorrt_backend(request: BackendRequest):
    """An engine as given; or one built from the weights into the engine cache (also when the given
    engine was built with another TensorRT version or GPU and the weights are at hand). An engine that
    fails its file checks (size, sha256, sidecar schema) is an error, never silently replaced."""
    if not tensorrt_available():
        raise RetinaFaceError(f"TensorRT is not installed: {install_hint('tensorrt')} "
                              "(or use --backend executor, which needs no TensorRT)")
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


def onnx_model_of(request: BackendRequest, backend: str):
    """The model file of a backend that runs the ONNX export (``--engine`` .onnx, or ``--weights``
    .onnx/.pth/.wts), checked; float32 only. One RetinaFaceError line saying what is missing."""
    model = request.engine if request.engine is not None else request.weights
    if request.engine is None and isinstance(model, (str, os.PathLike)):
        from wts_export.weights import check_weights_file

        check_weights_file(model)
    if model is None or not isinstance(model, (str, os.PathLike)):
        raise RetinaFaceError(f"the {backend} backend needs a model file: --engine MODEL.onnx "
                              "(or --weights .onnx/.pth/.wts)")
    if request.precision != "fp32":
        raise RetinaFaceError(f"the {backend} backend runs the float32 export; use --precision fp32")
    return model


def _onnxruntime_backend(request: BackendRequest):
    from runtime.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(onnx_model_of(request, "onnxruntime"), device=request.device,
                              threads=request.threads or 0)


register("tensorrt", _tensorrt_backend, needs=("tensorrt",))
register("executor", _executor_backend)
register("onnxruntime", _onnxruntime_backend, needs=("onnxruntime", "onnx"))
register("openvino", "runtime.backends.openvino", needs=("openvino", "onnx"))

# ``auto``'s choice for float32 weights on a CPU: the first installed, fastest first (measured on 640×640
# ``detect``, docs/benchmarks.md). Each computes the float32 network to rounding (tests compare them).
CPU_PREFERENCE = ("onnxruntime", "openvino")
BACKENDS = backend_names()
