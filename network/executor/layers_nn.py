"""Convolution, pooling, scale, activation and softmax layers, with TensorRT's documented semantics."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from network.executor.enums import (ActivationType, DataType, LayerType, PaddingMode, PoolingType,
                                    ScaleMode, coerce)
from network.executor.graph import Attr, ILayer, TensorInfo
from network.executor.values import TORCH_DTYPES, as_dims, as_weights


def _spatial(layer) -> int:
    return len(layer.kernel_size_nd if hasattr(layer, "kernel_size_nd") else layer.window_size_nd)


def _padding_setter(layer, value):
    dims = as_dims(value)
    layer._attrs["pre_padding"] = dims
    layer._attrs["post_padding"] = dims
    return dims


class _Windowed(ILayer):
    """Shared by convolution and pooling: stride, padding and the output-size rule of ``padding_mode``."""

    stride_nd = Attr(lambda l: (1,) * _spatial(l), as_dims)
    pre_padding = Attr(lambda l: (0,) * _spatial(l), as_dims)
    post_padding = Attr(lambda l: (0,) * _spatial(l), as_dims)
    padding_mode = Attr(PaddingMode.EXPLICIT_ROUND_DOWN, lambda v: coerce(v, PaddingMode))

    @property
    def padding_nd(self):
        return self.pre_padding

    @padding_nd.setter
    def padding_nd(self, value):
        _padding_setter(self, value)
        self._network._changed()

    def _window(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _pads(self, size: int, axis: int) -> tuple[int, int]:
        """(before, after) padding of spatial ``axis`` for an input of ``size``."""
        stride, k = self.stride_nd[axis], self._window()[axis]
        if self.padding_mode in (PaddingMode.SAME_UPPER, PaddingMode.SAME_LOWER):
            total = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
            small, large = total // 2, total - total // 2
            return (small, large) if self.padding_mode == PaddingMode.SAME_UPPER else (large, small)
        return self.pre_padding[axis], self.post_padding[axis]

    def _out_size(self, size: int, axis: int) -> int:
        if size < 0:
            return -1
        before, after = self._pads(size, axis)
        span = size + before + after - self._window()[axis]
        if self.padding_mode == PaddingMode.EXPLICIT_ROUND_UP:
            return -(-span // self.stride_nd[axis]) + 1
        return span // self.stride_nd[axis] + 1

    def _check_rank(self, info: TensorInfo) -> None:
        if len(info.shape) != 2 + _spatial(self):
            raise self._error(f"expected a {2 + _spatial(self)}-D NCHW input, got shape {info.shape}")

    def _pad_fn(self, inputs, value=0.0):
        """A function padding the spatial dims as the layer's rule says (sizes read at run time)."""
        def pad(x):
            pads = []
            for axis in reversed(range(_spatial(self))):
                pads += self._pads(x.shape[2 + axis], axis)
            return F.pad(x, pads, value=value) if any(pads) else x
        return pad


class IConvolutionLayer(_Windowed):
    """Cross-correlation; kernel layout [K, C/G, R, S] (GKCRS), bias per output map or empty."""

    _type = LayerType.CONVOLUTION
    num_output_maps = Attr(None, int)
    kernel_size_nd = Attr(None, as_dims)
    dilation_nd = Attr(lambda l: (1,) * _spatial(l), as_dims)
    num_groups = Attr(1, int)
    kernel = Attr(None, as_weights)
    bias = Attr(None, as_weights)

    def _window(self):
        return tuple(d * (k - 1) + 1 for d, k in zip(self.dilation_nd, self.kernel_size_nd))

    def _infer(self, inputs):
        (x,) = inputs[:1]
        self._check_rank(x)
        if len(inputs) > 2:
            raise self._error("the executor takes the bias as weights, not as input 2")
        spatial = tuple(self._out_size(s, i) for i, s in enumerate(x.shape[2:]))
        return [TensorInfo((x.shape[0], self.num_output_maps) + spatial, x.dtype)]

    def _kernel_shape(self, channels: int) -> tuple[int, ...]:
        """[K, C/G, R, S] for ``channels`` input channels; ValueError if they do not divide into the groups."""
        groups = self.num_groups
        if channels < 0 or channels % groups or self.num_output_maps % groups:
            raise self._error(f"{channels} input channels and {self.num_output_maps} maps are not divisible "
                              f"into {groups} groups")
        return (self.num_output_maps, channels // groups) + self.kernel_size_nd

    def _compile(self, inputs, device):
        x, groups = inputs[0], self.num_groups
        shape = self._kernel_shape(x.shape[1])
        bias = _tensor(self, "bias", self.bias, (self.num_output_maps,), x.dtype, device, optional=True)
        pad = self._pad_fn(inputs)
        conv = F.conv2d if len(self.kernel_size_nd) == 2 else F.conv3d
        stride, dilation = self.stride_nd, self.dilation_nd
        if len(inputs) > 1:          # the kernel is input 1 (a tensor, e.g. dequantized weights)
            self._check_kernel_input(inputs[1], shape, x.dtype)
            return lambda xs: [conv(pad(xs[0]), xs[1], bias, stride, 0, dilation, groups)]
        weight = _tensor(self, "kernel", self.kernel, shape, x.dtype, device)
        return lambda xs: [conv(pad(xs[0]), weight, bias, stride, 0, dilation, groups)]

    def _check_kernel_input(self, kernel: TensorInfo, shape: tuple[int, ...], dtype: DataType) -> None:
        if self.kernel is not None and self.kernel.size:
            raise self._error("kernel weights must be empty when input 1 gives the kernel")
        if kernel.shape != shape or kernel.dtype != dtype:
            raise self._error(f"the kernel input must be {dtype.name} {shape}, got {kernel.dtype.name} {kernel.shape}")


class IPoolingLayer(_Windowed):
    """Max or average pooling. Max pooling never selects a padded position."""

    _type = LayerType.POOLING
    type = Attr(PoolingType.MAX, lambda v: coerce(v, PoolingType))
    window_size_nd = Attr(None, as_dims)
    average_count_excludes_padding = Attr(True, bool)

    def _window(self):
        return self.window_size_nd

    def _infer(self, inputs):
        x = inputs[0]
        self._check_rank(x)
        return [TensorInfo(x.shape[:2] + tuple(self._out_size(s, i) for i, s in enumerate(x.shape[2:])),
                           x.dtype)]

    def _compile(self, inputs, device):
        if self.type != PoolingType.MAX or len(self.window_size_nd) != 2:
            raise self._error("the executor runs 2-D max pooling only")
        pad = self._pad_fn(inputs, value=-math.inf)
        window, stride = self.window_size_nd, self.stride_nd
        return lambda xs: [F.max_pool2d(pad(xs[0]), window, stride)]


class IScaleLayer(ILayer):
    """``output = (input * scale + shift) ** power``; empty weights mean scale 1, shift 0, power 1."""

    _type = LayerType.SCALE
    mode = Attr(ScaleMode.UNIFORM, lambda v: coerce(v, ScaleMode))
    shift = Attr(None, as_weights)
    scale = Attr(None, as_weights)
    power = Attr(None, as_weights)
    channel_axis = Attr(lambda l: len(l._network._info(l._inputs[0]).shape) - 3, int)

    def _infer(self, inputs):
        return [inputs[0]]

    def _compile(self, inputs, device):
        x = inputs[0]
        if len(x.shape) < 3:
            raise self._error(f"scale needs an input of at least 3 dims, got {x.shape}")
        axis, rank = self.channel_axis, len(x.shape)
        if self.mode == ScaleMode.UNIFORM:
            shape = (1,) * rank
        elif self.mode == ScaleMode.CHANNEL:
            shape = tuple(x.shape[axis] if i == axis else 1 for i in range(rank))
        else:
            shape = (1,) * axis + tuple(x.shape[axis:])
        scale, shift, power = (_tensor(self, n, getattr(self, n), shape, x.dtype, device, optional=True)
                               for n in ("scale", "shift", "power"))

        def run(xs):
            y = xs[0] if scale is None else xs[0] * scale
            y = y if shift is None else y + shift
            return [y if power is None else torch.pow(y, power)]
        return run


class IActivationLayer(ILayer):
    """RELU, SIGMOID, TANH, LEAKY_RELU (x >= 0 ? x : alpha·x), CLIP (max(alpha, min(beta, x)))."""

    _type = LayerType.ACTIVATION
    type = Attr(ActivationType.RELU, lambda v: coerce(v, ActivationType))
    alpha = Attr(0.0, float)
    beta = Attr(0.0, float)

    def _infer(self, inputs):
        return [inputs[0]]

    def _compile(self, inputs, device):
        kind, alpha, beta = self.type, self.alpha, self.beta
        if kind in (ActivationType.LEAKY_RELU, ActivationType.CLIP) and "alpha" not in self._attrs:
            # TensorRT does not document the default alpha: relying on it is a bug on real TensorRT.
            raise self._error(f"{kind.name} needs alpha set explicitly (its default is undocumented)")
        if kind == ActivationType.CLIP and "beta" not in self._attrs:
            raise self._error("CLIP needs beta set explicitly")
        functions = {
            ActivationType.RELU: torch.relu,
            ActivationType.SIGMOID: torch.sigmoid,
            ActivationType.TANH: torch.tanh,
            ActivationType.LEAKY_RELU: lambda x: F.leaky_relu(x, alpha),
            ActivationType.CLIP: lambda x: torch.clamp(x, alpha, beta),
        }
        fn = functions[kind]
        return lambda xs: [fn(xs[0])]


class ISoftMaxLayer(ILayer):
    """Softmax along the one axis set in the ``axes`` bitmask (default: rank - 3, or 0 below rank 3)."""

    _type = LayerType.SOFTMAX
    axes = Attr(lambda l: 1 << max(len(l._network._info(l._inputs[0]).shape) - 3, 0), int)

    def _infer(self, inputs):
        return [inputs[0]]

    def _compile(self, inputs, device):
        axes = self.axes
        if axes <= 0 or axes & (axes - 1) or axes >= 1 << len(inputs[0].shape):
            raise self._error(f"axes must have exactly one bit set below the rank, got {axes:#b}")
        dim = axes.bit_length() - 1
        return lambda xs: [torch.softmax(xs[0], dim=dim)]


def _tensor(layer, what, weights, shape, dtype: DataType, device, optional=False):
    """Weights as a torch tensor of ``shape``, checked for count and (strong typing) element type."""
    if weights is None or weights.size == 0:
        if optional:
            return None
        raise layer._error(f"{what} weights are empty")
    expected = math.prod(shape)
    if weights.size != expected:
        raise layer._error(f"{what} weights has count {weights.size} but {expected} was expected "
                           f"(shape {shape})")
    if weights.dtype != dtype:
        raise layer._error(f"{what} weights are {weights.dtype.name} but the input is {dtype.name}; "
                           "a strongly typed network needs them to match")
    array = weights.numpy().reshape(shape)
    return torch.from_numpy(array.copy()).to(device=device, dtype=TORCH_DTYPES[dtype])
