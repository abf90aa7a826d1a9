"""The two backbones; each returns its three levels (strides 8, 16, 32) for the FPN."""

from __future__ import annotations

from network.blocks import bottleneck, conv_bn, conv_dw
from network.layers import LayerBuilder
from retinaface_trt.errors import RetinaFaceError

# MobileNetV1-0.25 as (output channels, stride) per conv_dw; stage1 starts with conv_bn(3 → 8, stride 2).
MOBILENET_STAGES = {
    "stage1": ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1)),
    "stage2": ((128, 2),) + ((128, 1),) * 5,
    "stage3": ((256, 2), (256, 1)),
}

# torchvision ResNet-50 as (blocks, planes, stride) per layer; layer2..4 feed the FPN.
RESNET50_LAYERS = {"layer1": (3, 64, 1), "layer2": (4, 128, 2), "layer3": (6, 256, 2), "layer4": (3, 512, 2)}


def mobilenet_v1(net: LayerBuilder, x, prefix: str = "body"):
    leaky = net.cfg.backbone_leaky
    x = conv_bn(net, x, f"{prefix}.stage1.0", 8, 2, leaky)
    levels = []
    for stage, blocks in MOBILENET_STAGES.items():
        first = 1 if stage == "stage1" else 0
        for index, (channels, stride) in enumerate(blocks, start=first):
            x = conv_dw(net, x, f"{prefix}.{stage}.{index}", channels, stride, leaky)
        levels.append(x)
    return levels


def resnet50(net: LayerBuilder, x, prefix: str = "body"):
    net.weights.block = f"{prefix}.conv1"
    x = net.conv(x, f"{prefix}.conv1", 64, 7, 2, padding=3, bn=f"{prefix}.bn1")
    x = net.max_pool(net.leaky_relu(x, 0.0, f"{prefix}.relu"), 3, 2, 1, f"{prefix}.maxpool")
    levels = []
    for layer, (blocks, planes, stride) in RESNET50_LAYERS.items():
        for index in range(blocks):
            x = bottleneck(net, x, f"{prefix}.{layer}.{index}", planes, stride if index == 0 else 1,
                           downsample=index == 0)
        if layer != "layer1":
            levels.append(x)
    return levels


BUILDERS = {"mobilenet0.25": mobilenet_v1, "resnet50": resnet50}     # keyed by network.config.BACKBONES


def backbone_builder(name: str):
    """The builder of backbone ``name``; RetinaFaceError for a configuration without one (add it here)."""
    if name not in BUILDERS:
        raise RetinaFaceError(f"no network definition for backbone {name!r}; known: {', '.join(BUILDERS)}")
    return BUILDERS[name]
