"""INT8 by explicit quantization: where the Q/DQ layers go, the scales they get, and the calibration maths.

(``net`` below is the :class:`network.layers.LayerBuilder` of the network being built.)

**Placement** (TensorRT fuses a dequantize → convolution → quantize chain into one INT8 convolution, and wants
the inputs of an operation quantized rather than its outputs; docs/int8.md):

* the input activation of every quantized convolution gets quantize → dequantize with a per-tensor scale
  ``amax / 127`` (``amax`` from calibration); convolutions reading the same tensor share one pair;
* its weights get BatchNorm folded in first (in float64, in the network definition itself), then quantize →
  dequantize per output channel (axis 0) with ``max |w_k| / 127``, and reach the convolution as its input 1;
* the shortcut input of every ResNet residual add gets a pair too, so that the add (and the ReLU after it) can be
  fused into the convolution before it.

Points are named by PyTorch module path: a convolution's key (``body.stage2.3.3``) for its input, a residual add's
name (``body.layer2.0.add``) for its shortcut. The points matched by :data:`DEFAULT_KEEP` (the first convolution,
the first depthwise convolution, the heads) or by a ``keep`` pattern (fnmatch) stay float32, exactly as in the float
network; a pattern starting with ``!`` quantizes the points it matches even where a default keeps them.

**Calibration maths** (float32 activations from the executor → ``amax`` per point):

* :class:`Histogram`: ``|x|`` in :data:`BINS` bins of width ``w``, ``w`` the smallest power of two with
  ``max |x| < BINS · w``. When a larger value arrives, pairs of bins are merged and ``w`` doubles; because ``w`` is a
  power of two, ``floor(x / 2w) = floor(floor(x / w) / 2)`` and the merge is exact: one pass over the images gives
  the histogram a second pass over them would. The data then fill between half and all of the bins.
* :func:`entropy_amax`: TensorRT's entropy calibration (KL divergence, "8-bit Inference with TensorRT", NVIDIA
  GTC 2017): for each candidate ``i`` of 128 … 2048 bins, P = the first ``i`` bins with every count beyond them
  added to the last; Q = those ``i`` bins (without the outliers) merged into 128 levels and spread back evenly
  over the bins that were not empty; the ``i`` of the smallest KL(P ‖ Q) gives ``amax = (i + 0.5) · w``. Values
  that are exactly 0 are left out of P and Q: any scale represents them exactly, and the zeros of a ReLU (half
  of its outputs) would otherwise dominate both distributions and pull the threshold far into the bulk (to 1.5 σ
  of a half-normal). NVIDIA's pytorch-quantization does something similar (bin 0 takes bin 1's count); that also
  drops the small non-zero values of bin 0, which matter for MobileNet's LeakyReLU outputs (negative values
  near 0).
* :func:`percentile_amax`: the upper edge of the bin where 99.99 % of ``|x|`` is reached, at most ``max |x|``;
* ``max``: ``max |x|`` itself (min-max calibration), for comparison.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from retinaface_trt.errors import RetinaFaceError

# Kept in float32 by default: the first convolution (3 input channels: little to gain, the raw image to lose) and
# the heads (their outputs are the boxes and scores), as practitioners keep them; and MobileNet's first depthwise
# convolution, measured to cost most (docs/int8.md): two of its 8 input channels peak at 0.08 where the tensor
# reaches 3.3, and its BatchNorm multiplies them by 57 and 131, so a per-tensor INT8 scale leaves them 3 levels
# (WIDER subset easy AP −0.050 with it quantized, −0.004 without).
DEFAULT_KEEP = ("body.stage1.0.0", "body.stage1.1.0", "body.conv1", "ClassHead.*", "BboxHead.*", "LandmarkHead.*")
METHODS = ("entropy", "percentile", "max")      # how amax is chosen from a histogram (amax_of)
BINS = 2048                 # histogram bins (TensorRT's entropy calibration)
LEVELS = 128                # quantized levels of |x| (INT8, symmetric)
PERCENTILE = 99.99
INT8_MAX = 127


@dataclass(frozen=True)
class QuantizationPlan:
    """What an INT8 network definition needs: an activation ``amax`` per point and what stays float.

    amax:  point (module path) → the largest |x| to represent (scale = amax / 127)
    keep:  fnmatch patterns of points kept in float32, beyond :data:`DEFAULT_KEEP`, or ``!pattern``: quantize these
           points even if a default keeps them; each must match a point
    typed: True: ``add_quantize(x, scale, trt.int8)`` / ``add_dequantize(q, scale, trt.float32)`` (TensorRT 10.x,
           11.x, the executor); False: TensorRT 8.6's two-argument forms (INT8 out of quantize, FLOAT out of
           dequantize are then the only types)
    """

    amax: Mapping[str, float]
    keep: tuple[str, ...] = ()
    typed: bool = True

    def kept(self, point: str) -> bool:
        if any(p.startswith("!") and fnmatch.fnmatchcase(point, p[1:]) for p in self.keep):
            return False
        return any(fnmatch.fnmatchcase(point, p) for p in DEFAULT_KEEP + tuple(self.keep) if not p.startswith("!"))


@dataclass
class ActivationObserver:
    """Stands where a :class:`Quantizer` goes while the *float* network is built for calibration: it quantizes
    nothing and records the tensor of each point (``points``: name → tensor, in build order)."""

    points: dict = field(default_factory=dict)

    def quantizes(self, point: str) -> bool:
        return False

    def activation(self, net, point: str, x):
        self.points[point] = x
        return x

    def finish(self) -> None:
        """Nothing to check."""


class Quantizer:
    """Adds the Q/DQ layers of a :class:`QuantizationPlan` while one network is built (see the module docstring)."""

    def __init__(self, plan: QuantizationPlan):
        self.plan = plan
        self._pairs: dict[int, tuple[Any, float, Any]] = {}      # id(tensor) → (tensor, scale, dequantized)
        self._matched: set[str] = set()

    def quantizes(self, point: str) -> bool:
        self._matched.update(p for p in self.plan.keep if fnmatch.fnmatchcase(point, p.removeprefix("!")))
        return not self.plan.kept(point)

    def activation(self, net, point: str, x):
        """``x`` (the input of ``point``), quantized and dequantized with the point's scale; ``x`` if it is kept."""
        if not self.quantizes(point):
            return x
        if point not in self.plan.amax:
            raise RetinaFaceError(f"the calibration has no statistics for {point}: it was made for another network; "
                                  "calibrate again (delete the calibration cache or pass another one)")
        scale = activation_scale(self.plan.amax[point])
        known = self._pairs.get(id(x))
        if known is not None and known[1] == scale:
            return known[2]                 # one Q/DQ pair for every convolution reading this tensor
        dequantized = fake_quantize(net, x, np.array(scale, np.float32), 0, f"{point}.input", self.plan.typed)
        self._pairs[id(x)] = (x, scale, dequantized)
        return dequantized

    def finish(self) -> None:
        """RetinaFaceError for a ``keep`` pattern that matched no point (a typo would silently keep nothing)."""
        check_keep_patterns(self.plan.keep, self._matched)


def check_keep_patterns(patterns, points) -> None:
    """RetinaFaceError for the first of ``patterns`` that matches none of ``points`` (point names, or patterns
    already known to match)."""
    points = set(points)
    for pattern in patterns:
        if pattern not in points and not any(fnmatch.fnmatchcase(point, pattern.removeprefix("!")) for point in points):
            raise RetinaFaceError(f"--keep-precision {pattern!r} matches no layer of this network; patterns match "
                                  "PyTorch module paths of convolutions (body.stage2.3.3, fpn.merge1.0, "
                                  "ssh1.conv3X3.0) and residual adds (body.layer2.0.add), with * and ?")


def handler(quantization):
    """The object a network build consults: a :class:`Quantizer` for a plan, an observer as it is, or None."""
    return Quantizer(quantization) if isinstance(quantization, QuantizationPlan) else quantization


def activation_scale(amax: float) -> float:
    """``amax / 127``; an all-zero tensor (amax 0) gets 1/127, with which every value still quantizes to 0."""
    if not math.isfinite(amax) or amax < 0:
        raise RetinaFaceError(f"an activation amax must be a finite number ≥ 0, found {amax}; calibrate again")
    return float(np.float32((amax if amax > 0 else 1.0) / INT8_MAX))


def weight_scales(kernel: np.ndarray) -> np.ndarray:
    """Per output channel ``max |w_k| / 127`` of a kernel [K, ...] (1/127 for an all-zero channel), float32 [K]."""
    amax = np.max(np.abs(kernel.reshape(kernel.shape[0], -1)), axis=1).astype(np.float64)
    return (np.where(amax > 0, amax, 1.0) / INT8_MAX).astype(np.float32)


def fold_batch_norm(kernel: np.ndarray, bias: np.ndarray | None, scale: np.ndarray, shift: np.ndarray):
    """Convolution then per-channel ``y·scale + shift`` as one convolution (float64 in, float64 out):
    ``w' = w·scale[k]``, ``b' = b·scale + shift`` (``b`` = 0 without a bias)."""
    folded = kernel * scale.reshape(-1, *([1] * (kernel.ndim - 1)))
    return folded, (shift if bias is None else bias * scale + shift)


def fake_quantize(net, x, scale: np.ndarray, axis: int, name: str, typed: bool = True):
    """``x`` → quantize → dequantize with ``scale`` (0-D: per tensor; 1-D: along ``axis``); the dequantized tensor.

    Both layers read one constant scale tensor (float32). ``typed`` picks the overloads (see QuantizationPlan).
    """
    trt, network = net.trt, net.network
    constant = network.add_constant(scale.shape, trt.Weights(net.weights.keep(scale)))
    constant.name = f"{name}_scale"
    s = constant.get_output(0)
    quantize = network.add_quantize(x, s, trt.int8) if typed else network.add_quantize(x, s)
    quantize.axis = axis          # ignored for a 0-D scale; the default is undocumented: always set
    quantize.name = f"{name}_quantize"
    q = quantize.get_output(0)
    dequantize = network.add_dequantize(q, s, trt.float32) if typed else network.add_dequantize(q, s)
    dequantize.axis = axis
    dequantize.name = f"{name}_dequantize"
    return dequantize.get_output(0)


def quantized_kernel(net, kernel: np.ndarray, name: str, typed: bool = True):
    """A float32 kernel [K, C/G, R, S] as a constant, quantized and dequantized per output channel: the tensor
    to give a convolution as its input 1."""
    kernel = net.weights.keep(np.ascontiguousarray(kernel, dtype=np.float32))
    constant = net.network.add_constant(kernel.shape, net.trt.Weights(kernel))
    constant.name = name
    return fake_quantize(net, constant.get_output(0), weight_scales(kernel), 0, name, typed)


# Calibration maths -------------------------------------------------------------------------------------------
class Histogram:
    """``|x|`` of one tensor over any number of batches (see the module docstring); ``counts`` [BINS] int64,
    ``width`` (the bin width, a power of two; None while every value seen was 0), ``amax`` (max |x|) and
    ``zeros`` (how many of the values in bin 0 are exactly 0)."""

    def __init__(self):
        self.counts = np.zeros(BINS, np.int64)
        self.width: float | None = None
        self.amax = 0.0
        self.zeros = 0

    def add(self, x) -> None:
        """Count the values of ``x`` (a torch tensor on any device)."""
        magnitude = x.detach().abs().float()
        amax = float(magnitude.max()) if magnitude.numel() else 0.0
        if not math.isfinite(amax):
            raise RetinaFaceError("an activation is not finite (NaN or infinity) on a calibration image: the "
                                  "weights or the image are damaged")
        self.amax = max(self.amax, amax)
        self.zeros += int((magnitude == 0).sum())
        if self.width is None:
            if amax == 0.0:
                self.counts[0] += magnitude.numel()
                return
            self.width = 2.0 ** math.ceil(math.log2(amax / BINS))
        while amax >= self.width * BINS:
            self._double()
        bins = (magnitude / self.width).floor_().long()      # exact: division by a power of two
        self.counts += np.bincount(bins.flatten().cpu().numpy(), minlength=BINS)

    def _double(self) -> None:
        merged = self.counts.reshape(BINS // 2, 2).sum(axis=1)
        self.counts = np.concatenate([merged, np.zeros(BINS // 2, np.int64)])
        self.width *= 2.0


def entropy_amax(histogram: Histogram) -> float:
    """TensorRT's entropy calibration threshold of ``histogram`` (module docstring); its max |x| when it is 0."""
    if histogram.width is None:
        return 0.0
    counts = histogram.counts.astype(np.float64)
    counts[0] -= histogram.zeros       # exact zeros are exact at any scale (module docstring)
    beyond = counts.sum() - np.cumsum(counts)          # beyond[i - 1]: the count of bins i, i+1, …
    divergences = [_divergence(counts, i, beyond[i - 1]) for i in range(LEVELS, BINS + 1)]
    best = LEVELS + int(np.argmin(divergences))
    return (best + 0.5) * histogram.width


def _divergence(counts: np.ndarray, i: int, outliers: float) -> float:
    """KL(P ‖ Q) for a threshold at ``i`` bins (P, Q as in the module docstring); inf where Q misses P's mass."""
    kept = counts[:i]
    p = kept.copy()
    p[-1] += outliers
    edges = (np.arange(LEVELS + 1) * i) // LEVELS         # level j merges bins edges[j] … edges[j+1] - 1
    nonzero = kept > 0
    sums = np.add.reduceat(kept, edges[:-1])
    filled = np.add.reduceat(nonzero.astype(np.float64), edges[:-1])
    q = np.repeat(np.divide(sums, filled, out=np.zeros(LEVELS), where=filled > 0), np.diff(edges)) * nonzero
    if q.sum() == 0:
        return math.inf
    p, q = p / p.sum(), q / q.sum()
    mass = p > 0
    if np.any(q[mass] == 0):
        return math.inf
    return float(np.sum(p[mass] * np.log(p[mass] / q[mass])))


def amax_of(histogram: Histogram, method: str) -> float:
    """``amax`` of ``histogram`` by ``method``: ``entropy``, ``percentile`` or ``max`` (the largest |x|, which is
    what min-max calibration takes)."""
    if method == "entropy":
        return entropy_amax(histogram)
    if method == "percentile":
        return percentile_amax(histogram)
    if method == "max":
        return histogram.amax
    raise RetinaFaceError(f"unknown calibration method {method!r}; expected one of: {', '.join(METHODS)}")


def percentile_amax(histogram: Histogram, percentile: float = PERCENTILE) -> float:
    """The upper edge of the bin where ``percentile`` % of the values are reached, at most the max |x|."""
    if histogram.width is None:
        return 0.0
    cumulative = np.cumsum(histogram.counts)
    index = int(np.searchsorted(cumulative, cumulative[-1] * percentile / 100.0))
    return min((index + 1) * histogram.width, histogram.amax)
