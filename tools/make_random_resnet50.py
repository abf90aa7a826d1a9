"""Write a seeded random ResNet-50 RetinaFace checkpoint (BatchNorm statistics not trivial): python ... OUT.pth"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository root, for tests.helpers
from tests.helpers import random_resnet50_state_dict  # noqa: E402

model, _ = random_resnet50_state_dict(seed=0)
torch.save(model.state_dict(), sys.argv[1])
