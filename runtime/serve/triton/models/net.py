"""Triton Python model ``retinaface_net`` (written by ``retinaface-trt export-triton --weights``).

The network run by one of the project's backends (``runtime.backends``: ``torch``, the executor, or
``onnxruntime``; this model's ``backend`` parameter) on the weights file beside this model, for machines
without TensorRT: the requests of a dynamic batch run as one batch. On a KIND_GPU instance it runs on that
instance's GPU, otherwise on the CPU.
"""

import os

import numpy as np
import triton_python_backend_utils as pb_utils

from network import INPUT_NAME, OUTPUT_NAMES
from runtime.backends import create_backend
from runtime.serve.triton.steps import parameters


class TritonPythonModel:
    def initialize(self, args):
        settings = parameters(args["model_config"])
        weights = os.path.join(args["model_repository"], args["model_version"], settings["weights"])
        gpu = args["model_instance_kind"] == "GPU"
        device = f"cuda:{args['model_instance_device_id']}" if gpu else "cpu"
        self.backend = create_backend(settings["backend"], weights=weights, device=device,
                                      precision=settings["precision"])

    def execute(self, requests):
        import torch

        inputs = [pb_utils.get_input_tensor_by_name(r, INPUT_NAME).as_numpy() for r in requests]
        try:
            batch = torch.from_numpy(np.concatenate(inputs)).to(self.backend.device)
            outputs = [tensor.cpu().numpy() for tensor in self.backend.infer(batch)]
        except Exception as error:   # noqa: BLE001 - every request of the batch gets the message
            return [pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error)))
                    for _ in requests]
        ends = np.cumsum([len(x) for x in inputs])[:-1]
        parts = zip(*(np.split(output, ends) for output in outputs))
        return [pb_utils.InferenceResponse([pb_utils.Tensor(name, np.ascontiguousarray(array))
                                            for name, array in zip(OUTPUT_NAMES, arrays)])
                for arrays in parts]

    def finalize(self):
        self.backend.close()
