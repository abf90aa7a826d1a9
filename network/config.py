"""RetinaFace configurations, transcribed from the original ``cfg_mnet`` / ``cfg_re50`` as frozen data.

Derived values are spelled out instead of being recomputed at every use:

* FPN and SSH use LeakyReLU(0.1) when ``out_channel <= 64`` (MobileNet-0.25) and a plain ReLU
  (LeakyReLU with slope 0) otherwise (ResNet-50).
* Every BatchNorm uses eps = 1e-5 (PyTorch's default; it is not stored in the checkpoint).
* The backbone's three returned levels have ``2 * in_channel``, ``4 * in_channel`` and ``8 * in_channel``
  channels, at strides 8, 16 and 32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from retinaface_trt.errors import RetinaFaceError


@dataclass(frozen=True)
class RetinaFaceConfig:
    """One RetinaFace variant. Sizes are in pixels of the network input."""

    name: str                                   # "mobilenet0.25" or "resnet50"
    min_sizes: tuple[tuple[int, int], ...]      # anchor sizes per level (two anchors per location)
    steps: tuple[int, int, int]                 # feature strides of the three levels
    variance: tuple[float, float]               # box/landmark decoding variances
    clip: bool                                  # clip priors to [0, 1] (False in both published configs)
    image_size: int                             # training size (informational)
    in_channel: int                             # half the channels of the first returned backbone level
    out_channel: int                            # FPN / SSH width
    fpn_leaky: float                            # LeakyReLU slope in FPN and SSH (0.0 = ReLU)
    backbone_leaky: float                       # LeakyReLU slope inside the backbone (MobileNet: 0.1)
    bn_eps: float = 1e-5
    anchors_per_location: int = 2

    @property
    def level_channels(self) -> tuple[int, int, int]:
        """Channels of the three backbone levels fed to the FPN."""
        return (self.in_channel * 2, self.in_channel * 4, self.in_channel * 8)


MOBILENET_0_25 = RetinaFaceConfig(
    name="mobilenet0.25",
    min_sizes=((16, 32), (64, 128), (256, 512)),
    steps=(8, 16, 32),
    variance=(0.1, 0.2),
    clip=False,
    image_size=640,
    in_channel=32,
    out_channel=64,
    fpn_leaky=0.1,        # out_channel 64 <= 64
    backbone_leaky=0.1,
)

RESNET_50 = RetinaFaceConfig(
    name="resnet50",
    min_sizes=((16, 32), (64, 128), (256, 512)),
    steps=(8, 16, 32),
    variance=(0.1, 0.2),
    clip=False,
    image_size=840,
    in_channel=256,
    out_channel=256,
    fpn_leaky=0.0,        # out_channel 256 > 64: plain ReLU
    backbone_leaky=0.0,   # torchvision ResNet uses ReLU
)

CONFIGS: Mapping[str, RetinaFaceConfig] = {cfg.name: cfg for cfg in (MOBILENET_0_25, RESNET_50)}
BACKBONES = tuple(CONFIGS)      # the one list of backbone names: a name not here fails with this list

# The precisions a network is built or run in: float32, float16, and INT8 (which needs a calibration).
FLOAT_PRECISIONS = ("fp32", "fp16")
PRECISIONS = FLOAT_PRECISIONS + ("int8",)


def check_precision(value, choices: tuple[str, ...] = PRECISIONS) -> str:
    """``value`` if it is one of ``choices``; else RetinaFaceError listing them."""
    if value not in choices:
        raise RetinaFaceError(f"unknown precision {value!r}; expected one of: {', '.join(choices)}")
    return value

# A weight name that only one backbone has: how the backbone is recognised from a state_dict or .wts.
_BACKBONE_MARKERS = (
    ("body.stage1.0.0.weight", MOBILENET_0_25),
    ("body.conv1.weight", RESNET_50),
)


def get_config(name: str) -> RetinaFaceConfig:
    """Return the configuration called ``name`` ("mobilenet0.25" or "resnet50")."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise RetinaFaceError(
            f"unknown backbone {name!r}; expected one of: {', '.join(CONFIGS)}") from None


def config_for_weights(names) -> RetinaFaceConfig:
    """Recognise the backbone from the weight names of a state_dict or ``.wts`` file."""
    names = set(names)
    for marker, cfg in _BACKBONE_MARKERS:
        if marker in names:
            return cfg
    raise RetinaFaceError(
        "these weights are not a RetinaFace checkpoint of biubug6/Pytorch_Retinaface: found neither "
        f"{' nor '.join(m for m, _ in _BACKBONE_MARKERS)}; first names: {', '.join(sorted(names)[:5]) or 'none'}")
