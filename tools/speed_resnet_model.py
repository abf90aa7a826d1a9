"""ResNet-50 model-only timing at batch 128 (fp16 fast path vs eager PyTorch baseline): python ... WEIGHTS.pth"""

import sys

import torch

from network.fast_runner import FastExecutorModel
from runtime.benchmark.timing import summarise, time_calls
from wts_export.checkpoint import load_state_dict
from wts_export.model import build_model
from wts_export.weights import load_weights

device = torch.device("cuda")
x = torch.randn(128, 3, 640, 640, device=device) * 50
fast = FastExecutorModel.from_weights(load_weights(sys.argv[1]), device=device, precision="fp16")
print("fast fp16 b128 images/s", summarise(time_calls(lambda: fast(x), device, 5, 20), per=128, rate=True))
del fast
torch.cuda.empty_cache()
model = build_model(load_state_dict(sys.argv[1])).to(device)
with torch.no_grad():
    print("baseline fp32 b128 images/s", summarise(time_calls(lambda: model(x), device, 3, 10), per=128, rate=True))
