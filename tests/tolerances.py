"""Float tolerances derived from the arithmetic being compared, not from what passed on one machine.

Two float32 evaluations of the same network that differ only in the order of their sums (another instruction set:
AVX2 against AVX-512; NCHW against NHWC; a batched kernel against one image; oneDNN against ONNX Runtime's MLAS or
PyTorch's own kernels; another thread split) give slightly different numbers, and how different depends on the CPU.
The standard model of rounding error (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §2.8 and
§3.1) bounds what one such sum of ``n`` terms can move:

* a sum of ``n`` products computed in float32 carries an error of at most about ``n·u·Σ|aᵢbᵢ|`` in the worst
  case, and of about ``√n·u·Σ|aᵢbᵢ|`` for rounding errors of random sign (the rule of thumb the literature uses for
  realistic error, since the errors of independent roundings cancel); ``u = 2⁻²⁴`` is float32's unit roundoff;
* a network of ``depth`` such layers in a chain adds one such error per layer, carried forward by layers that
  neither amplify nor shrink activations much (BatchNorm keeps them normalised), so the errors of two orders differ
  by at most about ``depth·√n·u·scale``, with ``scale`` the magnitude of the activations.

:func:`reordering_tolerance` is that bound, with ``depth`` the longest chain of convolutions from the input to an
output and ``n`` the longest accumulation of any convolution, both read from the network definition itself
(:func:`conv_arithmetic`), and ``scale`` the largest magnitude among the outputs compared. It is orders of magnitude
tighter than any real defect: a transposed layout, a missing layer, a wrong weight or a wrong permutation moves the
outputs by a sizeable fraction of their magnitude (tests/network/executor/test_program_options.py shows both
sides). A two-class softmax score moves by at most a quarter of the change in the difference of its two logits
(dp/d(z₁ − z₀) = p(1 − p) ≤ ¼), so a score is within ¼ · 2 = ½ of the logits' bound (:func:`score_tolerance`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

UNIT_ROUNDOFF = 2.0 ** -24      # float32: half the distance from 1.0 to the next float


@dataclass(frozen=True)
class ConvArithmetic:
    """What a chain of float32 convolutions sums: its longest chain and its longest single accumulation."""

    depth: int
    accumulation: int

    def relative(self) -> float:
        """The bound on the difference of two summation orders, relative to the activations' magnitude."""
        return self.depth * math.sqrt(self.accumulation) * UNIT_ROUNDOFF


def conv_arithmetic(network) -> ConvArithmetic:
    """The longest chain of convolutions (input to any output) and the largest accumulation length of one
    convolution (input channels per group × kernel area) of a TensorRT-style network definition, read through the
    public API (``num_layers``, ``get_layer``, ``get_input``, ``kernel_size_nd``, ``num_groups``)."""
    depth_of: dict[int, int] = {}      # id(tensor) -> convolutions on the longest path that produced it
    accumulation = 1
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        inputs = [layer.get_input(i) for i in range(layer.num_inputs)]
        depth = max((depth_of.get(id(t), 0) for t in inputs if t is not None), default=0)
        if hasattr(layer, "kernel_size_nd") and hasattr(layer, "num_groups"):      # convolution / deconvolution
            depth += 1
            channels = inputs[0].shape[1]
            accumulation = max(accumulation, channels // layer.num_groups * math.prod(layer.kernel_size_nd))
        for i in range(layer.num_outputs):
            depth_of[id(layer.get_output(i))] = depth
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    return ConvArithmetic(depth=max(depth_of[id(t)] for t in outputs), accumulation=accumulation)


def magnitude(*tensors) -> float:
    """The largest absolute value among the tensors (PyTorch or NumPy)."""
    return max(float(np.abs(np.asarray(t, dtype=np.float64)).max()) for t in tensors)


def reordering_tolerance(arithmetic: ConvArithmetic, *tensors) -> float:
    """Absolute bound on the difference between two float32 evaluations of ``arithmetic`` whose outputs are
    ``tensors`` (any of them; the scale is their largest magnitude)."""
    return arithmetic.relative() * magnitude(*tensors)


def retinaface_tolerance(network, outputs) -> float:
    """The bound of :func:`reordering_tolerance` for RetinaFace's ``(loc, conf, landms)`` outputs of ``network``
    (an executor network definition), at the scale of ``loc`` and ``landms``: the activations the three heads read.
    ``conf`` is a softmax of logits of that scale, so its own difference is within the same bound (¼ of twice it)."""
    loc, _, landms = outputs
    return reordering_tolerance(conv_arithmetic(network), loc, landms)


def score_tolerance(logit_tolerance: float) -> float:
    """The bound on a two-class softmax score when each logit is within ``logit_tolerance``: ¼ · 2 of it."""
    return 0.5 * logit_tolerance
