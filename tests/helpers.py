"""Helpers shared by test modules (not fixtures): seeded random ResNet-50 weights."""

from __future__ import annotations

import torch


def random_resnet50_state_dict(seed=0):
    """A ResNet-50 RetinaFace with seeded random weights and non-trivial BatchNorm statistics.

    Returns (model in eval mode, {name: float32 numpy array}).
    """
    from network.config import RESNET_50
    from wts_export.model import RetinaFace

    torch.manual_seed(seed)
    model = RetinaFace(RESNET_50)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_mean"):
                tensor.normal_(0, 0.1)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith(".weight") and tensor.dim() == 1:
                tensor.uniform_(0.5, 1.5)
            elif name.endswith(".bias"):
                tensor.normal_(0, 0.1)
    return model.eval(), {k: v.numpy() for k, v in model.state_dict().items()}
