"""``retinaface-trt export-wts --weights CHECKPOINT OUT.wts [--force]`` (or ``export-wts CHECKPOINT OUT.wts``): convert a PyTorch checkpoint to ``.wts``."""

from __future__ import annotations

import argparse
import logging

from runtime.cli import options

log = logging.getLogger("retinaface_trt.export_wts")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export-wts", help="convert a RetinaFace .pth checkpoint to a tensorrtx .wts file",
        description="Convert a biubug6/Pytorch_Retinaface checkpoint (MobileNet-0.25 or ResNet-50) to the "
                    "tensorrtx .wts text format. num_batches_tracked entries are left out.")
    options.add_weights_arg(parser, "checkpoint", help="the .pth state_dict, e.g. weights/mobilenet0.25_Final.pth")
    parser.add_argument("output", help="the .wts file to write, e.g. weights/mobilenet0.25.wts")
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from network.config import config_for_weights
    from network.weights import check_weights
    from retinaface_trt.fileio import check_not_an_input, check_writable
    from wts_export.weights import checked_state_dict
    from wts_export.wts import write_wts

    args.checkpoint = options.take_weights(args)
    check_not_an_input(args.output, [args.checkpoint])
    check_writable(args.output, args.force)   # fail before the slow load
    state_dict = checked_state_dict(args.checkpoint)
    cfg = config_for_weights(state_dict.keys())
    log.info("recognised %s in %s", cfg.name, args.checkpoint)
    summary = write_wts(check_weights(state_dict, args.checkpoint), args.output, force=args.force)
    print(f"{cfg.name}: wrote {summary.entries} entries, {summary.values:,} values to {args.output}")
    return 0
