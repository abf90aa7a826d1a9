"""Seeded random RetinaFace weights that behave like trained ones, for tests and ``selftest`` without a checkpoint.

Plain random initialisation gives a network whose numbers say little: with PyTorch's default layer
initialisation and BatchNorm statistics that do not describe the activations, MobileNet-0.25's activations
shrink to about 0.3 and every face score sits between 0.45 and 0.53; ResNet-50's stem grows to about 270.
So :func:`random_weights` builds the model in four seeded steps, each following what training produces:

1. PyTorch's default initialisation of every layer (``torch.manual_seed(seed)``, the global generator
   restored afterwards);
2. BatchNorm scales uniform in [0.5, 1.5] and shifts normal with standard deviation 0.1, except the last
   BatchNorm of each ResNet bottleneck (``layerN.M.bn3``), whose scale is uniform in [0, 0.3]: residual
   branches of trained ResNets are damped this way (the "zero-init residual" practice), and without it
   50 layers of random weights amplify float32 rounding to conf errors of 1.4e-4;
3. BatchNorm statistics measured, not invented: ``running_mean`` / ``running_var`` are the statistics of
   the activations on :data:`CALIBRATION_SHAPE` seeded images (smooth colour noise spread like BGR minus
   the mean), so every layer sees activations of unit scale, as in a trained network;
4. a background-heavy face classifier, as RetinaNet initialises its classifier (a prior probability of a
   face per anchor): each ``ClassHead`` bias is shifted so that :data:`FACE_FRACTION` of the calibration
   images' priors score above 0.5. Detections are then sparse and confident, like a trained detector's,
   instead of hundreds of overlapping boxes at scores near 0.5 whose NMS result any rounding changes.

The result is deterministic for a seed on one machine (the calibration is a float32 forward pass on the
CPU, so the last bits of the statistics may differ between CPUs). Compare outputs computed from the same
arrays, never against stored numbers.
"""

from __future__ import annotations

import numpy as np
import torch

from network.config import RetinaFaceConfig, get_config
from network.weights import IGNORED_SUFFIX

CALIBRATION_SHAPE = (2, 3, 320, 320)      # N, C, H, W of the images the BatchNorm statistics are measured on
FACE_FRACTION = 0.005                     # of the priors of the calibration images scoring above 0.5
BATCHNORM_SCALE = (0.5, 1.5)              # uniform range of BatchNorm scales (gamma)
RESIDUAL_SCALE = (0.0, 0.3)               # uniform range of the scale of each bottleneck's last BatchNorm
BATCHNORM_SHIFT_STD = 0.1                 # standard deviation of BatchNorm shifts (beta)


def random_weights(backbone: str | RetinaFaceConfig = "mobilenet0.25", seed: int = 0):
    """A RetinaFace of ``backbone`` ("mobilenet0.25" or "resnet50", or its config) with seeded random weights.

    Returns (model in eval mode, {state_dict name: float32 numpy array}), without ``num_batches_tracked``
    (as :func:`wts_export.weights.load_weights` gives a checkpoint). See the module docstring.
    """
    from wts_export.model import RetinaFace

    cfg = backbone if isinstance(backbone, RetinaFaceConfig) else get_config(backbone)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RetinaFace(cfg)
        _randomise_batchnorm(model)
    images = calibration_images(seed)
    _measure_batchnorm(model, images)
    _shift_face_bias(model, images)
    return model.eval(), state_dict_arrays(model)


def calibration_images(seed: int, shape: tuple[int, int, int, int] = CALIBRATION_SHAPE) -> torch.Tensor:
    """Seeded float32 [N, 3, H, W] images of smooth colour noise in about [-128, 128) (BGR minus mean's range)."""
    n, channels, height, width = shape
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, max(height // 16, 2), max(width // 16, 2), generator=generator) * 255
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    grain = torch.randn(n, channels, height, width, generator=generator) * 12
    return (smooth + grain).clamp(0, 255).round() - 128


def _randomise_batchnorm(model: torch.nn.Module) -> None:
    """Step 2: BatchNorm scales and shifts (see the module docstring); statistics are measured later."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(*(RESIDUAL_SCALE if name.endswith(".bn3") else BATCHNORM_SCALE))
                module.bias.normal_(0.0, BATCHNORM_SHIFT_STD)


def _measure_batchnorm(model: torch.nn.Module, images: torch.Tensor) -> None:
    """Step 3: running statistics = the activations' statistics on ``images`` (a cumulative average)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None            # None: the running statistics are the plain average over batches
    model.train()
    with torch.no_grad():
        model(images)
    model.eval()


def _shift_face_bias(model: torch.nn.Module, images: torch.Tensor) -> None:
    """Step 4: shift each ClassHead's face bias so that FACE_FRACTION of its priors score above 0.5.

    A ClassHead's 1x1 convolution gives (background, face) logits per anchor, channels (2a, 2a + 1).
    """
    margins = _face_margins(model, images)
    with torch.no_grad():
        for head, margin in zip(model.ClassHead, margins):
            shift = torch.quantile(margin.flatten().double(), 1.0 - FACE_FRACTION).float()
            head.conv1x1.bias[1::2] -= shift


def _face_margins(model: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Per ClassHead, the face logit minus the background logit of every prior of ``images``."""
    captured = []
    hooks = [head.register_forward_hook(lambda module, inputs, output: captured.append(output))
             for head in model.ClassHead]
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        for hook in hooks:
            hook.remove()
    return [logits[..., 1] - logits[..., 0] for logits in captured]


def state_dict_arrays(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """{name: float32 array} of ``model``'s state_dict without ``num_batches_tracked``."""
    return {name: tensor.detach().float().numpy().copy() for name, tensor in model.state_dict().items()
            if not name.endswith(IGNORED_SUFFIX)}
