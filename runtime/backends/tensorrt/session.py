"""A deserialized TensorRT engine and its execution context, driven by tensor names only.

This is the only runtime code that calls TensorRT; memory and streams are the caller's (plain integer
device pointers and a CUDA stream handle), so the same calls are checked against the real bindings by
the conformance tests. APIs used exist unchanged in 8.6, 10.x and 11.x (TENSORRT_API.md §3):
``deserialize_cuda_engine``, ``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``get_tensor_dtype``, ``get_tensor_profile_shape``, ``set_input_shape``, ``get_tensor_shape``,
``set_tensor_address``, ``execute_async_v3``.
"""

from __future__ import annotations

from typing import Mapping

from retinaface_trt.errors import RetinaFaceError


class EngineSession:
    """``inputs``/``outputs``: tensor names in engine order; ``dtypes``: name → TensorRT DataType name."""

    def __init__(self, trt, plan: bytes, logger):
        self._runtime = trt.Runtime(logger)
        try:
            engine = self._runtime.deserialize_cuda_engine(plan)
        except (RuntimeError, TypeError, ValueError) as error:   # some versions raise instead of returning None
            engine = None
            reason = str(error)
        else:
            reason = "TensorRT's log above says why"
        if engine is None:
            raise RetinaFaceError(f"TensorRT {trt.__version__} could not load the engine ({reason}); the file "
                                  "was built by another TensorRT version or GPU, or is damaged: rebuild it")
        self._engine = engine
        self._context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        modes = {name: engine.get_tensor_mode(name) for name in names}
        self.inputs = [n for n in names if modes[n] == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if modes[n] == trt.TensorIOMode.OUTPUT]
        self.dtypes = {name: engine.get_tensor_dtype(name).name for name in names}

    def profile_shapes(self, name: str) -> list[tuple[int, ...]]:
        """[min, opt, max] shapes of input ``name`` in optimization profile 0."""
        return [tuple(dims) for dims in self._engine.get_tensor_profile_shape(name, 0)]

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Set the shape of input ``name``; return every output's resulting shape."""
        if not self._context.set_input_shape(name, tuple(shape)):
            lo, _, hi = self.profile_shapes(name)
            raise RetinaFaceError(f"input shape {tuple(shape)} is outside the engine's profile {lo}..{hi} "
                                  "(NCHW); rebuild with a larger --max-batch / --max-size, or resize the input")
        return {out: tuple(self._context.get_tensor_shape(out)) for out in self.outputs}

    def execute(self, addresses: Mapping[str, int], stream_handle: int) -> None:
        """Enqueue one run on ``stream_handle`` with the given device pointers (every input and output)."""
        for name, address in addresses.items():
            if not self._context.set_tensor_address(name, int(address)):
                raise RetinaFaceError(f"TensorRT refused the device address of tensor {name!r}")
        if not self._context.execute_async_v3(int(stream_handle)):
            raise RetinaFaceError("TensorRT failed to enqueue the inference (its log above says why)")

    def layer_information(self, trt) -> str:
        """TensorRT's description of every layer, as JSON text (parameters only for DETAILED builds)."""
        inspector = self._engine.create_engine_inspector()
        return inspector.get_engine_information(trt.LayerInformationFormat.JSON)

    def close(self) -> None:
        """Release the context, engine and runtime, in that order (each needs the next one alive)."""
        for attr in ("_context", "_engine", "_runtime"):
            if hasattr(self, attr):
                delattr(self, attr)
