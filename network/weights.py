"""One checked accessor for the weights of the network being built.

``WeightStore.take(key, shape)`` returns the array for a state_dict key, checked against the shape the
network needs, in the element type of the network (float32, or float16 for a strongly typed FP16 engine).
Each key may be taken once; :meth:`WeightStore.check_all_used` then proves that nothing was left over.

TensorRT keeps ``Weights`` by reference until the engine is built, so the store also owns every array it
hands out (including derived ones such as folded BatchNorm scales): keep the store alive until
``build_serialized_network`` returns.
"""

from __future__ import annotations

import difflib
from typing import Mapping

import numpy as np

from retinaface_trt.errors import RetinaFaceError

IGNORED_SUFFIX = "num_batches_tracked"


class WeightStore:
    """Weights keyed by PyTorch state_dict names (arrays flat, as read from ``.wts``, or shaped)."""

    def __init__(self, weights: Mapping[str, np.ndarray], dtype=np.float32):
        self._weights = {k: np.asarray(v) for k, v in weights.items() if not k.endswith(IGNORED_SUFFIX)}
        self.dtype = np.dtype(dtype)
        self._used: set[str] = set()
        self._owned: list[np.ndarray] = []
        self.block = "network"  # the block being built, named in error messages

    def take(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """The weights of ``key`` reshaped to ``shape``, as a C-contiguous array of the network's type."""
        return self.own(self._checked(key, shape))

    def take_raw(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """Like :meth:`take` but in float64 and not handed to TensorRT: for values derived before casting."""
        return self._checked(key, shape).astype(np.float64)

    def _checked(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in self._weights:
            close = difflib.get_close_matches(key, self._weights, n=3, cutoff=0.6)
            hint = f"; closest names: {', '.join(close)}" if close else ""
            raise RetinaFaceError(f"weight {key!r} needed by {self.block} is missing from the weights{hint}")
        if key in self._used:
            raise RetinaFaceError(f"weight {key!r} is used twice while building {self.block}")
        array = self._weights[key]
        size = int(np.prod(shape))
        if array.size != size or (array.ndim > 1 and tuple(array.shape) != tuple(shape)):
            raise RetinaFaceError(
                f"weight {key!r} has shape {tuple(array.shape)} ({array.size} values) but {self.block} of "
                f"this configuration needs {tuple(shape)} ({size} values): the weights and the backbone "
                "configuration do not match")
        self._used.add(key)
        return array.reshape(shape)

    def own(self, array: np.ndarray) -> np.ndarray:
        """Convert to the network's element type, keep a reference until the build, return it."""
        array = np.ascontiguousarray(array, dtype=self.dtype)
        self._owned.append(array)
        return array

    def unused(self) -> list[str]:
        return [k for k in self._weights if k not in self._used]

    def check_all_used(self) -> None:
        """Raise if some weights were never consumed (a different model, or a mis-built network)."""
        left = self.unused()
        if left:
            raise RetinaFaceError(
                f"{len(left)} weights are not used by the network, first: {', '.join(left[:3])}; "
                "the weights do not belong to this RetinaFace configuration")
