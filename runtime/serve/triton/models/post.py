"""Triton Python model ``retinaface_post`` (written by ``retinaface-trt export-triton``).

The network outputs of a dynamic batch, decoded together: priors, box and landmark decoding, confidence
threshold, top-k, NMS, keep-top-k (the runtime's batched post-processing), then the vis threshold and
TRANSFORM back to the original pixels. Each request gets BOXES, SCORES, LANDMARKS and COUNT.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from network import OUTPUT_NAMES
from network.config import get_config
from retinaface_trt.thresholds import Thresholds
from runtime.serve.triton import BOXES, COUNT, LANDMARKS, SCORES, TRANSFORM
from runtime.serve.triton.steps import pad, parameters, postprocess


class TritonPythonModel:
    def initialize(self, args):
        settings = parameters(args["model_config"])
        self.cfg = get_config(settings["backbone"])
        self.input_size = (int(settings["input_width"]), int(settings["input_height"]))
        self.options = Thresholds(**{name: settings[name] for name in Thresholds.names()})
        self.vis_threshold = float(settings["vis_threshold"])

    def execute(self, requests):
        tensors = [[pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in (*OUTPUT_NAMES, TRANSFORM)]
                   for r in requests]
        outputs = tuple(np.concatenate([t[i] for t in tensors]) for i in range(len(OUTPUT_NAMES)))
        transforms = np.concatenate([t[-1] for t in tensors])
        faces = postprocess(outputs, transforms, self.cfg, self.input_size, self.options, self.vis_threshold)
        responses, start = [], 0
        for t in tensors:
            size = len(t[-1])
            arrays = pad(faces[start:start + size])
            start += size
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor(name, array) for name, array in zip((BOXES, SCORES, LANDMARKS, COUNT), arrays)]))
        return responses
