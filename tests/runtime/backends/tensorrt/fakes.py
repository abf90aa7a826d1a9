"""Small hand-written stand-ins for TensorRT and for CUDA, following TensorRT's documented behaviour
(TENSORRT_API.md §1, §3), for the tests of runtime.backends.tensorrt on a machine without either.

* :func:`fake_trt` — a ``trt`` namespace of one version line: enums, ``ILogger``, ``IProfiler``,
  ``Builder``/``Runtime`` that record what they were given and the CUDA device current at each call.
* :class:`FakeCuda` — the backend's CUDA seam (:class:`runtime.backends.tensorrt.engine.TorchCuda`) on CPU
  tensors: a current device, one stream handle per device, 256-byte aligned allocations that are counted.

The real bindings of every version are checked separately (tests/conformance).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import math
import types

import torch

from runtime.backends.tensorrt.sidecar import DeviceInfo

CREATION_FLAGS = {"8": ["EXPLICIT_BATCH", "EXPLICIT_PRECISION"], "10": ["EXPLICIT_BATCH", "STRONGLY_TYPED"],
                  "11": ["STRONGLY_TYPED", "PREFER_JIT_PYTHON_PLUGINS"]}
BUILDER_FLAGS = {"8": ["FP16", "INT8", "TF32", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "OBEY_PRECISION_CONSTRAINTS"],
                 "10": ["FP16", "INT8", "TF32", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME",
                        "OBEY_PRECISION_CONSTRAINTS"],
                 "11": ["TF32", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"]}


def _enum(name: str, members) -> type:
    return enum.IntEnum(name, {m: i for i, m in enumerate(members)})


def fake_trt(version: str, creation_flags=None, builder_flags=None, progress: bool = False, same_cc: bool = True,
             cuda: "FakeCuda | None" = None):
    """A ``trt`` namespace for ``version``; flags default to that version line's real members."""
    line = version.split(".")[0]

    class ILogger:
        Severity = _enum("Severity", ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"])

        def __init__(self):
            pass

    class IProfiler:
        def __init__(self):
            pass

    trt = types.SimpleNamespace(
        __version__=version, ILogger=ILogger, IProfiler=IProfiler,
        NetworkDefinitionCreationFlag=_enum("NetworkDefinitionCreationFlag", creation_flags or CREATION_FLAGS[line]),
        BuilderFlag=_enum("BuilderFlag", builder_flags if builder_flags is not None else BUILDER_FLAGS[line]),
        HardwareCompatibilityLevel=_enum("HardwareCompatibilityLevel",
                                         ["NONE", "AMPERE_PLUS"] + (["SAME_COMPUTE_CAPABILITY"] if same_cc else [])),
        MemoryPoolType=_enum("MemoryPoolType", ["WORKSPACE"]),
        ProfilingVerbosity=_enum("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "DETAILED", "NONE"]),
        TensorIOMode=_enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"]),
        LayerInformationFormat=_enum("LayerInformationFormat", ["ONELINE", "JSON"]),
        calls=[], cuda=cuda)
    if progress:
        trt.IProgressMonitor = type("IProgressMonitor", (), {"__init__": lambda self: None})
    # Execution contexts without their own activation memory (NvInferRuntime.h): 8.6 creates them with
    # createExecutionContextWithoutDeviceMemory and takes the memory through setDeviceMemory (the
    # ``device_memory`` property); 10.x and 11.x with ExecutionContextAllocationStrategy::kUSER_MANAGED,
    # sized by getDeviceMemorySizeV2 and given by setDeviceMemoryV2 (``set_device_memory``, 10.1+).
    if line == "8":
        trt.ICudaEngine = type("ICudaEngine", (), {"device_memory_size": 0,
                                                   "create_execution_context_without_device_memory": None})
        trt.IExecutionContext = type("IExecutionContext", (), {"device_memory": None})
    else:
        trt.ExecutionContextAllocationStrategy = _enum("ExecutionContextAllocationStrategy",
                                                       ["STATIC", "ON_PROFILE_CHANGE", "USER_MANAGED"])
        trt.ICudaEngine = type("ICudaEngine", (), {"device_memory_size_v2": 0})
        trt.IExecutionContext = type("IExecutionContext", (), {"set_device_memory": None})
    if line in ("8", "10"):       # implicit INT8 (removed in 11.0)
        trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None})
    trt.Runtime = lambda logger: FakeRuntime(trt, logger)
    return trt


TRT86 = fake_trt("8.6.1")
TRT10 = fake_trt("10.16.1.11", progress=True)
TRT11 = fake_trt("11.4.0.106", progress=True)


class RecordingConfig:
    """An IBuilderConfig that records flag changes and attribute assignments."""

    def __init__(self, accept_cache=lambda data: True):
        self.calls, self.attributes, self._accept = [], {}, accept_cache

    def set_flag(self, flag):
        self.calls.append(("set", flag.name))

    def clear_flag(self, flag):
        self.calls.append(("clear", flag.name))

    def __setattr__(self, name, value):
        if name in ("calls", "attributes", "_accept"):
            object.__setattr__(self, name, value)
        else:
            self.attributes[name] = value

    def set_memory_pool_limit(self, pool, size):
        self.calls.append(("set_memory_pool_limit", pool.name, size))

    def add_optimization_profile(self, profile):
        self.calls.append(("add_optimization_profile", profile.shapes))

    def get_timing_cache(self):
        return types.SimpleNamespace(serialize=lambda: b"timing cache")

    def create_timing_cache(self, data):
        if data == b"raise":
            raise RuntimeError("bad cache")
        return None if data == b"none" else types.SimpleNamespace(data=bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.calls.append(("set_timing_cache", cache.data, ignore_mismatch))
        return self._accept(cache.data)

    def set_calibration_profile(self, profile):
        self.calls.append(("set_calibration_profile", profile.shapes))
        return True


class WeakLayer:
    """A layer of a weakly typed network as ``INetworkDefinition.get_layer`` returns it in 8.6 / 10.x: the base
    ``ILayer`` (``type`` is the LayerType), with the precision controls; inputs by name, outputs typed
    (``outputs``: DataType names, default one FLOAT output)."""

    def __init__(self, name: str, kind: str, source, outputs=("FLOAT",), types=None):
        from network.executor.enums import DataType

        self.name, self.kind = name, kind
        self.sources = [source] if isinstance(source, str) else list(source)
        self._outputs = [types_namespace(f"{name}_output" if i == 0 else f"{name}_output_{i}", DataType[t])
                         for i, t in enumerate(outputs)]
        self._types = types if types is not None else {}
        self.precision, self.output_types = None, {}

    @property
    def type(self):
        from network.executor.enums import LayerType

        return LayerType[self.kind]

    @property
    def num_inputs(self):
        return len(self.sources)

    @property
    def num_outputs(self):
        return len(self._outputs)

    def get_input(self, index):
        from network.executor.enums import DataType

        name = self.sources[index]
        return types_namespace(name, self._types.get(name, DataType.FLOAT))

    def get_output(self, index):
        return self._outputs[index]

    def set_output_type(self, index, dtype):
        self.output_types[index] = dtype


def types_namespace(name, dtype):
    return types.SimpleNamespace(name=name, dtype=dtype)


def weak_network(layers):
    """A network of :class:`WeakLayer` from (name, LayerType name, input tensor name(s)[, output DataType names])
    tuples; an input's type is that of the layer output of that name (FLOAT for network inputs)."""
    built, known = [], {}
    for spec in layers:
        layer = WeakLayer(*spec, types=known)
        built.append(layer)
        known.update({layer.get_output(i).name: layer.get_output(i).dtype for i in range(layer.num_outputs)})
    return types.SimpleNamespace(num_layers=len(built), get_layer=built.__getitem__, layers=built)


def builder_trt(version: str, cuda: "FakeCuda", accept_cache=lambda data: True):
    """A ``trt`` whose network API is the executor's (so ``populate_network`` really runs) and whose
    ``Builder`` is :class:`FakeBuilder`: what the build code does around the network can be checked."""
    from network.executor import trt as executor

    trt = fake_trt(version, cuda=cuda)
    vars(trt).update({n: getattr(executor, n) for n in dir(executor) if not n.startswith("_") and not hasattr(trt, n)})
    trt.Builder = lambda logger: FakeBuilder(trt, logger, accept_cache)
    trt.builds = []
    return trt


class PrecisionRecording:
    """The executor's network, whose layers also take 8.6 / 10.x's weak-typing controls (``precision``,
    ``set_output_type``; the executor, like 11.x, has none): recorded per layer name in ``precisions`` and
    ``output_types``, not forwarded."""

    def __init__(self, network):
        self._network, self.precisions, self.output_types = network, {}, {}

    def __getattr__(self, name):
        return getattr(self._network, name)

    def get_layer(self, index):
        return _RecordingLayer(self, self._network.get_layer(index))


class _RecordingLayer:
    def __init__(self, owner, layer):
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_layer", layer)

    def __getattr__(self, name):
        return getattr(self._layer, name)

    def __setattr__(self, name, value):
        if name == "precision":
            self._owner.precisions[self._layer.name] = value
        else:
            setattr(self._layer, name, value)

    def set_output_type(self, index, dtype):
        self._owner.output_types.setdefault(self._layer.name, {})[index] = dtype


class FakeBuilder:
    """trt.Builder: networks of the executor, a RecordingConfig, and a plan of bytes; records the device."""

    def __init__(self, trt, logger, accept_cache):
        self.trt, self.logger, self._accept = trt, logger, accept_cache
        trt.calls.append(("Builder", trt.cuda.current, logger))

    def create_network(self, flags):
        from network.executor import trt as executor

        self.trt.calls.append(("create_network", flags))
        return PrecisionRecording(executor.Builder(executor.Logger()).create_network(0))

    def create_builder_config(self):
        return RecordingConfig(self._accept)

    def create_optimization_profile(self):
        profile = types.SimpleNamespace(shapes=None)
        profile.set_shape = lambda name, lo, opt, hi: setattr(profile, "shapes", (name, lo, opt, hi))
        return profile

    def build_serialized_network(self, network, config):
        self.trt.builds.append({"device": self.trt.cuda.current, "config": config, "network": network})
        return b"plan " * 100


def info_for(plan: bytes = b"serialized plan" * 10, **changes) -> dict:
    """A complete sidecar dictionary, as `build` writes it, with ``changes``."""
    info = {"project_version": "0.1.0", "tensorrt_version": "10.16.1.11", "gpu_name": "NVIDIA H100 80GB HBM3",
            "compute_capability": "9.0", "device_index": 0, "backbone": "mobilenet0.25", "precision": "fp16",
            "input_name": "input", "input_shape": [-1, 3, 640, 640],
            "outputs": {"loc": [-1, 16800, 4], "conf": [-1, 16800, 2], "landms": [-1, 16800, 10]},
            "profile": {"min": [1, 3, 640, 640], "opt": [1, 3, 640, 640], "max": [8, 3, 640, 640]},
            "weights_sha256": "ab" * 32, "engine_sha256": hashlib.sha256(plan).hexdigest(), "engine_bytes": len(plan),
            "version_compatible": False, "hardware_compatibility": "none", "source": "weights"}
    return {**info, **changes}


# CUDA --------------------------------------------------------------------------------------------------
class FakeStream:
    """A CUDA stream: its handle, its device and the device current when it was created."""

    def __init__(self, handle: int, device: int, created_on: int):
        self.handle, self.device, self.created_on = handle, device, created_on


class FakeCuda:
    """The backend's CUDA seam on CPU tensors (see the module docstring). The caller's current stream is the
    legacy default stream (handle ``caller``, 0) unless changed; ``timeline`` records, in order, the stream
    joins ("join": ours waits on the caller's, "rejoin": the caller's waits on ours), buffers kept alive for a
    stream and (from :class:`FakeContext`) the enqueues; ``capture`` makes the current stream capturing."""

    def __init__(self, devices=(DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", 0), DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", 1))):
        self.devices, self.current = list(devices), 0
        self.allocations: list[int] = []
        self.released = 0
        self.synchronized: list[int] = []
        self.streams: list[FakeStream] = []
        self.timeline: list[tuple] = []
        self.caller, self.capture = 0, False

    def resolve(self, device):
        text = str(device)
        return torch.device("cuda", int(text.split(":")[-1]) if ":" in text or text.isdigit() else 0)

    def device_info(self, index):
        return self.devices[index]

    @contextlib.contextmanager
    def scope(self, device):
        previous, self.current = self.current, device.index
        try:
            yield
        finally:
            self.current = previous

    def new_stream(self, device):
        self.streams.append(FakeStream(1000 + len(self.streams) + 10 * device.index, device.index, self.current))
        return self.streams[-1]

    def stream_handle(self, stream):
        return stream.handle

    def join(self, stream, device):
        self.timeline.append(("join", stream.handle, self.caller))

    def rejoin(self, stream, device):
        self.timeline.append(("rejoin", self.caller, stream.handle))

    def keep_alive(self, tensor, stream):
        self.timeline.append(("keep_alive", tensor.data_ptr(), stream.handle))

    def capturing(self, device):
        return self.capture

    def empty(self, count, dtype, device):
        """A 256-byte aligned CPU tensor of ``count`` elements (the caching allocator's alignment is larger)."""
        self.allocations.append(count)
        return aligned_empty(count, dtype)

    def is_on(self, tensor, device):
        return tensor.device.type == "cpu"

    def synchronize(self, stream):
        self.synchronized.append(stream.handle)

    def release(self, device):
        self.released += 1


def aligned_empty(count: int, dtype=torch.float32):
    """A CPU tensor of ``count`` elements starting at a 256-byte boundary (CUDA allocations do)."""
    item = torch.empty((), dtype=dtype).element_size()
    raw = torch.empty(count + 256 // item, dtype=dtype)
    skip = (-raw.data_ptr() % 256) // item
    return raw[skip:skip + count]


# Runtime, engine, execution context -------------------------------------------------------------------
def priors_count(height: int, width: int) -> int:
    return sum(math.ceil(height / s) * math.ceil(width / s) * 2 for s in (8, 16, 32))


class FakeRuntime:
    """trt.Runtime: records the logger and ``engine_host_code_allowed``; deserializes ``trt.engine``."""

    def __init__(self, trt, logger):
        self.trt, self.logger, self.engine_host_code_allowed = trt, logger, False
        trt.calls.append(("Runtime", trt.cuda.current if trt.cuda else None, logger))
        trt.runtimes = getattr(trt, "runtimes", []) + [self]

    def deserialize_cuda_engine(self, plan):
        self.trt.calls.append(("deserialize", self.trt.cuda.current, self.engine_host_code_allowed))
        return getattr(self.trt, "engine", None)


class FakeEngine:
    """ICudaEngine of RetinaFace: input "input" [-1, 3, H, W] in one profile, outputs by name."""

    def __init__(self, trt, profile, outputs=("loc", "conf", "landms"), contexts_fail=False, keep=750,
                 memory_size=123 * 1024):
        self.trt, self.profile, self.names = trt, profile, ["input", *outputs]
        self.contexts_fail, self.keep, self.memory_size = contexts_fail, keep, memory_size
        self.contexts: list[FakeContext] = []

    @property
    def context_type(self):
        return FakeContext

    @property
    def device_memory_size(self):             # 8.6 (and 10.0)
        return self.memory_size

    @property
    def device_memory_size_v2(self):          # 10.1+
        return self.memory_size

    def create_execution_context_without_device_memory(self):
        return self._context("WITHOUT_DEVICE_MEMORY")

    @property
    def num_io_tensors(self):
        return len(self.names)

    def get_tensor_name(self, index):
        return self.names[index]

    def get_tensor_mode(self, name):
        return self.trt.TensorIOMode.INPUT if name == "input" else self.trt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return types.SimpleNamespace(name="INT32" if name == "count" else "FLOAT")

    def get_tensor_profile_shape(self, name, index):
        return [list(s) for s in self.profile]

    def create_execution_context(self, strategy=None):
        return self._context("STATIC" if strategy is None else strategy.name)

    def _context(self, strategy: str):
        self.trt.calls.append(("create_execution_context", self.trt.cuda.current, strategy))
        if self.contexts_fail:
            return None
        self.contexts.append(self.context_type(self, strategy))
        return self.contexts[-1]

    def create_engine_inspector(self):
        engine = self

        class Inspector:
            execution_context = None

            def get_engine_information(self, fmt):
                engine.trt.calls.append(("inspect", fmt.name, self.execution_context))
                return '{"Layers": []}'
        return Inspector()


class FakeContext:
    """IExecutionContext: shapes within the profile only (set_input_shape returns False otherwise),
    output shapes from the input's, addresses and enqueues recorded with the current device."""

    def __init__(self, engine, strategy="STATIC"):
        self.engine, self.shape, self.addresses, self.enqueued = engine, None, {}, []
        self.profiler, self.enqueue_emits_profile = None, True
        self.shape_calls = 0
        self.strategy, self.device_memory = strategy, None
        self.captured, self.shape_calls_after_capture = False, 0

    def set_device_memory(self, memory, size):
        if size < self.engine.memory_size:
            raise ValueError("the device memory is smaller than the engine needs")
        self.device_memory = memory

    def _record(self, what, *args):
        self.engine.trt.calls.append((what, self.engine.trt.cuda.current, *args))

    def set_input_shape(self, name, shape):
        self._record("set_input_shape", tuple(shape))
        self.shape_calls += 1
        self.shape_calls_after_capture += self.captured
        lo, _, hi = self.engine.profile
        if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        n, _, h, w = self.shape
        if name in ("dets", "count"):
            return (n, self.engine.keep, 15) if name == "dets" else (n,)
        return (n, priors_count(h, w), {"loc": 4, "conf": 2, "landms": 10}[name])

    def set_tensor_address(self, name, address):
        self._record("set_tensor_address", name, address)
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle):
        """False (an error) on the legacy default stream (TensorRT synchronises the device there) and
        without activation memory in a context made without it."""
        self._record("execute_async_v3", stream_handle)
        cuda = self.engine.trt.cuda
        if cuda is not None:
            cuda.timeline.append(("execute_async_v3", stream_handle))
            self.captured |= cuda.capture
        if stream_handle == 0 or (self.strategy != "STATIC" and self.device_memory is None):
            return False
        self.enqueued.append((dict(self.addresses), stream_handle))
        return True

    def report_to_profiler(self):
        self._record("report_to_profiler")
        if self.profiler is None:
            return False
        self.profiler.report_layer_time("conv", 0.5)
        self.profiler.report_layer_time("nms", 0.25)
        return True
