"""One TensorRT engine at run time: :class:`TensorRTBackend`, the ``tensorrt`` backend of :mod:`runtime.backends`.

Lifecycle (Polygraphy's runner pattern: build elsewhere, then construct → infer … → close):

1. ``TensorRTBackend(engine_path, device="cuda:N")`` reads the sidecar and checks it against its schema,
   the engine file's size and sha256, and the running TensorRT version and GPU (portable engines accepted
   where their build allows) — all before TensorRT sees a byte. Then, with device N current, it
   deserializes the plan (``engine_host_code_allowed`` set for version-compatible engines), creates its own
   CUDA stream, one activation buffer and the first execution context (``None`` means out of memory: an
   error) and allocates every output buffer once, at the optimization profile's maximum shape.
2. ``infer(batch)`` any number of times: enqueued on the backend's stream, ordered after the caller's current
   stream and before what the caller enqueues next; no allocation once shapes are known, no host sync.
3. ``close()`` releases context, engine, runtime and buffers (safe twice; also on ``with`` exit and at
   interpreter exit, before PyTorch's CUDA state goes away).

Calls into TensorRT are the small module-level functions below. They take TensorRT objects and plain
values (device pointers as ints, stream handles as ints), never PyTorch ones, so
``tests/conformance/probe.py`` runs exactly them against the real bindings of every supported version.
Memory, streams and device selection are PyTorch's, through :class:`TorchCuda` (no pycuda, so no
``pycuda.autoinit`` context clash and no crash at exit).
"""

from __future__ import annotations

import collections
import math
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from network import DETECTION_NAMES, INPUT_NAME, OUTPUT_NAMES
from retinaface_trt.thresholds import Thresholds
from retinaface_trt.errors import RetinaFaceError
from runtime.backends.base import Backend
from runtime.backends.tensorrt import compat as trt_compat
from runtime.backends.tensorrt import sidecar

ALIGNMENT = 256       # bytes; "must have at least 256-byte alignment" (IExecutionContext::setTensorAddress)
CONTEXTS = 16         # execution contexts of shapes of their own per backend (captured ones are never evicted)
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


def create_context(trt, engine):
    """A new execution context of ``engine`` without activation memory of its own (give it some with
    :func:`set_activation_memory` before its first enqueue): several contexts that never run at the same time
    then share one buffer. 10.x/11.x: ``ExecutionContextAllocationStrategy.USER_MANAGED``; 8.6:
    ``create_execution_context_without_device_memory``. RetinaFaceError when TensorRT returns None."""
    if hasattr(trt, "ExecutionContextAllocationStrategy"):                      # 10.0+
        context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
    elif hasattr(trt.ICudaEngine, "create_execution_context_without_device_memory"):   # 8.6
        context = engine.create_execution_context_without_device_memory()
    else:
        raise RetinaFaceError(f"TensorRT {trt.__version__} can create no execution context without device memory")
    if context is None:
        raise RetinaFaceError("TensorRT could not create an execution context (usually out of GPU memory; "
                              "its log above says why); free GPU memory or use an engine with a smaller "
                              "--max-batch / --max-size")
    return context


def activation_size(trt, engine) -> int:
    """Bytes of activation memory one execution context of ``engine`` needs at most (any shape of its profiles)."""
    if hasattr(trt.ICudaEngine, "device_memory_size_v2"):       # 10.1+ (the 32-bit size is deprecated there)
        return int(engine.device_memory_size_v2)
    if hasattr(trt.ICudaEngine, "device_memory_size"):          # 8.6, 10.0
        return int(engine.device_memory_size)
    raise RetinaFaceError(f"TensorRT {trt.__version__} does not say how much device memory an engine needs")


def set_activation_memory(trt, context, address: int, size: int) -> None:
    """Give ``context`` (from :func:`create_context`) ``size`` bytes of activation memory at ``address``
    (256-byte aligned, at least :func:`activation_size`); it must stay allocated while the context is used."""
    if hasattr(trt.IExecutionContext, "set_device_memory"):     # 10.1+: setDeviceMemoryV2(memory, size)
        context.set_device_memory(int(address), int(size))
    elif hasattr(trt.IExecutionContext, "device_memory"):       # 8.6, 10.0: setDeviceMemory(memory)
        context.device_memory = int(address)
    else:
        raise RetinaFaceError(f"TensorRT {trt.__version__} cannot give an execution context device memory")


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

    def new_stream(self, device):
        """A new stream of ``device`` (PyTorch's streams are non-blocking: no implicit sync with stream 0)."""
        import torch

        return torch.cuda.Stream(device=device)

    def stream_handle(self, stream) -> int:
        return stream.cuda_stream

    def join(self, stream, device) -> None:
        """Work enqueued on ``stream`` from now on waits for what the caller's current stream has enqueued
        (an event recorded there); under CUDA graph capture this forks ``stream`` into the capture."""
        import torch

        stream.wait_stream(torch.cuda.current_stream(device))

    def rejoin(self, stream, device) -> None:
        """The caller's current stream waits for what ``stream`` has enqueued (joins it back into a capture)."""
        import torch

        torch.cuda.current_stream(device).wait_stream(stream)

    def keep_alive(self, tensor, stream) -> None:
        """The caching allocator reuses ``tensor``'s memory only once ``stream``'s work so far is done (during
        capture the graph's private pool keeps it instead)."""
        import torch

        if not torch.cuda.is_current_stream_capturing():
            tensor.record_stream(stream)

    def capturing(self, device) -> bool:
        import torch

        return torch.cuda.is_current_stream_capturing()

    def empty(self, count: int, dtype, device):
        import torch

        return torch.empty(count, dtype=dtype, device=device)

    def is_on(self, tensor, device) -> bool:
        return tensor.device == device

    def synchronize(self, stream) -> None:
        stream.synchronize()

    def release(self, device) -> None:
        import torch

        torch.cuda.empty_cache()


class _Handles:
    """The TensorRT objects and buffers of one backend, released together (context before engine before
    runtime: each needs the next one alive)."""

    def __init__(self):
        self.runtime = self.engine = self.context = None
        self.contexts: collections.OrderedDict = collections.OrderedDict()    # shape → _Slot, see TensorRTBackend
        self.buffers: dict = {}
        self.staging = self.activations = self.stream = None

    def release(self, cuda, device) -> None:
        try:
            with cuda.scope(device):
                if self.stream is not None:
                    cuda.synchronize(self.stream)     # nothing may still run on what is released below
                self._drop()
        except Exception:         # noqa: BLE001 - at interpreter exit the CUDA scope may be gone already
            self._drop()

    def _drop(self) -> None:
        self.context = None
        self.contexts = collections.OrderedDict()
        self.engine = self.runtime = self.staging = self.activations = self.stream = None
        self.buffers = {}


@dataclass
class _Slot:
    """An execution context and the output views of the input shape set on it (None: none yet)."""

    context: object
    shape: tuple | None = None
    views: tuple = ()
    captured: bool = False          # a CUDA graph holds an enqueue of it: its shape never changes again


class CaptureRefused(RetinaFaceError, RuntimeError):
    """``infer`` under CUDA graph capture for a shape without an execution context of its own (a RuntimeError
    too, so that :class:`runtime.device.GraphCache` runs that shape without a graph, as for any failed capture)."""


_TORCH_TYPES = {"FLOAT": "float32", "INT32": "int32", "HALF": "float16", "INT64": "int64"}


def _uint8():
    import torch

    return torch.uint8


class TensorRTBackend(Backend):
    """Runs one serialized RetinaFace engine on one CUDA device (see the module docstring for the lifecycle).

    Attributes: ``name`` ("tensorrt"), ``cfg`` (:class:`network.config.RetinaFaceConfig`), ``device``
    (``torch.device("cuda", N)``), ``precision`` ("fp32"/"fp16"), ``fixed_input_size`` ((W, H), or None for
    a dynamic size), ``max_batch`` (the profile's maximum), ``postprocess_in_network`` (decoding and NMS
    inside: ``infer`` returns detections), ``capturable`` (``infer`` may be captured in a CUDA graph),
    ``activation_bytes`` (the one activation buffer all its execution contexts share), ``info`` (the sidecar).

    ``infer(batch)``: ``batch`` float32 [N, 3, H, W] on ``device`` (BGR minus the mean) → ``(loc [N, P, 4],
    conf [N, P, 2], landms [N, P, 10])`` float32, or for an engine built ``--with-postprocess`` ``(dets
    [N, D, 15] float32, count [N] int32)`` (:mod:`network.postprocess`). It runs on the backend's own stream
    (never the legacy default stream, where TensorRT's ``enqueueV3`` adds device synchronisations), which
    waits on the caller's current stream before the enqueue and which the caller's stream waits on after it,
    with device N current around every TensorRT call; it allocates nothing once shapes are known and never
    synchronises the host: the outputs are views of buffers allocated once, valid until the next call, which
    overwrites them. A shape seen once runs on a shared execution context (``set_input_shape`` only when the
    shape changes); from its second call a shape has a context of its own (see :meth:`_slot`). An input that
    is not contiguous or not 256-byte aligned is copied into a buffer of the backend first (allocated on the
    first such input).

    CUDA graphs: TensorRT's own benchmark (trtexec, ``samples/common/sampleInference.cpp`` in
    NVIDIA/TensorRT) captures ``execute_async_v3`` in a CUDA graph after running it once with the input
    shapes set ("Avoid capturing initialization calls by executing the enqueue function at least once
    before starting CUDA graph capture"), and notes that an engine may contain operations not permitted
    under capture, in which case enqueue returns false (here: RetinaFaceError). A captured enqueue belongs to
    the context state it was captured with, so only a shape's own context is captured, after it ran that
    shape outside capture, and its shape never changes afterwards (:class:`CaptureRefused` otherwise). So call
    ``infer`` twice with a shape, then capture it with the same shape and input address
    (:class:`runtime.device.GraphCache` does: warm-up calls first). ``capturable`` is False for engines
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
        from runtime.device import SeenCounter

        h, trt = self._handles, self._trt
        h.runtime, h.engine = deserialize(trt, plan, self.info.get("version_compatible", False))
        h.stream = self._cuda.new_stream(self.device)
        self.activation_bytes = activation_size(trt, h.engine)
        h.activations = self._cuda.empty(max(self.activation_bytes, 1), _uint8(), self.device)
        h.context = self._new_context()
        self._eager = _Slot(h.context)
        self._seen = SeenCounter()
        self._input, self._outputs = self._checked_names(*io_tensors(trt, h.engine))
        self._profile = profile_shapes(h.engine, self._input)
        self.max_batch = self._profile[2][0]
        self._allocate()

    def _new_context(self):
        """An execution context using the backend's one activation buffer (contexts run one at a time, on
        the backend's stream or in graphs replayed in the caller's stream order)."""
        h = self._handles
        context = create_context(self._trt, h.engine)
        set_activation_memory(self._trt, context, h.activations.data_ptr(), max(self.activation_bytes, 1))
        return context

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
        shapes = self._set_shape(self._eager, self._profile[2])
        self._handles.buffers = {n: self._cuda.empty(math.prod(shapes[n]), getattr(torch, _TORCH_TYPES[types[n]]),
                                                     self.device) for n in self._outputs}
        self._eager.shape = None          # views are made by the first infer

    def _set_shape(self, slot: _Slot, shape: tuple[int, ...]) -> dict:
        """Set ``shape`` on ``slot``'s context; make its views (once buffers exist); return the output shapes."""
        h = self._handles
        set_input_shape(slot.context, h.engine, self._input, shape)
        shapes = output_shapes(slot.context, self._outputs)
        if any(d < 0 for s in shapes.values() for d in s):
            raise RetinaFaceError(f"the engine's output shapes {shapes} depend on the data; this backend needs "
                                  "fixed output shapes (rebuild the engine with `retinaface-trt build`)")
        if h.buffers:
            slot.views = tuple(h.buffers[n][:math.prod(shapes[n])].view(shapes[n]) for n in self._outputs)
        slot.shape = tuple(shape)
        return shapes

    def _slot(self, shape: tuple[int, ...]) -> _Slot:
        """The execution context for ``shape``: its own from the second call with that shape on (at most
        :data:`CONTEXTS`, the least recently used uncaptured one making room), else the shared eager one, whose
        shape changes as needed. A CUDA graph captures only a shape's own context, after it ran once outside
        capture (TensorRT's first enqueue of a shape initialises what capture cannot)."""
        contexts, capturing = self._handles.contexts, self._cuda.capturing(self.device)
        slot = contexts.get(shape)
        if slot is not None:
            contexts.move_to_end(shape)
        elif capturing:
            raise CaptureRefused(f"CUDA graph capture of input shape {shape} needs an execution context of its "
                                 f"own: run it once outside capture first (at most {CONTEXTS} shapes are captured)")
        elif self._seen(shape) >= 2 and self._make_room():
            slot = contexts[shape] = _Slot(self._new_context())
            self._set_shape(slot, shape)
        else:
            slot = self._eager
            if slot.shape != shape:
                self._set_shape(slot, shape)
        slot.captured |= capturing
        return slot

    def _make_room(self) -> bool:
        """Room for one more context of its own: True if there is, or once the least recently used uncaptured
        one is gone (after the stream has finished its work); False when every one is captured."""
        contexts = self._handles.contexts
        if len(contexts) < CONTEXTS:
            return True
        spare = next((shape for shape, slot in contexts.items() if not slot.captured), None)
        if spare is not None:
            self._cuda.synchronize(self._handles.stream)      # no enqueued work may outlive its context
            del contexts[spare]
        return spare is not None

    # Running ------------------------------------------------------------------------------------------
    def infer_impl(self, batch):
        """Run ``batch``; see the class docstring for the contract. Returns views valid until the next call."""
        self._check(batch)
        cuda, stream = self._cuda, self._handles.stream
        with cuda.scope(self.device):
            slot = self._slot(tuple(batch.shape))
            addresses = self._addresses(batch)            # a staging copy is enqueued on the caller's stream
            cuda.join(stream, self.device)
            enqueue(slot.context, addresses, cuda.stream_handle(stream))
            cuda.keep_alive(batch, stream)
            cuda.rejoin(stream, self.device)
        return slot.views

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
        h, profiler, cuda = self._handles, layer_profiler(self._trt), self._cuda
        with cuda.scope(self.device):
            context = self._new_context()
            attach_profiler(context, profiler)
            set_input_shape(context, h.engine, self._input, tuple(batch.shape))
            for _ in range(repeats):
                addresses = self._addresses(batch)
                cuda.join(h.stream, self.device)
                enqueue(context, addresses, cuda.stream_handle(h.stream))
                cuda.synchronize(h.stream)
                report_profile(context)
            del context
        return {layer: total / repeats for layer, total in profiler.times.items()}

    def layer_information(self) -> str:
        """TensorRT's per-layer description of the engine (JSON text) at the profile's optimal shape."""
        self.check_batch(None)
        with self._cuda.scope(self.device):
            self._set_shape(self._eager, self._profile[1])
            return engine_information(self._trt, self._handles.engine, self._eager.context)

    # Lifecycle ----------------------------------------------------------------------------------------
    def close_impl(self) -> None:
        """Release the execution context, engine, runtime and buffers."""
        self._finalizer()
        self._eager = None
        self._cuda.release(self.device)

