"""Unary and reduce layers, with TensorRT's documented semantics (``NvInfer.h``: ``IUnaryLayer``, ``IReduceLayer``)."""

from __future__ import annotations

import math

import torch

from network.executor.enums import DataType, LayerType, ReduceOperation, UnaryOperation, coerce
from network.executor.graph import Attr, ILayer, TensorInfo

_UNARY = {
    UnaryOperation.EXP: torch.exp,
    UnaryOperation.LOG: torch.log,
    UnaryOperation.SQRT: torch.sqrt,
    UnaryOperation.RECIP: torch.reciprocal,
    UnaryOperation.ABS: torch.abs,
    UnaryOperation.NEG: torch.neg,
    UnaryOperation.CEIL: torch.ceil,
    UnaryOperation.FLOOR: torch.floor,
}
_ANY_NUMBER = (UnaryOperation.ABS, UnaryOperation.NEG)     # the others take floating-point inputs only
_FLOAT_TYPES = (DataType.FLOAT, DataType.HALF)
_NUMBER_TYPES = _FLOAT_TYPES + (DataType.INT8, DataType.INT32, DataType.INT64)


class IUnaryLayer(ILayer):
    """One element-wise operation of ``UnaryOperation`` (EXP, LOG, SQRT, RECIP, ABS, NEG, CEIL, FLOOR)."""

    _type = LayerType.UNARY
    op = Attr(UnaryOperation.EXP, lambda v: coerce(v, UnaryOperation))

    def _infer(self, inputs):
        (x,) = inputs
        allowed = _NUMBER_TYPES if self.op in _ANY_NUMBER else _FLOAT_TYPES
        if x.dtype not in allowed:
            raise self._error(f"{self.op.name} does not take {x.dtype.name} inputs")
        return [x]

    def _compile(self, inputs, device):
        fn = _UNARY[self.op]
        return lambda xs: [fn(xs[0])]


# The result of reducing an empty volume of floating-point type (NvInfer.h, ReduceOperation).
_EMPTY = {ReduceOperation.SUM: 0.0, ReduceOperation.PROD: 1.0, ReduceOperation.MAX: -math.inf,
          ReduceOperation.MIN: math.inf, ReduceOperation.AVG: math.nan}


class IReduceLayer(ILayer):
    """SUM, PROD, MAX, MIN or AVG over the dims set in the ``axes`` bitmask; ``keep_dims`` keeps them as 1."""

    _type = LayerType.REDUCE
    op = Attr(ReduceOperation.SUM, lambda v: coerce(v, ReduceOperation))
    axes = Attr(1, int)
    keep_dims = Attr(False, bool)

    def _dims(self, rank: int) -> tuple[int, ...]:
        if self.axes <= 0 or self.axes >= 1 << rank:
            raise self._error(f"axes {self.axes:#b} must select dims below the rank {rank}")
        return tuple(d for d in range(rank) if self.axes >> d & 1)

    def _infer(self, inputs):
        (x,) = inputs
        if x.dtype not in _NUMBER_TYPES:
            raise self._error(f"reduce does not take {x.dtype.name} inputs")
        dims = self._dims(len(x.shape))
        shape = tuple(1 if i in dims else d for i, d in enumerate(x.shape) if self.keep_dims or i not in dims)
        return [TensorInfo(shape, x.dtype)]

    def _compile(self, inputs, device):
        dims, keep, op = self._dims(len(inputs[0].shape)), self.keep_dims, self.op

        def run(xs):
            x = xs[0]
            if x.numel() == 0:
                shape = [1 if i in dims else d for i, d in enumerate(x.shape) if keep or i not in dims]
                return [torch.full(shape, _EMPTY[op], dtype=x.dtype, device=x.device)]
            return [_reduce(x, op, dims, keep).to(x.dtype)]   # torch sums int32 into int64
        return run


def _reduce(x, op: ReduceOperation, dims: tuple[int, ...], keep: bool):
    if op == ReduceOperation.SUM:
        return x.sum(dim=dims, keepdim=keep)
    if op == ReduceOperation.MAX:
        return x.amax(dim=dims, keepdim=keep)
    if op == ReduceOperation.MIN:
        return x.amin(dim=dims, keepdim=keep)
    if op == ReduceOperation.AVG:
        return x.mean(dim=dims, keepdim=keep)
    for dim in sorted(dims, reverse=True):      # torch.prod takes one dim at a time
        x = x.prod(dim=dim, keepdim=keep)
    return x
