"""Element-wise, concatenation, shuffle, resize, shape, cast and constant layers."""

from __future__ import annotations

import math

import numpy as np
import torch

from network.executor.enums import (DataType, ElementWiseOperation, InterpolationMode, LayerType,
                                    ResizeCoordinateTransformation, ResizeRoundMode, ResizeSelector, coerce)
from network.executor.graph import Attr, ILayer, TensorInfo
from network.executor.values import TORCH_DTYPES, as_dims, as_weights

_ELEMENTWISE = {
    ElementWiseOperation.SUM: torch.add,
    ElementWiseOperation.PROD: torch.mul,
    ElementWiseOperation.MAX: torch.maximum,
    ElementWiseOperation.MIN: torch.minimum,
    ElementWiseOperation.SUB: torch.sub,
    ElementWiseOperation.DIV: torch.div,
}


class IElementWiseLayer(ILayer):
    """Binary operation with broadcasting: same rank, each dim equal or 1 in one of the inputs."""

    _type = LayerType.ELEMENTWISE
    op = Attr(ElementWiseOperation.SUM, lambda v: coerce(v, ElementWiseOperation))

    def _infer(self, inputs):
        a, b = inputs
        if len(a.shape) != len(b.shape):
            raise self._error(f"inputs must have the same rank, got {a.shape} and {b.shape}")
        if a.dtype != b.dtype:
            raise self._error(f"inputs must have the same type, got {a.dtype.name} and {b.dtype.name}")
        dims = []
        for p, q in zip(a.shape, b.shape):
            if p != q and 1 not in (p, q) and -1 not in (p, q):
                raise self._error(f"cannot broadcast {a.shape} with {b.shape}")
            dims.append(q if p == 1 else p if q == 1 else max(p, q))
        return [TensorInfo(tuple(dims), a.dtype)]

    def _compile(self, inputs, device):
        fn = _ELEMENTWISE[self.op]
        return lambda xs: [fn(xs[0], xs[1])]


class IConcatenationLayer(ILayer):
    """Concatenation along ``axis`` (default: rank - 3, or 0 below rank 3)."""

    _type = LayerType.CONCATENATION
    axis = Attr(lambda l: max(len(l._network._info(l._inputs[0]).shape) - 3, 0), int)

    def _infer(self, inputs):
        first, axis = inputs[0], self.axis
        if not 0 <= axis < len(first.shape):
            raise self._error(f"axis {axis} is out of range for rank {len(first.shape)}")
        total = 0
        for info in inputs:
            other = [d for i, d in enumerate(info.shape) if i != axis]
            if len(info.shape) != len(first.shape) or info.dtype != first.dtype or \
                    other != [d for i, d in enumerate(first.shape) if i != axis]:
                raise self._error(f"inputs {first.shape} and {info.shape} differ outside axis {axis}")
            total = -1 if total < 0 or info.shape[axis] < 0 else total + info.shape[axis]
        return [TensorInfo(first.shape[:axis] + (total,) + first.shape[axis + 1:], first.dtype)]

    def _compile(self, inputs, device):
        axis = self.axis
        return lambda xs: [torch.cat(xs, dim=axis)]


class IShuffleLayer(ILayer):
    """first_transpose, then reshape, then second_transpose (numpy ``transpose`` semantics)."""

    _type = LayerType.SHUFFLE
    first_transpose = Attr(None, as_dims)
    reshape_dims = Attr(None, as_dims)
    second_transpose = Attr(None, as_dims)
    zero_is_placeholder = Attr(True, bool)

    def _target(self, source: tuple[int, ...], transposed: tuple[int, ...]) -> tuple[int, ...]:
        """Reshape target with 0 placeholders resolved; -1 stays for inference."""
        dims = list(self.reshape_dims)
        for i, d in enumerate(dims):
            if d == 0 and self.zero_is_placeholder:
                if source[i] != transposed[i]:
                    # TensorRT does not document whether 0 copies the dim before or after first_transpose.
                    raise self._error(f"reshape placeholder 0 at position {i} is ambiguous: the input has "
                                      f"{source[i]} there before first_transpose and {transposed[i]} after")
                dims[i] = transposed[i]
        return tuple(dims)

    def _shapes(self, source):
        perm1 = self.first_transpose or tuple(range(len(source)))
        transposed = tuple(source[p] for p in perm1)
        shape = transposed if self.reshape_dims is None else self._target(source, transposed)
        perm2 = self.second_transpose or tuple(range(len(shape)))
        return perm1, transposed, shape, perm2

    def _infer(self, inputs):
        if len(inputs) > 1:
            raise self._error("the executor does not run shuffles with a dynamic reshape input")
        _, transposed, shape, perm2 = self._shapes(inputs[0].shape)
        if self.reshape_dims is not None and list(self.reshape_dims).count(-1) == 1:
            shape = self._infer_minus_one(transposed, shape)
        return [TensorInfo(tuple(shape[p] for p in perm2), inputs[0].dtype)]

    def _infer_minus_one(self, transposed, shape):
        """Resolve the one -1 of reshape_dims where the dims it depends on are known.

        Dims copied by a 0 placeholder cancel out, so [N, H, W, C] -> (0, -1, k) gives H·W·C/k even when N
        is only known at run time.
        """
        copied = {i for i, d in enumerate(self.reshape_dims) if d == 0 and self.zero_is_placeholder}
        rest_in = [d for i, d in enumerate(transposed) if i not in copied]
        rest_out = [d for i, d in enumerate(shape) if i not in copied and self.reshape_dims[i] != -1]
        if -1 in rest_in or -1 in rest_out:
            return shape
        inferred = math.prod(rest_in) // max(math.prod(rest_out), 1)
        return tuple(inferred if r == -1 else d for r, d in zip(self.reshape_dims, shape))

    def _compile(self, inputs, device):
        def run(xs):
            perm1, _, shape, perm2 = self._shapes(tuple(xs[0].shape))
            y = xs[0].permute(perm1) if self.first_transpose else xs[0]
            y = y.reshape(shape) if self.reshape_dims is not None else y
            return [y.permute(perm2) if self.second_transpose else y]
        return run


class IResizeLayer(ILayer):
    """Nearest-neighbour resize to ``shape``, ``floor(in * scales)`` or the value of input 1 (a shape tensor).

    Source index along each dim: the coordinate transformation maps the output index to a real source
    coordinate, then ``nearest_rounding`` rounds it, clamped to the input. With ASYMMETRIC + FLOOR this is
    ``floor(dst * in / out)``, the rule of PyTorch's ``mode="nearest"``.
    """

    _type = LayerType.RESIZE
    shape = Attr(None, as_dims)
    scales = Attr(None, lambda v: tuple(float(s) for s in v))
    resize_mode = Attr(InterpolationMode.NEAREST, lambda v: coerce(v, InterpolationMode))
    coordinate_transformation = Attr(ResizeCoordinateTransformation.ASYMMETRIC,
                                     lambda v: coerce(v, ResizeCoordinateTransformation))
    selector_for_single_pixel = Attr(ResizeSelector.FORMULA, lambda v: coerce(v, ResizeSelector))
    nearest_rounding = Attr(ResizeRoundMode.FLOOR, lambda v: coerce(v, ResizeRoundMode))
    exclude_outside = Attr(False, bool)
    cubic_coeff = Attr(-0.75, float)

    def _infer(self, inputs):
        x = inputs[0]
        if len(inputs) > 1:
            target = inputs[1].value
            if target is None:
                raise self._error("input 1 must be a shape tensor (for example the output of add_shape)")
        elif self.shape is not None:
            target = self.shape
        elif self.scales is not None:
            target = tuple(-1 if d < 0 else math.floor(d * s) for d, s in zip(x.shape, self.scales))
        else:
            return [TensorInfo((-1,) * len(x.shape), x.dtype)]  # not configured yet: checked at compile
        if len(target) != len(x.shape):
            raise self._error(f"output rank {len(target)} differs from input rank {len(x.shape)}")
        return [TensorInfo(tuple(target), x.dtype)]

    def _compile(self, inputs, device):
        if len(inputs) == 1 and self.shape is None and self.scales is None:
            raise self._error("set shape, scales or input 1 (a shape tensor) before building")
        if self.resize_mode != InterpolationMode.NEAREST:
            raise self._error("the executor runs NEAREST resizes only")
        cache: dict = {}

        def run(xs):
            x = xs[0]
            out = self._runtime_shape(xs)
            y = x
            for dim, (n_in, n_out) in enumerate(zip(x.shape, out)):
                if n_in != n_out:
                    key = (n_in, n_out, str(x.device))
                    if key not in cache:
                        cache[key] = torch.from_numpy(self._indices(n_in, n_out)).to(x.device)
                    y = y.index_select(dim, cache[key])
            return [y]
        return run

    def _runtime_shape(self, xs):
        if len(xs) > 1:
            return tuple(int(d) for d in xs[1].tolist())
        if self.shape is not None:
            return tuple(x if d < 0 else d for d, x in zip(self.shape, xs[0].shape))
        return tuple(math.floor(d * s) for d, s in zip(xs[0].shape, self.scales))

    def _indices(self, n_in: int, n_out: int) -> np.ndarray:
        dst = np.arange(n_out, dtype=np.float64)
        mode = self.coordinate_transformation
        if n_out == 1 and self.selector_for_single_pixel == ResizeSelector.UPPER:
            return np.zeros(1, np.int64)
        if mode == ResizeCoordinateTransformation.ASYMMETRIC:
            src = dst * n_in / n_out
        elif mode == ResizeCoordinateTransformation.HALF_PIXEL:
            src = (dst + 0.5) * n_in / n_out - 0.5
        else:
            src = dst * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros(1)
        rounding = {ResizeRoundMode.FLOOR: np.floor, ResizeRoundMode.CEIL: np.ceil,
                    ResizeRoundMode.HALF_UP: lambda v: np.floor(v + 0.5),
                    ResizeRoundMode.HALF_DOWN: lambda v: np.ceil(v - 0.5)}[self.nearest_rounding]
        return np.clip(rounding(src), 0, n_in - 1).astype(np.int64)


class IShapeLayer(ILayer):
    """The input's shape as a 1-D INT64 shape tensor (kept on the host, as TensorRT keeps shape tensors)."""

    _type = LayerType.SHAPE

    def _infer(self, inputs):
        shape = inputs[0].shape
        return [TensorInfo((len(shape),), DataType.INT64, value=shape)]

    def _compile(self, inputs, device):
        return lambda xs: [torch.tensor(tuple(xs[0].shape), dtype=torch.int64)]


class ICastLayer(ILayer):
    """Converts the input to ``to_type``; a shape tensor cast to an integer type stays a shape tensor."""

    _type = LayerType.CAST
    to_type = Attr(None, lambda v: coerce(v, DataType))

    def _infer(self, inputs):
        value = inputs[0].value if self.to_type in (DataType.INT32, DataType.INT64) else None
        return [TensorInfo(inputs[0].shape, self.to_type, value=value)]

    def _compile(self, inputs, device):
        dtype = TORCH_DTYPES[self.to_type]
        return lambda xs: [xs[0].to(dtype)]


class IConstantLayer(ILayer):
    """A constant tensor of ``shape`` holding ``weights`` (its type is the weights' type)."""

    _type = LayerType.CONSTANT
    shape = Attr(None, as_dims)
    weights = Attr(None, as_weights)

    def _infer(self, inputs):
        if self.weights.size != math.prod(self.shape):
            raise self._error(f"weights has count {self.weights.size} but shape {self.shape} needs "
                              f"{math.prod(self.shape)}")
        return [TensorInfo(self.shape, self.weights.dtype)]

    def _compile(self, inputs, device):
        value = torch.from_numpy(self.weights.numpy().reshape(self.shape).copy()).to(device)
        return lambda xs: [value]
