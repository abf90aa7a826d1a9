"""``retinaface-trt export-onnx --weights CHECKPOINT OUT.onnx`` and ``retinaface-trt compare --weights W IMAGE...``."""

from __future__ import annotations

import json
import sys

from retinaface_trt.errors import RetinaFaceError
from runtime.cli import options
from runtime.options import DEFAULT_INPUT_SIZE, check_count
from wts_export.onnx_export import DEFAULT_OPSET, MIN_OPSET

MAX_OPSET = 20   # the newest opset of torch.onnx's TorchScript exporter (ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)


def _check_opset(text: str) -> int:
    opset = check_count("the opset", text)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise RetinaFaceError(f"the opset must be in {MIN_OPSET}..{MAX_OPSET} ({MIN_OPSET}: the first with a resize "
                              f"to the lateral tensor's size; {MAX_OPSET}: the newest torch exports), found {text!r}")
    return opset


opset = options.argparse_type(_check_opset, "opset")


def add_parser(subparsers) -> None:
    export = subparsers.add_parser("export-onnx", help="export the PyTorch model to ONNX",
                                   description="Export RetinaFace (.pth or .wts weights) to an ONNX file with "
                                               "inputs 'input' and outputs 'loc', 'conf', 'landms'.")
    options.add_weights_arg(export, "checkpoint", help=".pth or .wts weights")
    export.add_argument("output", help="the .onnx file to write")
    shape = export.add_mutually_exclusive_group()
    shape.add_argument("--input-size", type=options.size, metavar="WxH",
                       help="fixed input size, batch 1 (default %dx%d)" % DEFAULT_INPUT_SIZE)
    shape.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width instead")
    export.add_argument("--opset", type=opset, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})")
    export.add_argument("--simplify", action="store_true", help="simplify the graph with onnxslim")
    export.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    export.set_defaults(run=run_export)
    compare = subparsers.add_parser("compare", help="compare every available path on the same inputs",
                                    description="Run the PyTorch model, the executor, ONNX Runtime and TensorRT "
                                                "engines on the same images; print per pair the output errors and "
                                                "the detection agreement.")
    compare.add_argument("images", nargs="+", metavar="IMAGE", help="image files to run every path on")
    compare.add_argument("--weights", required=True, help=".pth or .wts weights (PyTorch and executor paths)")
    compare.add_argument("--onnx", help="ONNX model (default: the weights exported in memory)")
    compare.add_argument("--engine", action="append", default=[], help="TensorRT engine (repeatable)")
    compare.add_argument("--input-size", type=options.size, metavar="WxH",
                         help="stretch images to this size (default: each image's own size, or a fixed model's)")
    options.add_device_arg(compare)
    compare.add_argument("--score-threshold", type=options.probability, default=0.5,
                         help="faces compared from this score (0.5)")
    compare.add_argument("--match-iou", type=options.probability, default=0.5,
                         help="faces of two paths match at this IoU or more (0.5)")
    compare.add_argument("--atol", type=options.non_negative, default=1e-4,
                         help="exit 1 when an output differs more (1e-4; not applied to the INT8 path, whose "
                              "outputs differ by design: judge it by its matched faces)")
    compare.add_argument("--precision", choices=("fp32", "int8"), default=None,
                         help="int8: add the INT8 network emulated on the executor (with --calibration-images; "
                              "docs/int8.md); the float paths always run (default: fp32 only, unless "
                              "--calibration-images is given)")
    options.add_json_arg(compare, "the paths, pairs and agreement", switch=True)
    options.add_int8_args(compare)
    compare.set_defaults(run=run_compare)


def run_export(args) -> int:
    from wts_export.onnx_export import export_onnx

    args.checkpoint = options.take_weights(args)
    size = args.input_size or DEFAULT_INPUT_SIZE
    path = export_onnx(args.checkpoint, args.output, size, dynamic=args.dynamic,
                       opset=args.opset, simplify=args.simplify, force=args.force)
    shape = "[N, 3, H, W], N, H and W dynamic" if args.dynamic else "[1, 3, %d, %d] (N, C, H, W)" % size[::-1]
    print(f"wrote {path} (opset {args.opset}, input {shape}{', simplified' if args.simplify else ''})")
    return 0


def run_compare(args) -> int:
    from runtime.compare import (INT8_PATH, agreement, compare_batch, format_agreement, format_table, open_paths,
                                 to_records)

    fixed = args.input_size
    int8 = options.int8_settings(args, "stretch" if fixed else "original", fixed or DEFAULT_INPUT_SIZE,
                                 precision=args.precision)
    options.check_json_path(args)
    _check_images(args.images)
    paths, skipped = open_paths(args.weights, args.onnx, args.engine, args.device, int8)
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    try:
        size = fixed or next((b.fixed_input_size for _, b in paths if b.fixed_input_size), None)
        reports = [r for image in args.images for r in compare_batch(paths, *_network_input(image, size),
                                                                   args.score_threshold, args.match_iou)]
    finally:
        for _, backend in paths:
            backend.close()
    summary = agreement(reports)
    if args.json_path:
        from retinaface_trt.fileio import write_text_atomic

        write_text_atomic(args.json_path, json.dumps({"paths": [n for n, _ in paths], "skipped": skipped,
                                                      "pairs": to_records(reports), "agreement": summary},
                                                     indent=2) + "\n", force=args.force)
    if not args.json_path or not options.is_stdout(args.json_path):
        print(format_table(reports) + "\n\n" + format_agreement(summary))
    worst = max((r.max_abs() for r in reports if INT8_PATH not in (r.a, r.b)), default=0.0)
    if worst > args.atol:
        print(f"retinaface-trt compare: outputs differ by up to {worst:.3g}, more than --atol {args.atol:g}",
              file=sys.stderr)
        return 1
    return 0


def _check_images(images) -> None:
    """Every image is there before the models load (each path is loaded and exported first)."""
    import os

    for image in images:
        if not os.path.isfile(image):
            what = "is a folder; compare takes image files" if os.path.isdir(image) else "no such file; check the path"
            raise RetinaFaceError(f"{image}: {what}")


def _network_input(image_path: str, size):
    """(float32 [1, 3, H, W] BGR minus mean, label): stretched to ``size`` (W, H) or at the image's own size."""
    from pathlib import Path

    from runtime.image_io import read_image
    from runtime.preprocess import resize_image, to_network_input

    bgr = read_image(image_path)
    resized, _ = resize_image(bgr, "stretch" if size else "original", size or (0, 0))
    size = (resized.shape[1], resized.shape[0])
    return to_network_input([resized], "cpu"), f"{Path(image_path).name}@{size[0]}x{size[1]}"
