"""``retinaface-trt evaluate``: WIDER FACE val AP (easy / medium / hard) with the official protocol.

Runs a :class:`runtime.detector.Detector` on ``<images>/<event>/<name>.jpg``, writes the predictions in
the official text format, and scores them against the ``.mat`` ground truth on the evaluated images
only. See ``docs/evaluation.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from retinaface_trt.errors import RetinaFaceError
from runtime.cli import options

DETECTOR = options.DetectorFlags()


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="WIDER FACE val AP (easy / medium / hard) with the official protocol",
        description="Detect faces in WIDER FACE val images and compute easy / medium / hard AP.")
    parser.add_argument("--images", required=True, type=Path, help="folder of <event>/<name>.jpg images")
    parser.add_argument("--ground-truth", required=True, type=Path,
                        help="folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat")
    parser.add_argument("--list", type=Path, help="evaluate only the images listed ('/<event>/<name>.jpg' lines)")
    parser.add_argument("--scale-manifest", type=Path,
                        help="manifest.tsv of resized images: map boxes back to original pixels")
    DETECTOR.add(parser)
    parser.add_argument("--out", type=Path, default=Path("out/evaluate"),
                        help="output folder for predictions/, summary.json, pr_curves.png (default: out/evaluate)")
    parser.set_defaults(run=run)


def _check_paths(args: argparse.Namespace) -> None:
    for flag, path, is_dir in (("--images", args.images, True), ("--ground-truth", args.ground_truth, True),
                               ("--list", args.list, False), ("--scale-manifest", args.scale_manifest, False),
                               ("--weights", args.weights and Path(args.weights), False),
                               ("--engine", args.engine and Path(args.engine), False)):
        if path is not None and not (path.is_dir() if is_dir else path.is_file()):
            kind = "folder" if is_dir else "file"
            raise RetinaFaceError(f"{flag}: {kind} {path} does not exist; check the path")


def _check_extras() -> None:
    """scipy reads the ground truth and matplotlib draws the curves at the very end: both are checked first."""
    from retinaface_trt.extras import require

    require("scipy.io", "eval", "evaluate")
    require("matplotlib", "eval", "evaluate")


def run(args: argparse.Namespace) -> int:
    from retinaface_trt.fileio import check_output_dir
    from runtime.evaluation.widerface import load_ground_truth, read_image_list, read_scale_manifest
    from runtime.evaluation.run import check_inputs, evaluate_checked

    _check_extras()
    _check_paths(args)
    check_output_dir(args.out)
    ground_truth = load_ground_truth(args.ground_truth)
    keys = read_image_list(args.list) if args.list else None
    manifest = read_scale_manifest(args.scale_manifest) if args.scale_manifest else None
    keys, truth = check_inputs(args.images, ground_truth, keys, manifest)   # before the model loads: the usual traps
    chosen = DETECTOR.parse(args)
    settings = chosen.options()
    from runtime.detector import Detector  # after the cheap checks: it may import torch or TensorRT

    with Detector.from_options(**settings) as detector:
        chosen.model.check_network(detector.backend.cfg)
        thresholds = settings.pop("thresholds").as_dict()        # summary.json: the four fields, as before
        settings = {**settings, **thresholds, "input_size": list(chosen.pipeline.input_size),
                    "int8": _int8_record(settings["int8"], detector),
                    "scale_manifest": str(args.scale_manifest) if args.scale_manifest else None}
        summary = evaluate_checked(detector, args.images, truth, keys, manifest, args.out, settings,
                                   show_progress=not args.quiet)
    note = " (INT8 emulated on the executor)" if settings["int8"] and settings["int8"]["emulated"] else ""
    print(" ".join(f"{s} AP {summary[s]:.4f} ({summary['faces'][s]} faces)" for s in ("easy", "medium", "hard"))
          + f" on {summary['images']} images{note}; results in {args.out}")
    return 0


def _int8_record(int8, detector) -> dict | None:
    """The INT8 settings for summary.json, and whether the INT8 network was emulated (the executor) or an engine."""
    if int8 is None:
        return None
    return {**int8.describe(), "emulated": detector.backend.name == "executor"}
