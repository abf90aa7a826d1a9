"""An inference compilation of an executor network: BatchNorm folded into convolutions, float16, channels-last.

:class:`FusedProgram` walks the recorded layers once (topological order, only what the outputs need) and
builds a flat list of steps:

* an ``IConvolutionLayer`` (2-D) whose only consumer is an ``IScaleLayer`` in CHANNEL mode on axis 1 with
  no power is folded with it: ``w' = w·scale[k]``, ``b' = b·scale + shift`` (computed in float64, then cast);
  explicit symmetric padding goes into the convolution call instead of a separate pad;
* a RELU / LEAKY_RELU that is the only consumer of such a convolution runs in place on its output;
* every other layer runs through its own ``_compile`` (the executor's semantics). A fallback layer that
  holds weights (an unfolded scale, a constant) runs in float32 and its result is cast back.

The network must be a float32 one; ``dtype=torch.float16`` converts the folded weights and runs every step
in float16 (outputs are returned as float32), which is what a TensorRT FP16 engine does. With
``channels_last`` 4-D activations are kept in NHWC memory order (same values, faster convolutions on GPUs).
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from network.executor.enums import ActivationType, LayerType, PaddingMode, ScaleMode
from network.executor.network_def import INetworkDefinition, topological_order
from network.executor.program import _needed_layers


class FusedProgram:
    """``FusedProgram(network, device, dtype, channels_last)(inputs) -> dict[name, float32 tensor]``.

    ``inputs`` maps input names to float32 tensors (moved to ``device`` and cast to ``dtype`` here).
    ``num_folded`` tells how many scale layers were folded into convolutions.
    """

    def __init__(self, network: INetworkDefinition, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, channels_last: bool = False):
        self.device, self.dtype, self.channels_last = torch.device(device), dtype, channels_last
        self._inputs = [(t.name, id(t)) for t in network._inputs]
        self._outputs = [(t.name, id(t)) for t in network._outputs]
        self._network = network
        needed = _needed_layers(network)
        order = topological_order([l for l in network._layers if id(l) in needed])
        self._consumers = _consumers(order, network)
        self.num_folded = 0
        self._steps = []
        absorbed: set[int] = set()
        for layer in order:
            if id(layer) not in absorbed:
                self._steps.append(self._step(layer, absorbed))

    @torch.inference_mode()
    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        values = {key: self._entry(inputs[name]) for name, key in self._inputs}
        for fn, input_keys, output_keys in self._steps:
            values.update(zip(output_keys, fn([values[k] for k in input_keys])))
        return {name: values[key].float() for name, key in self._outputs}

    def _entry(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def _step(self, layer, absorbed: set[int]):
        """(fn, input ids, output ids) for ``layer``; layers folded into it are added to ``absorbed``."""
        if layer._type == LayerType.CONVOLUTION and len(layer.kernel_size_nd) == 2:
            scale = self._only_consumer(layer, _foldable_scale)
            tail = scale or layer
            act = self._only_consumer(tail, _inplace_activation)
            for extra in (scale, act):
                if extra is not None:
                    absorbed.add(id(extra))
            self.num_folded += scale is not None
            fn = self._conv(layer, scale, act)
            return fn, [id(layer._inputs[0])], [id((act or tail)._outputs[0])]
        return self._fallback(layer), [id(t) for t in layer._inputs], [id(t) for t in layer._outputs]

    def _only_consumer(self, layer, accept):
        users = self._consumers.get(id(layer._outputs[0]), [])
        return users[0] if len(users) == 1 and users[0] is not None and accept(users[0]) else None

    def _conv(self, conv, scale, act):
        weight, bias = fold_conv_scale(conv, scale)
        weight = weight.to(self.device, self.dtype)
        if self.channels_last:
            weight = weight.contiguous(memory_format=torch.channels_last)
        bias = None if bias is None else bias.to(self.device, self.dtype)
        stride, dilation, groups = conv.stride_nd, conv.dilation_nd, conv.num_groups
        symmetric = conv.padding_mode == PaddingMode.EXPLICIT_ROUND_DOWN and conv.pre_padding == conv.post_padding
        padding = conv.pre_padding if symmetric else (0, 0)
        pad = (lambda x: x) if symmetric else conv._pad_fn(None)
        activate = _activation_fn(act)

        def run(xs):
            return [activate(F.conv2d(pad(xs[0]), weight, bias, stride, padding, dilation, groups))]
        return run

    def _fallback(self, layer):
        info = self._network._info
        fn = layer._compile([info(t) for t in layer._inputs], self.device)
        has_weights = layer._type in (LayerType.SCALE, LayerType.CONSTANT)
        dtype, channels_last = self.dtype, self.channels_last

        def run(xs):
            if has_weights and dtype != torch.float32:
                xs = [x.float() if x.is_floating_point() else x for x in xs]
            ys = fn(xs)
            return [_settle(y, dtype, channels_last) for y in ys]
        return run


def fold_conv_scale(conv, scale) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Kernel [K, C/G, R, S] and bias [K] (or None) of ``conv`` with the channel ``scale`` layer folded in.

    Folding is exact algebra (``(w*x + b)·s + t = (w·s)*x + (b·s + t)``), done in float64; float32 result.
    """
    maps = conv.num_output_maps
    weight = torch.from_numpy(conv.kernel.numpy().astype("float64")).reshape(maps, -1, *conv.kernel_size_nd)
    bias = torch.from_numpy(conv.bias.numpy().astype("float64")) if conv.bias.size else None
    if scale is not None:
        s = _channel_weights(scale.scale, maps, 1.0)
        t = _channel_weights(scale.shift, maps, 0.0)
        weight = weight * s.reshape(-1, 1, 1, 1)
        bias = t if bias is None else bias * s + t
    return weight.float(), None if bias is None else bias.float()


def _channel_weights(weights, count: int, empty: float) -> torch.Tensor:
    if weights is None or weights.size == 0:
        return torch.full((count,), empty, dtype=torch.float64)
    return torch.from_numpy(weights.numpy().astype("float64")).reshape(count)


def _foldable_scale(layer) -> bool:
    return (layer._type == LayerType.SCALE and layer.mode == ScaleMode.CHANNEL and layer.channel_axis == 1
            and (layer.power is None or layer.power.size == 0))


def _inplace_activation(layer) -> bool:
    return layer._type == LayerType.ACTIVATION and _activation_kind(layer) in _ACTIVATIONS


def _activation_kind(layer):
    # IActivationLayer's ``type`` property is its activation kind (the layer type is the class's ``_type``).
    return layer.type


_ACTIVATIONS = (ActivationType.RELU, ActivationType.LEAKY_RELU)


def _activation_fn(act):
    if act is None:
        return lambda y: y
    if _activation_kind(act) == ActivationType.RELU:
        return torch.relu_
    alpha = float(act.alpha)
    return lambda y: F.leaky_relu_(y, alpha)


def _settle(y: torch.Tensor, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    """Bring a fallback layer's output to the run dtype (floating tensors) and memory format (4-D)."""
    if y.is_floating_point() and y.dtype != dtype:
        y = y.to(dtype)
    if channels_last and y.dim() == 4 and y.is_floating_point():
        y = y.contiguous(memory_format=torch.channels_last)
    return y


def _consumers(order, network) -> dict[int, list]:
    """Tensor id → layers reading it; a network output counts as an extra (non-layer) consumer."""
    users: dict[int, list] = {}
    for layer in order:
        for t in layer._inputs:
            users.setdefault(id(t), []).append(layer)
    for t in network._outputs:
        users.setdefault(id(t), []).append(None)
    return users
