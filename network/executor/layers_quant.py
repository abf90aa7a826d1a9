"""Quantize and dequantize layers (``IQuantizeLayer``, ``IDequantizeLayer``) with TensorRT's documented semantics.

From the docstrings of the TensorRT bindings (the same text for INT8 in 8.6, 10.x and 11.4):

* quantize: ``q = clamp(round(x / scale) + zeroPt)``, rounding half to even, clamped to [-128, 127], INT8 out;
* dequantize: ``x = (q - zeroPt) · scale``;
* input 1, the scale: a build-time constant, a scalar (0-D: per-tensor) or 1-D with one value per index of
  dimension ``axis`` of the input (per-axis); input 2, the zero point: optional, INT8, of the scale's shape,
  all zeros ("only symmetric quantization is supported");
* the floating-point side (the input of quantize, the output of dequantize) is FLOAT or HALF, and the scale
  has that type (strong typing). The division and product are computed in float32.

Where the documentation leaves something open the executor refuses instead of guessing: a per-axis scale whose
``axis`` was never set (the default axis is not documented), a scale that is not positive and finite, a zero
point that is not all zeros, and output types other than INT8 (FP8, INT4, FP4 are not emulated). Whether the
scale is a build-time constant is checked by :class:`network.executor.Program` (``_constant_inputs``).
"""

from __future__ import annotations

import torch

from network.executor.enums import DataType, LayerType, coerce
from network.executor.graph import Attr, ILayer, TensorInfo
from network.executor.values import TORCH_DTYPES

INT8_RANGE = (-128, 127)
_FLOAT_TYPES = (DataType.FLOAT, DataType.HALF)


class _QuantizeBase(ILayer):
    """What quantize and dequantize share: the scale (input 1), the zero point (input 2) and the axis."""

    axis = Attr(0, int)
    to_type = Attr(None, lambda v: coerce(v, DataType))
    _constant_inputs = (1, 2)       # TensorRT: "must be a build-time constant"

    def _check(self, x: TensorInfo, scales: list[TensorInfo], float_type: DataType) -> None:
        scale = scales[0]
        if scale.dtype != float_type:
            raise self._error(f"the scale is {scale.dtype.name} but the floating-point side is {float_type.name}; "
                              "a strongly typed network needs them to match")
        if len(scale.shape) > 1:
            raise self._error(f"the scale must be a scalar (per-tensor) or 1-D (per-axis), got shape {scale.shape}")
        if len(scale.shape) == 1:
            self._check_axis(x, scale.shape[0])
        if len(scales) > 1 and (scales[1].dtype != DataType.INT8 or scales[1].shape != scale.shape):
            raise self._error(f"the zero point must be INT8 of the scale's shape {scale.shape}, got "
                              f"{scales[1].dtype.name} {scales[1].shape}")

    def _check_axis(self, x: TensorInfo, count: int) -> None:
        if "axis" not in self._attrs:
            raise self._error("a per-axis scale needs axis set explicitly (TensorRT does not document its default)")
        if not 0 <= self.axis < len(x.shape):
            raise self._error(f"axis {self.axis} is out of range for an input of shape {x.shape}")
        if x.shape[self.axis] not in (count, -1):
            raise self._error(f"the scale has {count} values but dimension {self.axis} of the input has "
                              f"{x.shape[self.axis]}")

    def _scale_fn(self, rank: int):
        """``fn(scale tensor, zero point or None) -> float32 scale shaped to broadcast over the input``.

        The scale and zero point are build-time constants (the program checks it), the same tensors at every
        run: they are checked and shaped on the first run only, as the checks wait for the device, which a run
        captured in a CUDA graph must not do."""
        axis, shaped = self.axis, {}

        def scale_of(scale: torch.Tensor, zero_point) -> torch.Tensor:
            key = (scale.data_ptr(), None if zero_point is None else zero_point.data_ptr())
            if key not in shaped:
                if not bool(torch.isfinite(scale).all() and (scale > 0).all()):
                    raise self._error(f"scales must be positive and finite, got {scale.flatten()[:4].tolist()}")
                if zero_point is not None and bool(zero_point.any()):
                    raise self._error("the zero point must be all zeros (TensorRT quantizes symmetrically only)")
                shaped[key] = scale.float() if scale.dim() == 0 else \
                    scale.float().reshape([-1 if d == axis else 1 for d in range(rank)])
            return shaped[key]
        return scale_of


class IQuantizeLayer(_QuantizeBase):
    """FLOAT or HALF → INT8: ``clamp(round_half_to_even(x / scale), -128, 127)``."""

    _type = LayerType.QUANTIZE

    def _infer(self, inputs):
        x = inputs[0]
        if x.dtype not in _FLOAT_TYPES:
            raise self._error(f"quantize takes FLOAT or HALF inputs, got {x.dtype.name}")
        if self.to_type != DataType.INT8:
            raise self._error(f"the executor quantizes to INT8 only, not {getattr(self.to_type, 'name', None)}")
        self._check(x, inputs[1:], x.dtype)
        return [TensorInfo(x.shape, DataType.INT8)]

    def _compile(self, inputs, device):
        scale_of = self._scale_fn(len(inputs[0].shape))
        low, high = INT8_RANGE

        def run(xs):
            scale = scale_of(xs[1], xs[2] if len(xs) > 2 else None)
            return [torch.round(xs[0].float() / scale).clamp_(low, high).to(torch.int8)]
        return run


class IDequantizeLayer(_QuantizeBase):
    """INT8 → FLOAT or HALF: ``q · scale``."""

    _type = LayerType.DEQUANTIZE

    def _infer(self, inputs):
        q = inputs[0]
        if q.dtype != DataType.INT8:
            raise self._error(f"dequantize takes INT8 inputs, got {q.dtype.name}")
        if self.to_type not in _FLOAT_TYPES:
            raise self._error(f"dequantize outputs FLOAT or HALF, not {getattr(self.to_type, 'name', None)}")
        self._check(q, inputs[1:], self.to_type)
        return [TensorInfo(q.shape, self.to_type)]

    def _compile(self, inputs, device):
        scale_of = self._scale_fn(len(inputs[0].shape))
        dtype = TORCH_DTYPES[self.to_type]
        return lambda xs: [(xs[0].float() * scale_of(xs[1], xs[2] if len(xs) > 2 else None)).to(dtype)]
