"""BatchNorm folding and in-place activations: the ``fold_batchnorm`` option of :class:`network.executor.Program`.

A 2-D ``IConvolutionLayer`` whose only consumer is an ``IScaleLayer`` in CHANNEL mode on axis 1 without
power absorbs it: ``(w * x + b)·s + t = (w·s) * x + (b·s + t)``, exact algebra done in float64 and cast to
float32. A RELU / LEAKY_RELU that is the only consumer of the result runs in place on the convolution's
output. Explicit symmetric padding goes into the convolution call instead of a separate pad.

A convolution whose kernel is its input 1 (dequantized weights, for example) is fused only when that kernel
is a build-time constant, and then absorbs no scale layer: folding a scale into weights that were quantized
would change them (TensorRT cannot fold it exactly either), so only its activation runs in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from network.executor.enums import ActivationType, LayerType, PaddingMode, ScaleMode

_IN_PLACE = {ActivationType.RELU: lambda alpha: torch.relu_,
             ActivationType.LEAKY_RELU: lambda alpha: lambda y: F.leaky_relu_(y, alpha)}


@dataclass
class FusedConvolution:
    """A convolution with what it absorbed: float32 weight [K, C/G, R, S] and bias [K] (or None) on the CPU."""

    conv: object
    weight: torch.Tensor
    bias: torch.Tensor | None
    absorbed: list            # the scale and activation layers folded in
    folded: int               # 1 when a scale layer was folded
    output: object            # the tensor the fused step produces

    def runner(self, weight: torch.Tensor, bias: torch.Tensor | None):
        """The step function ``fn([x]) -> [y]`` with the weights already on the device and in the run dtype."""
        conv, activation = self.conv, _activation(self.absorbed)
        symmetric = conv.padding_mode == PaddingMode.EXPLICIT_ROUND_DOWN and conv.pre_padding == conv.post_padding
        padding = conv.pre_padding if symmetric else (0, 0)
        pad = (lambda x: x) if symmetric else conv._pad_fn(None)
        stride, dilation, groups = conv.stride_nd, conv.dilation_nd, conv.num_groups
        return lambda xs: [activation(F.conv2d(pad(xs[0]), weight, bias, stride, padding, dilation, groups))]


def fuse_convolution(layer, consumers: dict, kernel: torch.Tensor | None = None) -> FusedConvolution | None:
    """The fused form of ``layer`` if it is a 2-D convolution, else None; see the module docstring.

    ``kernel``: the value of the layer's input 1 when that input is a build-time constant (else None).
    """
    if layer._type != LayerType.CONVOLUTION or len(layer.kernel_size_nd) != 2:
        return None
    if len(layer._inputs) > 1 and kernel is None:
        return None
    scale = _only_consumer(layer, consumers, _foldable_scale) if kernel is None else None
    tail = scale or layer
    act = _only_consumer(tail, consumers, _in_place_activation)
    weight, bias = fold_conv_scale(layer, scale) if kernel is None else (kernel.float().cpu(), _bias(layer))
    absorbed = [extra for extra in (scale, act) if extra is not None]
    return FusedConvolution(layer, weight, bias, absorbed, int(scale is not None), (act or tail)._outputs[0])


def fold_conv_scale(conv, scale) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Kernel [K, C/G, R, S] and bias [K] (or None) of ``conv`` with the channel ``scale`` layer folded in."""
    maps = conv.num_output_maps
    weight = torch.from_numpy(conv.kernel.numpy().astype("float64")).reshape(maps, -1, *conv.kernel_size_nd)
    bias = torch.from_numpy(conv.bias.numpy().astype("float64")) if conv.bias.size else None
    if scale is not None:
        s = _channel_weights(scale.scale, maps, 1.0)
        t = _channel_weights(scale.shift, maps, 0.0)
        weight = weight * s.reshape(-1, 1, 1, 1)
        bias = t if bias is None else bias * s + t
    return weight.float(), None if bias is None else bias.float()


def _bias(conv) -> torch.Tensor | None:
    return torch.from_numpy(conv.bias.numpy().astype("float32")) if conv.bias.size else None


def consumers(order, network) -> dict[int, list]:
    """Tensor id → layers reading it; a network output counts as an extra (non-layer) consumer."""
    users: dict[int, list] = {}
    for layer in order:
        for t in layer._inputs:
            users.setdefault(id(t), []).append(layer)
    for t in network._outputs:
        users.setdefault(id(t), []).append(None)
    return users


def _only_consumer(layer, users: dict, accept):
    found = users.get(id(layer._outputs[0]), [])
    return found[0] if len(found) == 1 and found[0] is not None and accept(found[0]) else None


def _channel_weights(weights, count: int, empty: float) -> torch.Tensor:
    if weights is None or weights.size == 0:
        return torch.full((count,), empty, dtype=torch.float64)
    return torch.from_numpy(weights.numpy().astype("float64")).reshape(count)


def _foldable_scale(layer) -> bool:
    return (layer._type == LayerType.SCALE and layer.mode == ScaleMode.CHANNEL and layer.channel_axis == 1
            and (layer.power is None or layer.power.size == 0))


def _in_place_activation(layer) -> bool:
    # IActivationLayer's ``type`` property is its activation kind (the layer type is the class's ``_type``).
    # A LEAKY_RELU whose alpha was never set is left to its own layer, which refuses it (undocumented default).
    return (layer._type == LayerType.ACTIVATION and layer.type in _IN_PLACE
            and (layer.type != ActivationType.LEAKY_RELU or "alpha" in layer._attrs))


def _activation(absorbed):
    act = next((layer for layer in absorbed if layer._type == LayerType.ACTIVATION), None)
    return (lambda y: y) if act is None else _IN_PLACE[act.type](float(act.alpha))
