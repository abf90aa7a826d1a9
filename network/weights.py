"""One checked accessor for the weights of the network being built.

``WeightStore.take(key, shape)`` returns the array for a state_dict key, checked against the shape the
network needs, in the element type of the network (float32, or float16 for a strongly typed FP16 engine).
Each key may be taken once; :meth:`WeightStore.check_all_used` then proves that nothing was left over.

TensorRT keeps ``Weights`` by reference until the engine is built, so the store also owns every array it
hands out (including derived ones such as folded BatchNorm scales): keep the store alive until
``build_serialized_network`` returns.

:func:`check_weights` is what every route runs on weights before using them (files through
:func:`wts_export.weights.load_weights`, mappings given directly through :class:`WeightStore`). It refuses:

* a tensor that is not floating point (integers, booleans, complex numbers are never RetinaFace weights, and
  casting them would hide the damage), or that holds NaN or infinity once in float32;
* values no trained network has: a magnitude of :data:`MAX_WEIGHT_MAGNITUDE` or more (:data:`MAX_VARIANCE` for
  a BatchNorm variance; the published MobileNet-0.25 stays under 27 and 9.9e4: a value of 1e38 is finite but
  overflows float32 in the first layers, and ends as infinity in the detections), a negative BatchNorm variance, every variance zero, or a convolution
  weight more than :data:`MAX_WEIGHT_SPREAD` times the median magnitude of its tensor (the published
  MobileNet-0.25 stays under 21 times; a flipped byte or exponent bit gives thousands). A convolution weight
  is a ``.weight`` whose module has no ``running_var``: RetinaFace has no other kind.
"""

from __future__ import annotations

import difflib
from typing import Mapping

import numpy as np

from retinaface_trt.errors import RetinaFaceError

IGNORED_SUFFIX = "num_batches_tracked"   # BatchNorm's training counter: not a weight, unused in eval mode
FLOAT_TYPES = ("float16", "bfloat16", "float32", "float64")
MAX_WEIGHT_SPREAD = 1000.0   # largest |conv weight| / median |conv weight| accepted in one tensor
SPREAD_SAMPLE = 1 << 16      # magnitudes sampled for that median
MAX_WEIGHT_MAGNITUDE = 1e6   # largest |value| accepted in a weight, a bias, a BatchNorm mean or scale ...
MAX_VARIANCE = 1e12          # ... and in a BatchNorm variance (a squared scale)


def check_weights(weights: Mapping[str, object], source: str = "the weights") -> dict[str, np.ndarray]:
    """``{name: numpy array}`` (each in its own floating type) of ``weights`` (numpy arrays or torch tensors),
    without ``num_batches_tracked``, once every check of the module doc passed; else one RetinaFaceError
    naming ``source``, the key and what was found."""
    arrays = {name: _floating_array(name, value, source)
              for name, value in weights.items() if not name.endswith(IGNORED_SUFFIX)}
    for name, array in arrays.items():
        _check_magnitude(name, array, source)
    _check_variances(arrays, source)
    for name in _conv_weights(arrays):
        _check_spread(name, arrays[name], source)
    return arrays


def _floating_array(name: str, value, source: str) -> np.ndarray:
    dtype = str(getattr(value, "dtype", type(value).__name__)).removeprefix("torch.")
    if dtype not in FLOAT_TYPES:
        raise RetinaFaceError(f"{source}: weight {name!r} holds {dtype} values; expected floating point "
                              f"({', '.join(FLOAT_TYPES)}): not RetinaFace weights, re-export the checkpoint")
    if hasattr(value, "detach"):   # a torch.Tensor (bfloat16 has no numpy type: float32 holds it exactly)
        value = value.detach().cpu()
        value = (value.float() if dtype == "bfloat16" else value).numpy()
    array = np.asarray(value)
    with np.errstate(over="ignore"):   # a float64 beyond float32's range becomes inf: reported just below
        bad = np.flatnonzero(~np.isfinite(array.astype(np.float32, copy=False)))
    if bad.size:
        raise RetinaFaceError(f"{source}: weight {name!r} has {bad.size} value(s) that are not finite in float32 "
                              f"(first: {array.reshape(-1)[bad[0]]} at flat index {bad[0]}); the file is damaged "
                              "or the training diverged")
    return array


def _check_magnitude(name: str, array: np.ndarray, source: str) -> None:
    limit = MAX_VARIANCE if name.endswith(".running_var") else MAX_WEIGHT_MAGNITUDE
    flat = array.reshape(-1)
    if flat.size == 0:
        return
    index = int(np.argmax(np.abs(flat)))
    if abs(float(flat[index])) >= limit:
        raise RetinaFaceError(f"{source}: weight {name!r} holds {float(flat[index]):.6g} at flat index {index}; "
                              f"trained RetinaFace weights stay below {limit:g} in magnitude (values this large "
                              "overflow float32 in the network): the file is damaged, get a fresh copy")


def _check_variances(arrays: Mapping[str, np.ndarray], source: str) -> None:
    variances = {name: a for name, a in arrays.items() if name.endswith(".running_var")}
    for name, values in variances.items():
        negative = np.flatnonzero(values.reshape(-1) < 0)
        if negative.size:
            raise RetinaFaceError(f"{source}: BatchNorm variance {name!r} has {negative.size} negative value(s) "
                                  f"(first: {values.reshape(-1)[negative[0]]} at index {negative[0]}); a variance "
                                  "cannot be negative: the file is damaged")
    if variances and not any(values.any() for values in variances.values()):
        raise RetinaFaceError(f"{source}: all {len(variances)} BatchNorm variances are 0; a trained network has "
                              "positive ones: this is not a trained RetinaFace checkpoint")


def _conv_weights(arrays: Mapping[str, np.ndarray]) -> list[str]:
    return [name for name in arrays if name.endswith(".weight")
            and name.removesuffix(".weight") + ".running_var" not in arrays]


def _check_spread(name: str, values: np.ndarray, source: str) -> None:
    flat = values.reshape(-1)
    # The median of up to SPREAD_SAMPLE evenly spaced magnitudes: as robust as the full one (a few flipped
    # values cannot move it), and the check stays well under a second for ResNet-50's 27 M values.
    sample = np.abs(flat[::max(1, flat.size // SPREAD_SAMPLE)].astype(np.float64))
    sample = sample[sample > 0]
    if sample.size == 0:
        return
    median = float(np.median(sample))
    index = int(np.argmax(np.abs(flat)))
    if abs(float(flat[index])) > MAX_WEIGHT_SPREAD * median:
        raise RetinaFaceError(
            f"{source}: convolution weight {name!r} holds {flat[index]} at flat index {index}, more than "
            f"{MAX_WEIGHT_SPREAD:g} times the median magnitude of the tensor ({median:.3g}); trained networks "
            "never do: the file is damaged (flipped bytes?), get a fresh copy")


class WeightStore:
    """Weights keyed by PyTorch state_dict names (arrays flat, as read from ``.wts``, or shaped), checked
    with :func:`check_weights` when the store is created."""

    def __init__(self, weights: Mapping[str, np.ndarray], dtype=np.float32):
        self._weights = check_weights(weights)
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
        return self.keep(np.ascontiguousarray(array, dtype=self.dtype))

    def keep(self, array: np.ndarray) -> np.ndarray:
        """Keep ``array`` as it is (no conversion: the post-processing's int32 indices and float32 priors) until
        the store goes, as TensorRT holds ``Weights`` by reference until the build ends; return it."""
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
