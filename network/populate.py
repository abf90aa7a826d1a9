"""``populate_network``: RetinaFace added to a network definition, in the order of the PyTorch forward()."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from network.backbones import backbone_builder
from network.blocks import fpn, head, ssh
from network.config import RetinaFaceConfig, config_for_weights
from network.layers import LayerBuilder
from network.postprocess import DETECTION_NAMES, add_postprocess, check_fixed_size
from retinaface_trt.thresholds import Thresholds
from network.quantize import handler
from network.weights import WeightStore
from retinaface_trt.errors import RetinaFaceError

INPUT_NAME = "input"
OUTPUT_NAMES = ("loc", "conf", "landms")


def populate_network(trt: Any, network: Any, weights: Mapping[str, np.ndarray],
                     cfg: RetinaFaceConfig | None = None, *, input_shape=(-1, 3, 640, 640),
                     half: bool = False, input_name: str = INPUT_NAME,
                     postprocess: Thresholds | None = None, priors: np.ndarray | None = None,
                     quantization=None) -> WeightStore:
    """Add RetinaFace to ``network`` through the ``trt`` namespace (real TensorRT or the executor).

    Input ``input_name``: float32 [N, 3, H, W], BGR minus (104, 117, 123); -1 marks a dimension set at run
    time. Outputs (float32): ``loc`` [N, P, 4], ``conf`` [N, P, 2] (softmax), ``landms`` [N, P, 10].
    ``half=True`` builds a strongly typed FP16 network: the input is cast to HALF, weights are float16 and
    the outputs are cast back to FLOAT. The backbone is recognised from the weight names unless ``cfg`` is
    given.

    ``quantization``: a ``network.quantize.QuantizationPlan`` builds the explicit INT8 network (Q/DQ layers with
    its scales, BatchNorm folded into the quantized convolutions, the rest float32); an
    ``ActivationObserver`` builds the float network and records the tensor of every quantization point.

    With ``postprocess`` (thresholds) and ``priors`` (float32 [P, 4] for this input size, from
    ``runtime.priors.prior_boxes(cfg, H, W)``), decoding and NMS are added and the outputs are
    ``dets`` [N, D, 15] float32 and ``count`` [N] int32 instead (:mod:`network.postprocess`); the input size
    must then be fixed. Returns the store that owns every array handed to TensorRT: keep it alive until
    the engine is built.
    """
    cfg = cfg or config_for_weights(weights)
    _check_input_shape(input_shape)
    if half and quantization is not None:
        raise RetinaFaceError("an INT8 network keeps its float layers in float32: build it without half=True")
    store = WeightStore(weights, np.float16 if half else np.float32)
    net = LayerBuilder(trt, network, store, cfg, handler(quantization))
    x = network.add_input(input_name, trt.float32, tuple(input_shape))
    if half:
        x = net.cast(x, trt.float16, "input.half")
    features = fpn(net, backbone_builder(cfg.name)(net, x))
    features = [ssh(net, f, f"ssh{i}") for i, f in enumerate(features, start=1)]
    loc = head(net, features, "BboxHead", 4)
    conf = net.softmax(head(net, features, "ClassHead", 2), axis=2, name="ClassHead.softmax")
    landms = head(net, features, "LandmarkHead", 10)
    outputs = [net.cast(t, trt.float32, f"{n}.float") if half else t
               for n, t in zip(OUTPUT_NAMES, (loc, conf, landms))]
    names = OUTPUT_NAMES
    if postprocess is not None:
        outputs, names = _postprocess(net, outputs, input_shape, postprocess, priors), DETECTION_NAMES
    for name, tensor in zip(names, outputs):
        tensor.name = name
        network.mark_output(tensor)
    net.weights.check_all_used()
    if net.quantization is not None:
        net.quantization.finish()
    return net.weights


def _postprocess(net: LayerBuilder, heads, input_shape, settings: Thresholds, priors) -> tuple:
    size = check_fixed_size(input_shape)
    if priors is None:
        raise RetinaFaceError("post-processing inside the network needs the priors of the input size: pass "
                              "priors=runtime.priors.prior_boxes(cfg, H, W)")
    priors = np.ascontiguousarray(priors, dtype=np.float32)
    expected = heads[0].shape[1]
    if priors.ndim != 2 or priors.shape[1] != 4 or (expected >= 0 and priors.shape[0] != expected):
        raise RetinaFaceError(f"priors must be float32 [{expected}, 4] for a {size[0]}x{size[1]} input, "
                              f"found shape {priors.shape}")
    return add_postprocess(net, *heads, priors, size, settings, net.weights.keep)


def _check_input_shape(shape) -> None:
    shape = tuple(shape)
    if len(shape) != 4 or shape[1] != 3 or any(d == 0 or d < -1 for d in shape):
        raise RetinaFaceError(f"input shape must be (N, 3, H, W) with -1 for dynamic dims, got {shape}")
