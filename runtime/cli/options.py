"""Flag groups shared by the subcommands: each flag is declared once, with its choices, default and range.

A subcommand adds the groups it takes (``add_model_args``, ``add_pipeline_args``, ...); the values are
checked by their ``type`` while argparse parses them, so a bad value is refused before any work starts.
:func:`detector_options` maps the model and pipeline groups to the keyword arguments of
:meth:`runtime.detector.Detector.from_options`, so every flag reaches the library the same way from every
subcommand. Choices come from the library (backends, precisions, resize policies), never re-listed here.
"""

from __future__ import annotations

import argparse

from retinaface_trt.errors import RetinaFaceError
from runtime.backends import BACKENDS, DEVICES_HELP, PRECISIONS
from runtime.options import (DEFAULT_INPUT_SIZE, DEFAULT_MAX_PIXELS, RESIZE_POLICIES, MAX_INPUT_SIDE,
                             DetectionOptions, check_count, check_probability)

_DEFAULTS = DetectionOptions()


def _argparse_type(check, name: str):
    """An argparse ``type`` from a :mod:`runtime.options` check (its one-line message becomes argparse's)."""
    def convert(text: str):
        try:
            return check(text)
        except RetinaFaceError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    convert.__name__ = name
    return convert


def _parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise RetinaFaceError(f"expected WIDTHxHEIGHT such as 640x640, found {text!r}")
    width, height = (int(p) for p in parts)
    if not (0 < width <= MAX_INPUT_SIDE and 0 < height <= MAX_INPUT_SIDE):
        raise RetinaFaceError(f"width and height must be in 1..{MAX_INPUT_SIDE}, found {text!r}")
    return width, height


size = _argparse_type(_parse_size, "size")                      # "640x480" -> (640, 480), (W, H)
probability = _argparse_type(lambda t: check_probability("the value", t), "probability")
count = _argparse_type(lambda t: check_count("the value", t), "count")
count_or_zero = _argparse_type(lambda t: check_count("the value", t, low=0), "count_or_zero")


def add_device_arg(parser, default: str = "auto") -> None:
    parser.add_argument("--device", default=default, help=f"{DEVICES_HELP} (default: {default})")


def add_model_args(parser, *, engine: bool = True, default_device: str = "auto") -> None:
    """--weights, --engine, --backend, --device, --precision, --engine-cache: what runs the network."""
    group = parser.add_argument_group("model")
    group.add_argument("--weights", help=".pth or .wts weights (the hand-built network; TensorRT engines are "
                                         "built from them on demand)")
    if engine:
        group.add_argument("--engine", help="a serialized TensorRT engine, or an .onnx model")
    group.add_argument("--backend", default="auto", choices=BACKENDS,
                       help="what runs the network (default auto: TensorRT for an engine on a GPU, ONNX Runtime "
                            "for an .onnx file, else the executor)")
    add_device_arg(group, default_device)
    group.add_argument("--precision", default="fp32", choices=PRECISIONS,
                       help="network precision (default fp32; TensorRT engines given with --engine keep theirs)")
    group.add_argument("--engine-cache", metavar="DIR",
                       help="where engines built from --weights are kept (default ~/.cache/retinaface-trt)")


def add_pipeline_args(parser, resize_default: str = "original") -> None:
    """--resize, --input-size, detect.py's thresholds and --max-pixels: how images become faces."""
    group = parser.add_argument_group("pipeline")
    group.add_argument("--resize", default=resize_default, choices=RESIZE_POLICIES,
                       help=f"original: each image at its own size (detect.py); stretch / letterbox: to "
                            f"--input-size (default {resize_default})")
    group.add_argument("--input-size", type=size, default=DEFAULT_INPUT_SIZE, metavar="WxH",
                       help="network input for stretch / letterbox (default %dx%d)" % DEFAULT_INPUT_SIZE)
    group.add_argument("--confidence-threshold", type=probability, default=_DEFAULTS.confidence_threshold,
                       help=f"keep candidates scoring above this (default {_DEFAULTS.confidence_threshold})")
    group.add_argument("--nms-threshold", type=probability, default=_DEFAULTS.nms_threshold,
                       help=f"IoU above which NMS removes a box (default {_DEFAULTS.nms_threshold})")
    group.add_argument("--top-k", type=count, default=_DEFAULTS.top_k,
                       help=f"candidates kept before NMS (default {_DEFAULTS.top_k})")
    group.add_argument("--keep-top-k", type=count, default=_DEFAULTS.keep_top_k,
                       help=f"detections kept after NMS (default {_DEFAULTS.keep_top_k})")
    group.add_argument("--max-pixels", type=count_or_zero, default=DEFAULT_MAX_PIXELS,
                       help=f"refuse larger images (default {DEFAULT_MAX_PIXELS}; 0: no limit)")


def detector_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``Detector.from_options`` given by the model and pipeline groups."""
    return dict(weights=args.weights, engine=getattr(args, "engine", None), backend=args.backend,
                device=args.device, precision=args.precision, engine_cache=args.engine_cache,
                resize=args.resize, input_size=args.input_size, confidence_threshold=args.confidence_threshold,
                nms_threshold=args.nms_threshold, top_k=args.top_k, keep_top_k=args.keep_top_k,
                max_pixels=args.max_pixels)
