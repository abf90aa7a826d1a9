"""RetinaFace (biubug6/Pytorch_Retinaface) in PyTorch, for both backbones, with the published state_dict keys.

Conventions:

* Input ``x``: [N, 3, H, W] float32, BGR channel order, minus the per-channel mean (104, 117, 123); any H, W.
* Output ``(loc [N, P, 4], conf [N, P, 2], landms [N, P, 10])`` float32, ``conf`` after softmax, with
  P = sum over the strides s in (8, 16, 32) of ceil(H/s) * ceil(W/s) * 2, in prior order (level, row, column, anchor).
* Module names and registration order reproduce the checkpoint exactly (``body`` → ``fpn`` → ``ssh1..3`` →
  ``ClassHead`` → ``BboxHead`` → ``LandmarkHead``), so ``state_dict()`` keys and shapes equal the published file's.
* A LeakyReLU slope of 0 is built as a ReLU (the same function; it keeps ONNX graphs plain).
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from network.config import RetinaFaceConfig, config_for_weights
from network.weights import IGNORED_SUFFIX
from retinaface_trt.errors import RetinaFaceError
from wts_export.resnet import ResNet50


def _act(leaky: float) -> nn.Module:
    return nn.LeakyReLU(negative_slope=leaky, inplace=True) if leaky else nn.ReLU(inplace=True)


def conv_bn(inp: int, oup: int, stride: int = 1, leaky: float = 0.0, eps: float = 1e-5) -> nn.Sequential:
    """3x3 conv (pad 1, no bias) → BN → LeakyReLU(leaky). Keys ``0.weight``, ``1.*``."""
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup, eps=eps), _act(leaky))


def conv_bn_no_relu(inp: int, oup: int, stride: int = 1, eps: float = 1e-5) -> nn.Sequential:
    """3x3 conv (pad 1, no bias) → BN, no activation."""
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup, eps=eps))


def conv_bn1X1(inp: int, oup: int, stride: int = 1, leaky: float = 0.0, eps: float = 1e-5) -> nn.Sequential:
    """1x1 conv (no bias) → BN → LeakyReLU(leaky)."""
    return nn.Sequential(nn.Conv2d(inp, oup, 1, stride, 0, bias=False), nn.BatchNorm2d(oup, eps=eps), _act(leaky))


def conv_dw(inp: int, oup: int, stride: int, leaky: float = 0.1, eps: float = 1e-5) -> nn.Sequential:
    """Depthwise 3x3 (groups=inp) → BN → act → pointwise 1x1 → BN → act. Keys 0, 1, 3, 4."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp, eps=eps), _act(leaky),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup, eps=eps), _act(leaky))


# (inp, oup, stride) of the conv_dw blocks of each stage; stage1 starts with conv_bn(3 → 8, stride 2).
MOBILENET_STAGES = (
    ((8, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1)),
    ((64, 128, 2),) + ((128, 128, 1),) * 5,
    ((128, 256, 2), (256, 256, 1)),
)


class MobileNetV1(nn.Module):
    """MobileNetV1-0.25 without avgpool/fc; returns stage1, stage2, stage3 (64/128/256 channels, strides 8/16/32)."""

    def __init__(self, leaky: float = 0.1, eps: float = 1e-5):
        super().__init__()
        stages = [[conv_dw(i, o, s, leaky, eps) for i, o, s in table] for table in MOBILENET_STAGES]
        self.stage1 = nn.Sequential(conv_bn(3, 8, 2, leaky, eps), *stages[0])
        self.stage2 = nn.Sequential(*stages[1])
        self.stage3 = nn.Sequential(*stages[2])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        return c1, c2, self.stage3(c2)


class SSH(nn.Module):
    """Single-stage headless context module: concat of 3x3, "5x5" and "7x7" branches (C/2 + C/4 + C/4), then ReLU."""

    def __init__(self, channels: int, leaky: float, eps: float = 1e-5):
        super().__init__()
        quarter = channels // 4
        self.conv3X3 = conv_bn_no_relu(channels, channels // 2, 1, eps)
        self.conv5X5_1 = conv_bn(channels, quarter, 1, leaky, eps)
        self.conv5X5_2 = conv_bn_no_relu(quarter, quarter, 1, eps)
        self.conv7X7_2 = conv_bn(quarter, quarter, 1, leaky, eps)
        self.conv7x7_3 = conv_bn_no_relu(quarter, quarter, 1, eps)   # lower-case x, as in the checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c5_1 = self.conv5X5_1(x)
        c7 = self.conv7x7_3(self.conv7X7_2(c5_1))
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(c5_1), c7], dim=1))


class FPN(nn.Module):
    """Top-down feature pyramid: 1x1 laterals, nearest upsample to the exact lateral size, add, 3x3 merge."""

    def __init__(self, in_channels: tuple[int, int, int], out_channels: int, leaky: float, eps: float = 1e-5):
        super().__init__()
        self.output1 = conv_bn1X1(in_channels[0], out_channels, 1, leaky, eps)
        self.output2 = conv_bn1X1(in_channels[1], out_channels, 1, leaky, eps)
        self.output3 = conv_bn1X1(in_channels[2], out_channels, 1, leaky, eps)
        self.merge1 = conv_bn(out_channels, out_channels, 1, leaky, eps)
        self.merge2 = conv_bn(out_channels, out_channels, 1, leaky, eps)

    def forward(self, levels):
        out1, out2, out3 = self.output1(levels[0]), self.output2(levels[1]), self.output3(levels[2])
        # Not a fixed 2x: for sizes that are not multiples of 32 the ratio is not 2 (see RETINAFACE_FACTS.md).
        out2 = self.merge2(out2 + F.interpolate(out3, size=out2.shape[-2:], mode="nearest"))
        out1 = self.merge1(out1 + F.interpolate(out2, size=out1.shape[-2:], mode="nearest"))
        return out1, out2, out3


class Head(nn.Module):
    """1x1 conv with bias → [N, H*W*anchors, values] (NCHW permuted to NHWC, then flattened)."""

    def __init__(self, channels: int, values: int, anchors: int = 2):
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(channels, anchors * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1x1(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.values)


def heads(channels: int, values: int, anchors: int = 2, levels: int = 3) -> nn.ModuleList:
    """One :class:`Head` per pyramid level (``ClassHead`` values=2, ``BboxHead`` 4, ``LandmarkHead`` 10)."""
    return nn.ModuleList(Head(channels, values, anchors) for _ in range(levels))


def backbone_module(cfg: RetinaFaceConfig) -> nn.Module:
    """The PyTorch backbone of ``cfg``, by its name (:data:`network.config.BACKBONES`); RetinaFaceError for a
    name this module has no backbone for (a new configuration must add its module here)."""
    builders = {"mobilenet0.25": lambda: MobileNetV1(cfg.backbone_leaky, cfg.bn_eps),
                "resnet50": lambda: ResNet50(cfg.bn_eps)}
    if cfg.name not in builders:
        raise RetinaFaceError(f"no PyTorch backbone for {cfg.name!r}; known: {', '.join(builders)}")
    return builders[cfg.name]()


class RetinaFace(nn.Module):
    """RetinaFace for ``cfg`` (MOBILENET_0_25 or RESNET_50); see the module docstring for input and outputs."""

    def __init__(self, cfg: RetinaFaceConfig):
        super().__init__()
        self.cfg = cfg
        eps, width, anchors = cfg.bn_eps, cfg.out_channel, cfg.anchors_per_location
        self.body = backbone_module(cfg)
        self.fpn = FPN(cfg.level_channels, width, cfg.fpn_leaky, eps)
        self.ssh1, self.ssh2, self.ssh3 = (SSH(width, cfg.fpn_leaky, eps) for _ in range(3))
        self.ClassHead = heads(width, 2, anchors)
        self.BboxHead = heads(width, 4, anchors)
        self.LandmarkHead = heads(width, 10, anchors)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fpn = self.fpn(self.body(x))
        features = (self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2]))
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, features)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features)], dim=1)
        landms = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features)], dim=1)
        return loc, F.softmax(logits, dim=-1), landms


def check_state_dict(state_dict: Mapping[str, torch.Tensor], cfg: RetinaFaceConfig) -> None:
    """Raise RetinaFaceError unless ``state_dict`` has exactly the names and shapes of ``RetinaFace(cfg)``
    (``num_batches_tracked`` counters may be missing: checkpoints of old PyTorch versions have none)."""
    with torch.device("meta"):   # shapes only: no memory, no initialisation cost
        expected = {k: tuple(v.shape) for k, v in RetinaFace(cfg).state_dict().items()}
    missing = [k for k in expected if k not in state_dict and not k.endswith(IGNORED_SUFFIX)]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f"{k} {tuple(v.shape)} (expected {expected[k]})"
             for k, v in state_dict.items() if k in expected and tuple(v.shape) != expected[k]]
    problems = [f"{len(names)} {what} ({', '.join(names[:3])}{', …' if len(names) > 3 else ''})"
                for what, names in (("missing", missing), ("unexpected", unexpected), ("with a wrong shape", wrong))
                if names]
    if problems:
        raise RetinaFaceError(f"these weights do not fit RetinaFace {cfg.name}: {', '.join(problems)}; "
                              "export from an unmodified checkpoint")


def build_model(state_dict: Mapping[str, torch.Tensor]) -> RetinaFace:
    """Recognise the backbone from the names, check the values (:func:`network.weights.check_weights`), load
    ``state_dict`` strictly and return the model in eval mode."""
    from network.weights import check_weights

    cfg = config_for_weights(state_dict.keys())
    check_state_dict(state_dict, cfg)
    check_weights(state_dict)
    model = RetinaFace(cfg)
    counters = {k: torch.tensor(0) for k in model.state_dict() if k.endswith(IGNORED_SUFFIX) and k not in state_dict}
    model.load_state_dict({**state_dict, **counters}, strict=True)
    return model.eval()
