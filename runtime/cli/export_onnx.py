"""``retinaface-trt export-onnx --weights CHECKPOINT OUT.onnx``: the PyTorch model as an ONNX file (docs/onnx.md)."""

from __future__ import annotations

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
    export.set_defaults(run=run)


def run(args) -> int:
    from retinaface_trt.fileio import check_not_an_input
    from wts_export.onnx_export import export_onnx

    args.checkpoint = options.take_weights(args)
    check_not_an_input(args.output, [args.checkpoint])
    size = args.input_size or DEFAULT_INPUT_SIZE
    path = export_onnx(args.checkpoint, args.output, size, dynamic=args.dynamic,
                       opset=args.opset, simplify=args.simplify, force=args.force)
    shape = "[N, 3, H, W], N, H and W dynamic" if args.dynamic else "[1, 3, %d, %d] (N, C, H, W)" % size[::-1]
    print(f"wrote {path} (opset {args.opset}, input {shape}{', simplified' if args.simplify else ''})")
    return 0


