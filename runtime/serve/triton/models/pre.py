"""Triton Python model ``retinaface_pre`` (written by ``retinaface-trt export-triton``).

IMAGE (encoded bytes) → the network input (minus mean, NCHW) and TRANSFORM, the way back to the image's
pixels, with the resize policy and input size of this model's parameters. An image that cannot be used
fails its own request only, with the SDK's one-line message.
"""

import triton_python_backend_utils as pb_utils

from network import INPUT_NAME
from retinaface_trt.errors import RetinaFaceError
from runtime.serve.triton import IMAGE, TRANSFORM
from runtime.serve.triton.steps import parameters, prepare


class TritonPythonModel:
    def initialize(self, args):
        settings = parameters(args["model_config"])
        self.resize = settings["resize"]
        self.input_size = (int(settings["input_width"]), int(settings["input_height"]))
        self.max_pixels = int(settings["max_pixels"])

    def execute(self, requests):
        return [self._respond(request) for request in requests]

    def _respond(self, request):
        encoded = pb_utils.get_input_tensor_by_name(request, IMAGE).as_numpy().reshape(-1)
        try:
            batch, transforms = prepare(encoded, self.resize, self.input_size, self.max_pixels)
        except RetinaFaceError as error:
            return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error)))
        return pb_utils.InferenceResponse([pb_utils.Tensor(INPUT_NAME, batch),
                                           pb_utils.Tensor(TRANSFORM, transforms)])
