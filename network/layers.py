"""Primitive layers added through whatever ``trt`` namespace the network is built with.

:class:`LayerBuilder` wraps a network definition, the ``trt`` module and the :class:`WeightStore`; each method adds
one PyTorch-equivalent operation, sets every attribute whose default matters, names the layer after the
PyTorch module path, and returns the output tensor. With a ``quantization`` handler (:mod:`network.quantize`)
:meth:`LayerBuilder.conv` and :meth:`LayerBuilder.residual_add` consult it at each point: an observer records the
input tensors, a quantizer inserts the Q/DQ layers of explicit INT8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from network import quantize
from network.config import RetinaFaceConfig
from network.weights import WeightStore


@dataclass
class LayerBuilder:
    trt: Any                  # the tensorrt module, or network.executor.trt
    network: Any              # an INetworkDefinition of that namespace
    weights: WeightStore
    cfg: RetinaFaceConfig
    quantization: Any = None  # None (float), a network.quantize.Quantizer or ActivationObserver

    @property
    def weight_type(self):
        """TensorRT type of weights and activations (HALF in a strongly typed FP16 network)."""
        return self.trt.float16 if self.weights.dtype == np.float16 else self.trt.float32

    def _weights(self, array: np.ndarray | None):
        return self.trt.Weights(array) if array is not None else self.trt.Weights(self.weight_type)

    def _named(self, layer, name: str):
        layer.name = name
        return layer.get_output(0)

    def conv(self, x, key: str, out_channels: int, kernel: int, stride: int = 1, padding: int = 0,
             groups: int = 1, bias: bool = False, bn: str | None = None):
        """``nn.Conv2d`` with weights ``key.weight`` (and ``key.bias``), square kernel, symmetric padding; then
        the BatchNorm ``bn`` (a state_dict prefix) if given. Quantized (explicit INT8), the BatchNorm is folded
        into the weights and the input and weights get Q/DQ layers (:mod:`network.quantize`)."""
        q = self.quantization
        if q is not None:
            x = q.activation(self, key, x)
        shape = (out_channels, x.shape[1] // groups, kernel, kernel)
        if q is not None and q.quantizes(key):
            return self._quantized_conv(x, key, shape, stride, padding, groups, bias, bn)
        weight = self.weights.take(f"{key}.weight", shape)
        bias_array = self.weights.take(f"{key}.bias", (out_channels,)) if bias else None
        y = self._convolution(x, key, shape, self._weights(weight), self._weights(bias_array), stride, padding, groups)
        return self.batch_norm(y, bn) if bn else y

    def _quantized_conv(self, x, key: str, shape, stride: int, padding: int, groups: int, bias: bool, bn: str | None):
        kernel = self.weights.take_raw(f"{key}.weight", shape)
        bias_array = self.weights.take_raw(f"{key}.bias", shape[:1]) if bias else None
        if bn:
            kernel, bias_array = quantize.fold_batch_norm(kernel, bias_array, *self._bn_scale_shift(bn, shape[0]))
        quantized = quantize.quantized_kernel(self, kernel, f"{key}.weight", self.quantization.plan.typed)
        bias_weights = self._weights(None if bias_array is None else self.weights.own(bias_array))
        return self._convolution(x, key, shape, self.trt.Weights(self.weight_type), bias_weights, stride, padding,
                                 groups, kernel_input=quantized)

    def _convolution(self, x, key: str, shape, kernel, bias, stride: int, padding: int, groups: int,
                     kernel_input=None):
        """The IConvolutionLayer of a kernel ``shape`` [K, C/G, R, S] with every attribute set; the kernel is
        ``kernel`` (Weights), or the tensor ``kernel_input`` (input 1) when given (``kernel`` is then empty)."""
        layer = self.network.add_convolution_nd(x, shape[0], tuple(shape[2:]), kernel, bias)
        layer.stride_nd = (stride, stride)
        layer.padding_nd = (padding, padding)
        layer.dilation_nd = (1, 1)
        layer.num_groups = groups
        layer.padding_mode = self.trt.PaddingMode.EXPLICIT_ROUND_DOWN
        if kernel_input is not None:
            layer.set_input(1, kernel_input)
        return self._named(layer, key)

    def _bn_scale_shift(self, key: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """Inference BatchNorm ``key`` as float64 (scale, shift): γ/√(var+eps) and β − mean·γ/√(var+eps)."""
        shape = (channels,)
        gamma, beta = self.weights.take_raw(f"{key}.weight", shape), self.weights.take_raw(f"{key}.bias", shape)
        mean = self.weights.take_raw(f"{key}.running_mean", shape)
        var = self.weights.take_raw(f"{key}.running_var", shape)
        scale = gamma / np.sqrt(var + self.cfg.bn_eps)
        return scale, beta - mean * scale

    def batch_norm(self, x, key: str):
        """Inference BatchNorm as a per-channel scale: y = x·γ/√(var+eps) + (β − mean·γ/√(var+eps))."""
        scale, shift = self._bn_scale_shift(key, x.shape[1])
        layer = self.network.add_scale(x, self.trt.ScaleMode.CHANNEL, self._weights(self.weights.own(shift)),
                                       self._weights(self.weights.own(scale)), self._weights(None))
        return self._named(layer, key)

    def leaky_relu(self, x, slope: float, name: str):
        """``LeakyReLU(slope)``; slope 0 is a plain ReLU."""
        if slope == 0.0:
            layer = self.network.add_activation(x, self.trt.ActivationType.RELU)
        else:
            layer = self.network.add_activation(x, self.trt.ActivationType.LEAKY_RELU)
            layer.alpha = slope  # the default alpha is undocumented: always set it
        return self._named(layer, name)

    def max_pool(self, x, kernel: int, stride: int, padding: int, name: str):
        """``nn.MaxPool2d``; only used after a ReLU, where zero and -inf padding give the same result."""
        layer = self.network.add_pooling_nd(x, self.trt.PoolingType.MAX, (kernel, kernel))
        layer.stride_nd = (stride, stride)
        layer.padding_nd = (padding, padding)
        layer.padding_mode = self.trt.PaddingMode.EXPLICIT_ROUND_DOWN
        return self._named(layer, name)

    def add(self, a, b, name: str):
        return self._named(self.network.add_elementwise(a, b, self.trt.ElementWiseOperation.SUM), name)

    def residual_add(self, y, shortcut, name: str):
        """``y + shortcut`` of a residual block; quantized, the shortcut gets a Q/DQ pair (point ``name``)."""
        if self.quantization is not None:
            shortcut = self.quantization.activation(self, name, shortcut)
        return self.add(y, shortcut, name)

    def concat(self, tensors, axis: int, name: str):
        layer = self.network.add_concatenation(list(tensors))
        layer.axis = axis  # the default (rank - 3) is wrong for the 3-D head outputs
        return self._named(layer, name)

    def upsample_like(self, x, like, name: str):
        """Nearest resize of ``x`` to the exact shape of ``like`` (PyTorch ``interpolate(size=...)``).

        The source index is floor(dst · in / out), which is right for any input size, not only multiples of
        32. A shape only known at run time comes from a shape tensor of ``like``, cast to Int32 when
        ``IShapeLayer`` gives Int64 (10.x, 11.x): the 10.0-10.3 headers ask the resize for an Int32 shape
        tensor, 8.6 has nothing else, later versions take either.
        """
        target = tuple(like.shape)
        layer = self.network.add_resize(x)
        if all(d >= 0 for d in target):
            layer.shape = target
        else:
            shape = self._named(self.network.add_shape(like), f"{name}.size")
            if shape.dtype != self.trt.int32:
                shape = self.cast(shape, self.trt.int32, f"{name}.size.int32")
            layer.set_input(1, shape)
        layer.resize_mode = self.trt.InterpolationMode.NEAREST
        layer.coordinate_transformation = self.trt.ResizeCoordinateTransformation.ASYMMETRIC
        layer.nearest_rounding = self.trt.ResizeRoundMode.FLOOR
        layer.selector_for_single_pixel = self.trt.ResizeSelector.FORMULA
        return self._named(layer, name)

    def nhwc_flatten(self, x, values_per_anchor: int, name: str):
        """[N, A·k, H, W] → [N, H·W·A, k], PyTorch's ``permute(0, 2, 3, 1).view(N, -1, k)``."""
        layer = self.network.add_shuffle(x)
        layer.first_transpose = (0, 2, 3, 1)
        layer.zero_is_placeholder = True   # 0 copies the batch dim, which the permutation keeps in place
        layer.reshape_dims = (0, -1, values_per_anchor)
        return self._named(layer, name)

    def softmax(self, x, axis: int, name: str):
        layer = self.network.add_softmax(x)
        layer.axes = 1 << axis  # the default axis (rank - 3) would be the batch axis here
        return self._named(layer, name)

    def cast(self, x, dtype, name: str):
        return self._named(self.network.add_cast(x, dtype), name)
