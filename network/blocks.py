"""One helper per PyTorch block of RetinaFace, named like the block; each returns its output tensor.

``prefix`` is the block's state_dict prefix (its PyTorch module path); Sequential indices follow the
original: conv_bn = (0 conv, 1 BN, 2 activation), conv_dw = (0 conv, 1 BN, 2 act, 3 conv, 4 BN, 5 act).
"""

from __future__ import annotations

from network.layers import LayerBuilder


def conv_bn(net: LayerBuilder, x, prefix: str, out_channels: int, stride: int, leaky: float):
    """3×3 conv (pad 1, no bias) → BN → LeakyReLU(leaky)."""
    x = conv_bn_no_relu(net, x, prefix, out_channels, stride)
    return net.leaky_relu(x, leaky, f"{prefix}.2")


def conv_bn_no_relu(net: LayerBuilder, x, prefix: str, out_channels: int, stride: int = 1):
    """3×3 conv (pad 1, no bias) → BN."""
    net.weights.block = prefix
    return net.conv(x, f"{prefix}.0", out_channels, 3, stride, padding=1, bn=f"{prefix}.1")


def conv_bn1x1(net: LayerBuilder, x, prefix: str, out_channels: int, leaky: float):
    """1×1 conv (pad 0, no bias) → BN → LeakyReLU(leaky)."""
    net.weights.block = prefix
    x = net.conv(x, f"{prefix}.0", out_channels, 1, bn=f"{prefix}.1")
    return net.leaky_relu(x, leaky, f"{prefix}.2")


def conv_dw(net: LayerBuilder, x, prefix: str, out_channels: int, stride: int, leaky: float = 0.1):
    """Depthwise 3×3 conv → BN → LeakyReLU → pointwise 1×1 conv → BN → LeakyReLU (MobileNetV1)."""
    net.weights.block = prefix
    channels = x.shape[1]
    x = net.conv(x, f"{prefix}.0", channels, 3, stride, padding=1, groups=channels, bn=f"{prefix}.1")
    x = net.leaky_relu(x, leaky, f"{prefix}.2")
    x = net.conv(x, f"{prefix}.3", out_channels, 1, bn=f"{prefix}.4")
    return net.leaky_relu(x, leaky, f"{prefix}.5")


def bottleneck(net: LayerBuilder, x, prefix: str, planes: int, stride: int, downsample: bool):
    """torchvision ResNet bottleneck: 1×1 → 3×3 (stride) → 1×1 (×4 channels), plus identity or projection."""
    net.weights.block = prefix
    y = net.leaky_relu(net.conv(x, f"{prefix}.conv1", planes, 1, bn=f"{prefix}.bn1"), 0.0, f"{prefix}.relu1")
    y = net.conv(y, f"{prefix}.conv2", planes, 3, stride, padding=1, bn=f"{prefix}.bn2")
    y = net.leaky_relu(y, 0.0, f"{prefix}.relu2")
    y = net.conv(y, f"{prefix}.conv3", planes * 4, 1, bn=f"{prefix}.bn3")
    if downsample:
        x = net.conv(x, f"{prefix}.downsample.0", planes * 4, 1, stride, bn=f"{prefix}.downsample.1")
    return net.leaky_relu(net.residual_add(y, x, f"{prefix}.add"), 0.0, f"{prefix}.relu3")


def fpn(net: LayerBuilder, levels, prefix: str = "fpn"):
    """Lateral 1×1 convs, then top-down: upsample to the finer level's exact size, add, 3×3 merge."""
    out, leaky = net.cfg.out_channel, net.cfg.fpn_leaky
    output1, output2, output3 = (conv_bn1x1(net, level, f"{prefix}.output{i}", out, leaky)
                                 for i, level in enumerate(levels, start=1))
    up3 = net.upsample_like(output3, output2, f"{prefix}.up3")
    output2 = conv_bn(net, net.add(output2, up3, f"{prefix}.add2"), f"{prefix}.merge2", out, 1, leaky)
    up2 = net.upsample_like(output2, output1, f"{prefix}.up2")
    output1 = conv_bn(net, net.add(output1, up2, f"{prefix}.add1"), f"{prefix}.merge1", out, 1, leaky)
    return [output1, output2, output3]


def ssh(net: LayerBuilder, x, prefix: str):
    """SSH context module: 3×3, 5×5 (two 3×3) and 7×7 (three 3×3) branches, concatenated, ReLU."""
    out, leaky = net.cfg.out_channel, net.cfg.fpn_leaky
    conv3 = conv_bn_no_relu(net, x, f"{prefix}.conv3X3", out // 2)
    conv5_1 = conv_bn(net, x, f"{prefix}.conv5X5_1", out // 4, 1, leaky)
    conv5 = conv_bn_no_relu(net, conv5_1, f"{prefix}.conv5X5_2", out // 4)
    conv7_2 = conv_bn(net, conv5_1, f"{prefix}.conv7X7_2", out // 4, 1, leaky)
    conv7 = conv_bn_no_relu(net, conv7_2, f"{prefix}.conv7x7_3", out // 4)
    merged = net.concat([conv3, conv5, conv7], axis=1, name=f"{prefix}.cat")
    return net.leaky_relu(merged, 0.0, f"{prefix}.relu")


def head(net: LayerBuilder, features, prefix: str, values_per_anchor: int):
    """A 1×1 conv head per level (``prefix.i.conv1x1``), flattened to [N, P_i, k] and concatenated: [N, P, k]."""
    anchors = net.cfg.anchors_per_location
    outputs = []
    for i, x in enumerate(features):
        net.weights.block = f"{prefix}.{i}"
        y = net.conv(x, f"{prefix}.{i}.conv1x1", anchors * values_per_anchor, 1, bias=True)
        outputs.append(net.nhwc_flatten(y, values_per_anchor, f"{prefix}.{i}.flatten"))
    return net.concat(outputs, axis=1, name=f"{prefix}.cat")
