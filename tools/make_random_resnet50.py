"""Write a seeded random ResNet-50 RetinaFace checkpoint (BatchNorm statistics not trivial): python ... OUT.pth"""

import sys

import torch

from network.config import RESNET_50
from wts_export.model import RetinaFace

torch.manual_seed(0)
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
torch.save(model.state_dict(), sys.argv[1])
