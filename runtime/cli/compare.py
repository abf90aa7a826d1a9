"""``retinaface-trt compare --weights W IMAGE...``: every available path on the same inputs, pair by pair."""

from __future__ import annotations

import json
import sys

from runtime.cli import options
from runtime.options import DEFAULT_INPUT_SIZE

INT8 = options.Int8Flags()


def add_parser(subparsers) -> None:
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
    INT8.add(compare)
    compare.set_defaults(run=run)


def run(args) -> int:
    from runtime.compare import (INT8_PATH, agreement, compare_batch, format_agreement, format_table, open_paths,
                                 to_records)

    fixed = args.input_size
    int8 = INT8.parse(args, "stretch" if fixed else "original", fixed or DEFAULT_INPUT_SIZE, precision=args.precision)
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

    from retinaface_trt.errors import RetinaFaceError

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
