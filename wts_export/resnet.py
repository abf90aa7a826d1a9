"""The ResNet-50 trunk of RetinaFace-R50, written to match torchvision's module names.

Only what RetinaFace uses is built: the stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) and ``layer1`` … ``layer4``
of bottleneck blocks (1x1 → 3x3 with the stride → 1x1 x4 expansion; a 1x1 ``downsample`` on the first block of
a layer). There is no avgpool/fc: the published checkpoint has none. ``forward`` returns ``layer2``, ``layer3``
and ``layer4`` (strides 8, 16, 32; 512, 1024 and 2048 channels), as the original ``IntermediateLayerGetter`` does.
"""

from __future__ import annotations

import torch
from torch import nn

EXPANSION = 4
# (blocks, width, stride of the first block) of layer1 … layer4
LAYERS = ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2))


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5: the stride sits on the 3x3 conv). Keys conv1..3, bn1..3, downsample.0/1."""

    def __init__(self, inplanes: int, width: int, stride: int = 1, eps: float = 1e-5):
        super().__init__()
        out = width * EXPANSION
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=eps)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width, eps=eps)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out, eps=eps)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out, eps=eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


def _make_layer(inplanes: int, blocks: int, width: int, stride: int, eps: float) -> nn.Sequential:
    layers = [Bottleneck(inplanes, width, stride, eps)]
    layers += [Bottleneck(width * EXPANSION, width, 1, eps) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet50(nn.Module):
    """ResNet-50 without avgpool/fc. Input [N, 3, H, W] float32; output three feature maps (see module doc)."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=eps)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for index, (blocks, width, stride) in enumerate(LAYERS, start=1):
            self.add_module(f"layer{index}", _make_layer(inplanes, blocks, width, stride, eps))
            inplanes = width * EXPANSION

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer2(self.layer1(x))
        c3 = self.layer3(c2)
        return c2, c3, self.layer4(c3)
