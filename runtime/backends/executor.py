"""The ``torch`` backend: the hand-built network (``network.populate_network``) run by the project's executor.

The network definition is the float32 one that a TensorRT build would get; the executor's options make it
fast without changing what it computes (:class:`network.executor.Program`): BatchNorm folded into the
convolutions in float64, float16 converted *after* folding for ``precision="fp16"`` (folding in float16 loses
faces), channels-last activations for float16 on CUDA, and convolutions in IEEE float32 for ``"fp32"`` (no
TF32). On CUDA the pipeline replays the whole chain, this network included, as a CUDA graph (``capturable``).

Memory layout on CUDA, measured on an H200 (MobileNet-0.25): in float32, NCHW is as fast as NHWC (3,108 vs
3,119 images/s at batch 128; detect 2.0 vs 2.5 ms) and cuDNN plans a new input shape in 0.15 s instead of
2.1 s, so float32 stays NCHW; in float16, NHWC is 8% faster at batch 128 and both layouts cost about 2.5 s of
planning per new shape, so float16 is NHWC. A new shape skips cuDNN either way until it has run enough pixels
to pay for its plan (:data:`TUNE_AFTER_PIXELS`, :func:`runtime.device.float32_convolutions`).

``precision="int8"`` runs the explicit INT8 network definition (Q/DQ layers with the scales of a calibration,
:mod:`runtime.calibration`): what a TensorRT INT8 engine built with those scales computes, emulated in float32.
"""

from __future__ import annotations

import logging
from typing import Mapping

import numpy as np
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.backends.base import Backend
from runtime.device import TuneAfter, float32_convolutions, resolve_device

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "int8": torch.float32}   # int8: float32 activations
log = logging.getLogger("retinaface_trt")
# The pixels (batch × height × width) a shape runs with PyTorch's own kernels before cuDNN plans it
# (runtime.device.TuneAfter: the ski-rental rule). Measured on an H100 by tools/measure_new_sizes.py
# (docs/benchmarks.md, 2026-12-07): a plan costs 2.18 s in float16 and 0.15 s in float32, while untuned kernels
# take 33.9 ms per megapixel in float16 (2.5 planned) and 12.2 ms in float32 (2.9 planned); the plan is paid for
# after about 70 and 16 megapixels. INT8 is emulated in float32.
TUNE_AFTER_PIXELS = {"fp16": 70_000_000, "fp32": 16_000_000, "int8": 16_000_000}
EMULATED = ("INT8 is emulated on the executor: quantize and dequantize run in float32 exactly as TensorRT documents "
            "them, so detections show the accuracy of an INT8 engine built with these scales, not its speed")


class ExecutorBackend(Backend):
    """A backend over the executor; any input size and batch (``fixed_input_size`` None).

    weights:        a ``.pth`` / ``.wts`` path, or a ``{name: array}`` mapping (a state_dict as arrays)
    fold_batchnorm: fold BatchNorm into the convolutions (default True; False runs every layer as TensorRT
                    documents it, the executor's reference mode)
    channels_last:  NHWC activations (default: for fp16 on CUDA; see above)
    postprocess:    a :class:`retinaface_trt.thresholds.Thresholds`: decoding and NMS inside the network, as
                    ``build --with-postprocess`` builds it, for a fixed ``input_size`` (W, H); ``infer`` then
                    returns (dets [N, D, 15], count [N])
    int8:           a ``runtime.calibration.Int8Settings``, needed by (and only by) ``precision="int8"``
    """

    name = "executor"
    resize_hint = "use --postprocess pipeline (any size)"

    def __init__(self, weights, device: str | None = "cpu", precision: str = "fp32", *,
                 fold_batchnorm: bool = True, channels_last: bool | None = None, input_shape=(-1, 3, -1, -1),
                 postprocess=None, input_size=(640, 640), int8=None):
        from network import DETECTION_NAMES, INPUT_NAME, OUTPUT_NAMES, config_for_weights, populate_network
        from network.executor import Program, trt
        from runtime.priors import prior_boxes

        if precision not in DTYPES:
            raise RetinaFaceError(f"unknown precision {precision!r}; expected one of: {', '.join(DTYPES)}")
        from runtime.calibration import check_int8_request

        check_int8_request(precision, int8)
        arrays = _load(weights)
        self.device, self.precision = resolve_device(device), precision
        self.cfg = config_for_weights(arrays)
        self.postprocess_in_network = postprocess is not None
        self.postprocess_settings = postprocess.in_engine() if postprocess is not None else None
        # The in-network NMS has outputs of data-dependent size, which the executor sizes on the host.
        self.capturable = self.device.type == "cuda" and not self.postprocess_in_network
        self.input_dtype = DTYPES[precision]
        self.input_channels_last = (self.device.type == "cuda" and precision == "fp16") if channels_last is None \
            else bool(channels_last)
        extra = {}
        if postprocess is not None and precision == "fp16":
            raise RetinaFaceError("the executor runs decoding and NMS inside the network in float32 only; use "
                                  "--precision fp32, or --postprocess pipeline for fp16")
        if postprocess is not None:
            width, height = input_size
            input_shape, self.fixed_input_size = (-1, 3, height, width), (width, height)
            extra = dict(postprocess=postprocess, priors=prior_boxes(self.cfg, height, width))
        self.int8, self.quantization = int8, None
        if precision == "int8":
            from runtime.calibration import quantization_plan

            self.quantization = quantization_plan(weights, arrays, self.cfg, int8, self.device)
            log.warning(EMULATED)
        network = trt.Builder(trt.Logger()).create_network(0)
        populate_network(trt, network, arrays, self.cfg, input_shape=tuple(input_shape), quantization=self.quantization,
                         **extra)
        self._program = Program(network, self.device, dtype=self.input_dtype, fold_batchnorm=fold_batchnorm,
                                channels_last=self.input_channels_last)
        self._names = (INPUT_NAME, DETECTION_NAMES if self.postprocess_in_network else OUTPUT_NAMES)
        self._tuning = TuneAfter(TUNE_AFTER_PIXELS[precision])

    def infer_impl(self, batch: torch.Tensor):
        """[N, 3, H, W] (float32 or ``input_dtype``) on ``device`` → (loc [N, P, 4], conf [N, P, 2],
        landms [N, P, 10]) float32 on ``device``; with post-processing inside, (dets [N, D, 15], count [N])."""
        input_name, output_names = self._names
        shape = tuple(batch.shape)
        with float32_convolutions(repeated=self._tuning(shape, _pixels(shape))):
            outputs = self._program({input_name: batch})
        return tuple(outputs[name] for name in output_names)

    def settled(self, shape: tuple) -> bool:
        return self._tuning.settled(tuple(shape))

    def settle(self, shape: tuple) -> None:
        self._tuning.settle(tuple(shape))

    def close_impl(self) -> None:
        self._program = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _pixels(shape: tuple) -> int:
    """The pixels of a batch [N, C, H, W]."""
    return shape[0] * shape[2] * shape[3]


def _load(weights) -> Mapping[str, np.ndarray]:
    """A path is checked and loaded; a mapping of arrays is used as it is."""
    if isinstance(weights, Mapping):
        return weights
    from wts_export.weights import check_weights_file, load_weights

    check_weights_file(weights)

    return load_weights(weights)
