"""Value types of the executor: ``Weights`` and shape tuples, with TensorRT's conversion rules."""

from __future__ import annotations

import numpy as np
import torch

from network.executor.enums import DataType, coerce

# numpy dtypes that trt.Weights accepts (float64 is refused, as on a real install).
_NUMPY_TO_TRT = {
    np.dtype(np.float32): DataType.FLOAT,
    np.dtype(np.float16): DataType.HALF,
    np.dtype(np.int64): DataType.INT64,
    np.dtype(np.int32): DataType.INT32,
    np.dtype(np.int8): DataType.INT8,
    np.dtype(np.bool_): DataType.BOOL,
    np.dtype(np.uint8): DataType.UINT8,
}
_TRT_TO_NUMPY = {v: k for k, v in _NUMPY_TO_TRT.items()}
TORCH_DTYPES = {
    DataType.FLOAT: torch.float32,
    DataType.HALF: torch.float16,
    DataType.INT64: torch.int64,
    DataType.INT32: torch.int32,
    DataType.INT8: torch.int8,
    DataType.BOOL: torch.bool,
    DataType.UINT8: torch.uint8,
}


class Weights:
    """``trt.Weights``: a typed, C-contiguous host array, kept by reference (never copied).

    ``Weights()`` or ``Weights(DataType)`` is empty (count 0); ``Weights(ndarray)`` wraps the array.
    """

    def __init__(self, a=DataType.FLOAT):
        if isinstance(a, np.ndarray):
            if a.dtype not in _NUMPY_TO_TRT:
                raise ValueError(f"[TRT] [E] Could not implicitly convert NumPy data type: {a.dtype}")
            if not a.flags["C_CONTIGUOUS"]:
                raise ValueError("Weights array is not contiguous; please use numpy.ascontiguousarray()")
            self._array = a
            self.dtype = _NUMPY_TO_TRT[a.dtype]
        else:
            self.dtype = coerce(a, DataType)
            self._array = np.zeros(0, _TRT_TO_NUMPY[self.dtype])

    @property
    def size(self) -> int:
        return int(self._array.size)

    @property
    def nbytes(self) -> int:
        return int(self._array.nbytes)

    def numpy(self) -> np.ndarray:
        return self._array

    def __len__(self) -> int:
        return self.size


def as_weights(value) -> Weights:
    """Convert what the bindings accept as Weights (None, ndarray, executor or real trt.Weights)."""
    if value is None:
        return Weights()
    if isinstance(value, Weights):
        return value
    if isinstance(value, np.ndarray):
        return Weights(value)
    if type(value).__name__ == "Weights" and hasattr(value, "numpy"):  # the real bindings' trt.Weights
        return Weights(np.ascontiguousarray(value.numpy()))
    raise TypeError(f"expected trt.Weights or a numpy array, got {type(value).__name__}")


def as_dims(value) -> tuple[int, ...]:
    """Convert a tuple, list, torch.Size or ``trt.Dims`` to a tuple of ints."""
    try:
        return tuple(int(d) for d in value)
    except TypeError:
        raise TypeError(f"expected a shape (tuple of ints or trt.Dims), got {value!r}") from None


def volume(shape) -> int:
    """Number of elements of a fully known shape (``trt.volume``)."""
    return int(np.prod(as_dims(shape), dtype=np.int64))
