"""Which INT8 quantization points cost most: each point quantized alone, every other one float32, on the executor.

For every quantization point of the network (``--all``: the points kept in float32 by default too; otherwise those
that the defaults and ``--keep-precision`` leave quantized), the network with only that point in INT8 is run on
``--images`` of the calibration images, and the mean absolute change of the face score (conf[:, 1]) and of the box
regression (loc) over the anchors the float network scores ≥ 0.3 is printed, worst first. The points at the top are
the candidates for ``--keep-precision`` (docs/int8.md, "The layers that cost most"). The flags are those of
``--precision int8`` (``runtime.cli.options.Int8Flags``); ``--calibration-cache`` is required, so that the
statistics are computed once (a first run writes the cache).

    python tools/int8_sensitivity.py --weights ../shared/weights/mobilenet0.25_Final.pth \\
        --calibration-images ../shared/widerface/val_subset_416/images --calibration-cache out/int8/cal_all.json
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIDENT = 0.3     # anchors the float network scores at least this are compared (faces and near-faces)


def parse(argv=None) -> argparse.Namespace:
    from runtime.cli import options
    from runtime.options import DEFAULT_INPUT_SIZE, RESIZE_POLICIES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help=".pth or .wts weights")
    parser.add_argument("--resize", default="original", choices=RESIZE_POLICIES,
                        help="as for evaluate (default original: each image at its own size)")
    parser.add_argument("--input-size", type=options.size, default=DEFAULT_INPUT_SIZE, metavar="WxH")
    parser.add_argument("--images", type=options.count, default=8,
                        help="calibration images measured on, evenly spread (default 8)")
    parser.add_argument("--all", action="store_true", help="also the points kept in float32 by default")
    parser.add_argument("--top", type=options.count, default=15, help="rows printed (default 15)")
    options.Int8Flags().add(parser)
    args = parser.parse_args(argv)
    if args.calibration_images is None or args.calibration_cache is None:
        parser.error("--calibration-images and --calibration-cache are required")
    return args


def change(backend, inputs, references) -> tuple[float, float]:
    """Mean |Δ score| and mean |Δ loc| over the anchors the float network scores ≥ CONFIDENT, averaged over images."""
    scores, boxes = [], []
    for x, (loc, conf, _) in zip(inputs, references):
        got_loc, got_conf, _ = backend.infer(x)
        confident = conf[..., 1] >= CONFIDENT
        scores.append(float((got_conf[..., 1] - conf[..., 1]).abs()[confident].mean()))
        boxes.append(float((got_loc - loc).abs()[confident].mean()))
    return sum(scores) / len(scores), sum(boxes) / len(boxes)


def points_of(weights, settings, every: bool) -> list[str]:
    """The quantization points measured: those ``settings`` quantize, or (``every``) all of the network's."""
    from network.config import config_for_weights
    from network.quantize import QuantizationPlan
    from runtime import calibration as cal
    from wts_export.weights import load_weights

    arrays = load_weights(weights)
    points = sorted(cal.observed_network(arrays, config_for_weights(arrays))[1])
    plan = QuantizationPlan({}, settings.keep)
    return points if every else [p for p in points if not plan.kept(p)]


def main(argv=None) -> int:
    from runtime import calibration as cal
    from runtime.backends.executor import ExecutorBackend
    from runtime.cli.options import Int8Flags

    args = parse(argv)
    logging.getLogger("retinaface_trt").setLevel(logging.ERROR)       # "INT8 is emulated" once per network
    settings = Int8Flags().parse(args, args.resize, args.input_size)
    files = cal.calibration_images(settings)
    inputs = list(cal.network_inputs(files[::max(1, len(files) // args.images)][:args.images], settings, "cpu"))
    reference = ExecutorBackend(args.weights)
    references = [reference.infer(x) for x in inputs]
    quantized = ExecutorBackend(args.weights, precision="int8", int8=settings)     # calibrates if not cached
    points = points_of(args.weights, settings, args.all)
    score, box = change(quantized, inputs, references)
    print(f"as configured: mean |Δ score| {score:.4f}, mean |Δ loc| {box:.4f}")
    rows = []
    for point in points:
        alone = dataclasses.replace(settings, keep=("*", f"!{point}"))
        rows.append((*change(ExecutorBackend(args.weights, precision="int8", int8=alone), inputs, references), point))
    print(f"{len(points)} points, each quantized alone, worst first:\n  |Δ score|  |Δ loc|  point")
    for score, box, point in sorted(rows, reverse=True)[:args.top]:
        print(f"{score:11.4f} {box:8.4f}  {point}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
