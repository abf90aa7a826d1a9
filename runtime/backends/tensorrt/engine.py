"""One TensorRT engine at run time: :class:`TensorRTBackend`, the ``tensorrt`` backend of :mod:`runtime.backends`.

Lifecycle (Polygraphy's runner pattern: build elsewhere, then construct → infer … → close):

1. ``TensorRTBackend(engine_path, device="cuda:N")`` reads the sidecar and checks it against its schema,
   the engine file's size and sha256, and the running TensorRT version and GPU (portable engines accepted
   where their build allows) — all before TensorRT sees a byte. Then, with device N current, it
   deserializes the plan (``engine_host_code_allowed`` set for version-compatible engines), creates the
   execution context (``None`` means out of memory: an error) and allocates every output buffer once,
   at the optimization profile's maximum shape.
2. ``infer(batch)`` any number of times: enqueued on the caller's current stream, no allocation, no sync.
3. ``close()`` releases context, engine, runtime and buffers (safe twice; also on ``with`` exit and at
   interpreter exit, before PyTorch's CUDA state goes away).

Calls into TensorRT are the small module-level functions below. They take TensorRT objects and plain
values (device pointers as ints, stream handles as ints), never PyTorch ones, so
``tests/conformance/probe.py`` runs exactly them against the real bindings of every supported version.
Memory, streams and device selection are PyTorch's, through :class:`TorchCuda` (no pycuda, so no
``pycuda.autoinit`` context clash and no crash at exit).
"""

from __future__ import annotations

import math
import weakref
from pathlib import Path
from typing import Mapping

from network import DETECTION_NAMES, INPUT_NAME, OUTPUT_NAMES
from retinaface_trt.thresholds import Thresholds
from retinaface_trt.errors import RetinaFaceError
from runtime.backends.base import Backend
from runtime.backends.tensorrt import compat as trt_compat
from runtime.backends.tensorrt import sidecar

ALIGNMENT = 256       # bytes; "must have at least 256-byte alignment" (IExecutionContext::setTensorAddress)
WITHOUT_TENSORRT = "or use `--backend torch`, which runs the network with PyTorch"


# Calls into TensorRT --------------------------------------------------------------------------------------
def deserialize(trt, plan: bytes, host_code_allowed: bool):
    """(runtime, engine) from ``plan``; ``host_code_allowed`` lets a version-compatible plan run the lean
    runtime it carries. RetinaFaceError if TensorRT cannot load it."""
    runtime = trt.Runtime(trt_compat.tensorrt_logger(trt))
    runtime.engine_host_code_allowed = bool(host_code_allowed)
    try:
        engine = runtime.deserialize_cuda_engine(plan)
    except (RuntimeError, TypeError, ValueError) as error:   # some versions raise instead of returning None
        engine, reason = None, str(error)
    else:
        reason = "TensorRT's log above says why"
    if engine is None:
        raise RetinaFaceError(f"TensorRT {trt.__version__} could not load the engine ({reason}); the file "
                              "was built by another TensorRT version or GPU, or is damaged: rebuild it")
    return runtime, engine


def create_context(engine):
    """A new execution context of ``engine``; RetinaFaceError when TensorRT returns None (out of memory)."""
    context = engine.create_execution_context()
    if context is None:
        raise RetinaFaceError("TensorRT could not create an execution context (usually out of GPU memory; "
                              "its log above says why); free GPU memory or use an engine with a smaller "
                              "--max-batch / --max-size")
    return context


def io_tensors(trt, engine) -> tuple[list[str], list[str]]:
    """(input names, output names) of ``engine``, in engine order (classified by mode, never by index)."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    modes = {name: engine.get_tensor_mode(name) for name in names}
    return ([n for n in names if modes[n] == trt.TensorIOMode.INPUT],
            [n for n in names if modes[n] == trt.TensorIOMode.OUTPUT])


def tensor_types(engine, names) -> dict[str, str]:
    """name → TensorRT DataType name ("FLOAT", "INT32", ...)."""
    return {name: engine.get_tensor_dtype(name).name for name in names}


def profile_shapes(engine, name: str) -> list[tuple[int, ...]]:
    """[min, opt, max] shapes of input ``name`` in optimization profile 0."""
    return [tuple(int(d) for d in dims) for dims in engine.get_tensor_profile_shape(name, 0)]


def set_input_shape(context, engine, name: str, shape: tuple[int, ...]) -> None:
    """Set the shape of input ``name``; RetinaFaceError (with the profile) if the engine refuses it."""
    if not context.set_input_shape(name, tuple(shape)):
        lo, _, hi = profile_shapes(engine, name)
        raise RetinaFaceError(f"input shape {tuple(shape)} is outside the engine's profile {lo}..{hi} "
                              "(NCHW); rebuild with a larger --max-batch / --max-size, or resize the input")


def output_shapes(context, names) -> dict[str, tuple[int, ...]]:
    """Each output's shape for the input shapes set on ``context``."""
    return {name: tuple(int(d) for d in context.get_tensor_shape(name)) for name in names}


def enqueue(context, addresses: Mapping[str, int], stream_handle: int) -> None:
    """Enqueue one run on ``stream_handle`` with the given device pointers (every input and output)."""
    for name, address in addresses.items():
        if not context.set_tensor_address(name, int(address)):
            raise RetinaFaceError(f"TensorRT refused the device address of tensor {name!r}")
    if not context.execute_async_v3(int(stream_handle)):
        raise RetinaFaceError("TensorRT failed to enqueue the inference (its log above says why; during CUDA "
                              "graph capture this means the engine cannot be captured)")


def engine_information(trt, engine, context) -> str:
    """TensorRT's description of every layer as JSON text (engine inspector); with ``context`` given,
    formats and precisions are those of its input shapes. Parameters and tactics appear only for engines
    built with ``ProfilingVerbosity.DETAILED`` (every engine built by this project)."""
    inspector = engine.create_engine_inspector()
    inspector.execution_context = context
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)


def layer_profiler(trt):
    """A ``trt.IProfiler`` whose ``times`` accumulate milliseconds per layer name over reported runs."""

    class LayerTimes(trt.IProfiler):
        def __init__(self):
            trt.IProfiler.__init__(self)
            self.times: dict[str, float] = {}

        def report_layer_time(self, layer_name, ms):
            self.times[layer_name] = self.times.get(layer_name, 0.0) + float(ms)

    return LayerTimes()


def attach_profiler(context, profiler) -> None:
    """Report layer times to ``profiler`` when asked (:func:`report_profile`), not from inside enqueue."""
    context.profiler = profiler
    context.enqueue_emits_profile = False


def report_profile(context) -> None:
    """Hand the last run's layer times to the attached profiler (after the stream has finished it)."""
    if not context.report_to_profiler():
        raise RetinaFaceError("TensorRT did not report layer times (no profiler attached, or in CUDA graph capture)")


# CUDA through PyTorch ----------------------------------------------------------------------------------
class TorchCuda:
    """What the backend needs from CUDA, through PyTorch: devices, the current stream, memory.

    A separate object so that tests can run the backend's logic with a stand-in on a machine without GPU.
    """

    def resolve(self, device):
        """``cuda`` / ``cuda:N`` / ``N`` → ``torch.device("cuda", N)``; RetinaFaceError for anything else."""
        import torch

        from runtime.device import resolve_device

        text = "cuda" if device in (None, "auto") else str(device)
        if text != "cpu":
            sidecar.require_cuda()                    # before resolve_device, whose hint is "--device cpu"
        resolved = resolve_device(f"cuda:{text}" if text.isdigit() else text)
        if resolved.type != "cuda":
            raise RetinaFaceError(f"the tensorrt backend runs on an NVIDIA GPU, not on {resolved}; use --device "
                                  "cuda[:N] (or --backend torch for the CPU)")
        index = resolved.index if resolved.index is not None else 0
        self.device_info(index)                       # the device must exist
        return torch.device("cuda", index)

    def device_info(self, index: int) -> sidecar.DeviceInfo:
        return sidecar.current_device(index)

    def scope(self, device):
        return sidecar.device_scope(device.index)

    def stream_handle(self, device) -> int:
        import torch

        return torch.cuda.current_stream(device).cuda_stream

    def empty(self, count: int, dtype, device):
        import torch

        return torch.empty(count, dtype=dtype, device=device)

    def is_on(self, tensor, device) -> bool:
        return tensor.device == device

    def synchronize(self, device) -> None:
        import torch

        torch.cuda.current_stream(device).synchronize()

    def release(self, device) -> None:
        import torch

        torch.cuda.empty_cache()


class _Handles:
    """The TensorRT objects and buffers of one backend, released together (context before engine before
    runtime: each needs the next one alive)."""

    def __init__(self):
        self.runtime = self.engine = self.context = None
        self.buffers: dict = {}
        self.staging = None

    def release(self, cuda, device) -> None:
        try:
            with cuda.scope(device):
                self._drop()
        except Exception:         # noqa: BLE001 - at interpreter exit the CUDA scope may be gone already
            self._drop()

    def _drop(self) -> None:
        self.context = self.engine = self.runtime = self.staging = None
        self.buffers = {}


_TORCH_TYPES = {"FLOAT": "float32", "INT32": "int32", "HALF": "float16", "INT64": "int64"}


class TensorRTBackend(Backend):
    """Runs one serialized RetinaFace engine on one CUDA device (see the module docstring for the lifecycle).

    Attributes: ``name`` ("tensorrt"), ``cfg`` (:class:`network.config.RetinaFaceConfig`), ``device``
    (``torch.device("cuda", N)``), ``precision`` ("fp32"/"fp16"), ``fixed_input_size`` ((W, H), or None for
    a dynamic size), ``max_batch`` (the profile's maximum), ``postprocess_in_network`` (decoding and NMS
    inside: ``infer`` returns detections), ``capturable`` (``infer`` may be captured in a CUDA graph),
    ``info`` (the sidecar).

    ``infer(batch)``: ``batch`` float32 [N, 3, H, W] on ``device`` (BGR minus the mean) → ``(loc [N, P, 4],
    conf [N, P, 2], landms [N, P, 10])`` float32, or for an engine built ``--with-postprocess`` ``(dets
    [N, D, 15] float32, count [N] int32)`` (:mod:`network.postprocess`). It runs on
    ``torch.cuda.current_stream(device)`` with device N current around every TensorRT call, allocates
    nothing once shapes are known and never synchronises: the outputs are views of buffers allocated once,
    valid until the next call, which overwrites them. ``set_input_shape`` is called only when the shape
    changes. An input that is not contiguous or not 256-byte aligned is copied into a buffer of the
    backend first (allocated on the first such input).

    CUDA graphs: TensorRT's own benchmark (trtexec, ``samples/common/sampleInference.cpp`` in
    NVIDIA/TensorRT) captures ``execute_async_v3`` in a CUDA graph after running it once with the input
    shapes set ("Avoid capturing initialization calls by executing the enqueue function at least once
    before starting CUDA graph capture"), and notes that an engine may contain operations not permitted
    under capture, in which case enqueue returns false (here: RetinaFaceError). So call ``infer`` once with
    a shape, then capture it with the same shape and input address. ``capturable`` is False for engines
    with post-processing inside: their NMS has a data-dependent shape, which is the documented case where
    capture may fail (not verified on a GPU).
    """

    name = "tensorrt"
    profiles_layers = True
    resize_hint = "rebuild with --min-size/--max-size"

    def __init__(self, engine_path: str | Path, device="cuda", trt=None, cuda: TorchCuda | None = None):
        self.info, plan = sidecar.check_engine_file(engine_path)    # first: a damaged file is named as such
        trt = trt or trt_compat.import_tensorrt(WITHOUT_TENSORRT)
        self._cuda = cuda or TorchCuda()
        self.device = self._cuda.resolve(device)
        sidecar.check_compatible(self.info, engine_path, str(trt.__version__), self._cuda.device_info(self.device.index))
        self._trt = trt
        self._describe()
        self._handles = _Handles()
        self._finalizer = weakref.finalize(self, self._handles.release, self._cuda, self.device)
        try:
            with self._cuda.scope(self.device):
                self._open(plan)
        except BaseException:
            self.close()
            raise

    def _describe(self) -> None:
        from network.config import get_config

        info = self.info
        self.cfg = get_config(info["backbone"])
        self.precision = info["precision"]
        h, w = info["input_shape"][2:]
        self.fixed_input_size = (w, h) if w > 0 and h > 0 else None
        self.postprocess_in_network = "postprocess" in info
        self.postprocess_settings = Thresholds(**info["postprocess"]) if self.postprocess_in_network else None
        self.capturable = not self.postprocess_in_network

    def _open(self, plan: bytes) -> None:
        h, trt = self._handles, self._trt
        h.runtime, h.engine = deserialize(trt, plan, self.info.get("version_compatible", False))
        h.context = create_context(h.engine)
        self._input, self._outputs = self._checked_names(*io_tensors(trt, h.engine))
        self._profile = profile_shapes(h.engine, self._input)
        self.max_batch = self._profile[2][0]
        self._shape, self._views = None, ()
        self._allocate()

    def _checked_names(self, inputs: list[str], outputs: list[str]) -> tuple[str, list[str]]:
        expected = DETECTION_NAMES if self.postprocess_in_network else OUTPUT_NAMES
        if inputs != [INPUT_NAME] or sorted(outputs) != sorted(expected):
            raise RetinaFaceError(f"the engine has inputs {inputs} and outputs {outputs}, but its sidecar "
                                  f"promises [{INPUT_NAME!r}] and {list(expected)}: it was not built by "
                                  "`retinaface-trt build` (or its sidecar belongs to another engine); rebuild it")
        return inputs[0], list(expected)

    def _allocate(self) -> None:
        """One buffer per output, of the output's size at the profile's maximum input shape."""
        import torch

        types = tensor_types(self._handles.engine, self._outputs)
        if any(types[n] not in _TORCH_TYPES for n in self._outputs):
            raise RetinaFaceError(f"unexpected output types {types} in the engine; rebuild it")
        shapes = self._set_shape(self._profile[2], allocate=True)
        self._handles.buffers = {n: self._cuda.empty(math.prod(shapes[n]), getattr(torch, _TORCH_TYPES[types[n]]),
                                                     self.device) for n in self._outputs}
        self._shape = None          # views are made by the first infer

    def _set_shape(self, shape: tuple[int, ...], allocate: bool = False) -> dict:
        h = self._handles
        set_input_shape(h.context, h.engine, self._input, shape)
        shapes = output_shapes(h.context, self._outputs)
        if any(d < 0 for s in shapes.values() for d in s):
            raise RetinaFaceError(f"the engine's output shapes {shapes} depend on the data; this backend needs "
                                  "fixed output shapes (rebuild the engine with `retinaface-trt build`)")
        if not allocate:
            self._views = tuple(h.buffers[n][:math.prod(shapes[n])].view(shapes[n]) for n in self._outputs)
            self._shape = tuple(shape)
        return shapes

    # Running ------------------------------------------------------------------------------------------
    def infer_impl(self, batch):
        """Run ``batch``; see the class docstring for the contract. Returns views valid until the next call."""
        self._check(batch)
        with self._cuda.scope(self.device):
            if tuple(batch.shape) != self._shape:
                self._set_shape(tuple(batch.shape))
            enqueue(self._handles.context, self._addresses(batch), self._cuda.stream_handle(self.device))
        return self._views

    def _addresses(self, batch) -> dict[str, int]:
        buffers = self._handles.buffers
        return {self._input: self._input_address(batch), **{n: buffers[n].data_ptr() for n in self._outputs}}

    def _input_address(self, batch) -> int:
        """``batch``'s device pointer, or that of an aligned contiguous copy (enqueued on the current stream)."""
        if batch.is_contiguous() and batch.data_ptr() % ALIGNMENT == 0:
            return batch.data_ptr()
        h = self._handles
        if h.staging is None:
            h.staging = self._cuda.empty(math.prod(self._profile[2]), batch.dtype, self.device)
        staged = h.staging[:batch.numel()].view(batch.shape)
        staged.copy_(batch)
        return staged.data_ptr()

    def _check(self, batch) -> None:
        import torch

        if not (isinstance(batch, torch.Tensor) and batch.dim() == 4 and batch.shape[1] == 3
                and batch.dtype == torch.float32 and self._cuda.is_on(batch, self.device)):
            found = (f"{tuple(batch.shape)} {batch.dtype} on {batch.device}" if isinstance(batch, torch.Tensor)
                     else type(batch).__name__)
            raise RetinaFaceError(f"the TensorRT backend expects a float32 tensor [N, 3, H, W] on {self.device}, "
                                  f"found {found}")

    # Diagnostics --------------------------------------------------------------------------------------
    def layer_times(self, batch, repeats: int = 10) -> dict[str, float]:
        """Mean milliseconds per engine layer over ``repeats`` runs of ``batch`` (TensorRT's ``IProfiler``).

        Runs on a second execution context (so the main one stays as ``infer`` left it, CUDA-graph-safe),
        synchronising after each run; the outputs of the last ``infer`` are overwritten.
        """
        self.check_batch(batch)
        self._check(batch)
        if repeats < 1:
            raise RetinaFaceError(f"repeats must be ≥ 1, found {repeats}")
        h, profiler = self._handles, layer_profiler(self._trt)
        with self._cuda.scope(self.device):
            context = create_context(h.engine)
            attach_profiler(context, profiler)
            set_input_shape(context, h.engine, self._input, tuple(batch.shape))
            for _ in range(repeats):
                enqueue(context, self._addresses(batch), self._cuda.stream_handle(self.device))
                self._cuda.synchronize(self.device)
                report_profile(context)
            del context
        return {layer: total / repeats for layer, total in profiler.times.items()}

    def layer_information(self) -> str:
        """TensorRT's per-layer description of the engine (JSON text) at the profile's optimal shape."""
        self.check_batch(None)
        with self._cuda.scope(self.device):
            self._set_shape(self._profile[1])
            return engine_information(self._trt, self._handles.engine, self._handles.context)

    # Lifecycle ----------------------------------------------------------------------------------------
    def close_impl(self) -> None:
        """Release the execution context, engine, runtime and buffers."""
        self._finalizer()
        self._views, self._shape = (), None
        self._cuda.release(self.device)

