"""The RetinaFace network rebuilt layer by layer through TensorRT's network-definition API.

``populate_network(trt, network, weights, cfg)`` adds the whole model to a network definition of the
given ``trt`` namespace: the real ``tensorrt`` module, or :mod:`network.executor.trt`, which runs the same
definition with PyTorch. With ``postprocess=Thresholds(...)`` the network also decodes and runs
NMS, and its outputs are ``DETECTION_NAMES`` (see :mod:`network.postprocess`).
"""

from network.config import MOBILENET_0_25, RESNET_50, RetinaFaceConfig, config_for_weights, get_config  # noqa: F401
from network.populate import INPUT_NAME, OUTPUT_NAMES, populate_network  # noqa: F401
from network.postprocess import DETECTION_NAMES, MAX_TOP_K  # noqa: F401
