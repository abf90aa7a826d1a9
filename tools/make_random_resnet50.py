"""Write a seeded random RetinaFace checkpoint (BatchNorm statistics measured, wts_export/random_weights.py):

    python tools/make_random_resnet50.py OUT.pth [BACKBONE [SEED]]     (BACKBONE: resnet50 (default) or mobilenet0.25)
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository root, when not installed
from wts_export.random_weights import random_weights  # noqa: E402

backbone = sys.argv[2] if len(sys.argv) > 2 else "resnet50"
model, _ = random_weights(backbone, seed=int(sys.argv[3]) if len(sys.argv) > 3 else 0)
torch.save(model.state_dict(), sys.argv[1])
