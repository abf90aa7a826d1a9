"""``retinaface-trt build WEIGHTS -o ENGINE`` (or ``build --onnx MODEL.onnx -o ENGINE``) and
``retinaface-trt inspect ENGINE``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from retinaface_trt.errors import RetinaFaceError
from runtime.backends import PRECISIONS
from runtime.cli import options


def add_parser(subparsers) -> None:
    build = subparsers.add_parser("build", help="build a TensorRT engine from .wts/.pth weights or an ONNX model")
    build.add_argument("weights", type=Path, nargs="?", help="RetinaFace weights, .wts or .pth (hand-built network)")
    build.add_argument("--onnx", type=Path, metavar="MODEL.onnx",
                       help="build from this ONNX model (from export-onnx) with TensorRT's ONNX parser instead")
    build.add_argument("-o", "--output", type=Path, required=True, help="engine file to write (plus ENGINE.json)")
    build.add_argument("--precision", choices=PRECISIONS, default="fp32",
                       help="fp32 (TF32 off, matches PyTorch) or fp16 (default: %(default)s)")
    build.add_argument("--input-size", type=options.size, default=(640, 640), metavar="WxH",
                       help="network input size, the profile's optimum (default: 640x640)")
    build.add_argument("--min-size", type=options.size, metavar="WxH", help="with --max-size: dynamic height and width")
    build.add_argument("--max-size", type=options.size, metavar="WxH")
    build.add_argument("--opt-batch", type=int, default=1, help="batch size to tune for (default: %(default)s)")
    build.add_argument("--max-batch", type=int, default=8, help="largest batch (default: %(default)s)")
    build.add_argument("--workspace", type=int, default=1024, metavar="MIB",
                       help="builder scratch memory limit in MiB (default: %(default)s)")
    build.add_argument("--timing-cache", type=Path, help="timing cache file, reused and updated")
    build.add_argument("--force", action="store_true", help="overwrite an existing engine")
    build.set_defaults(run=run_build)
    inspect = subparsers.add_parser("inspect", help="show an engine's sidecar and its layers")
    inspect.add_argument("engine", type=Path, help="engine file written by `build`")
    inspect.add_argument("--device", type=int, default=0, help="CUDA device index (default: %(default)s)")
    inspect.set_defaults(run=run_inspect)


def run_build(args) -> int:
    from runtime.backends.tensorrt.build import BuildOptions, build_engine_file
    from runtime.backends.tensorrt.compat import import_tensorrt

    options = BuildOptions(precision=args.precision, input_size=args.input_size, min_size=args.min_size,
                           max_size=args.max_size, opt_batch=args.opt_batch, max_batch=args.max_batch,
                           workspace_mib=args.workspace, timing_cache=args.timing_cache)
    options.validate()
    if (args.weights is None) == (args.onnx is None):
        raise RetinaFaceError("build needs exactly one model: WEIGHTS (.wts/.pth) or --onnx MODEL.onnx")
    source = args.weights or args.onnx
    if not source.is_file():
        raise RetinaFaceError(f"model file {source} does not exist; pass a .wts/.pth file or --onnx MODEL.onnx")
    trt = import_tensorrt()
    if args.onnx is not None:
        from runtime.backends.tensorrt.build_onnx import build_engine_from_onnx
        path = build_engine_from_onnx(args.onnx, args.output, options, force=args.force, trt=trt)
    else:
        path = build_engine_file(args.weights, args.output, options, force=args.force, trt=trt)
    print(f"wrote {path} and {path.name}.json (TensorRT {trt.__version__}, {args.precision})")
    return 0


def run_inspect(args) -> int:
    from runtime.backends.tensorrt.sidecar import read_sidecar

    info = read_sidecar(args.engine)
    print(json.dumps(info, indent=2, sort_keys=True))
    try:
        layers = _layer_information(args.engine, args.device)
    except RetinaFaceError as error:
        print(f"layer information unavailable: {error}", file=sys.stderr)
        return 0
    print(layers)
    return 0


def _layer_information(engine_path: Path, device_index: int) -> str:
    from runtime.backends.tensorrt.engine import TensorRTRunner

    with TensorRTRunner(engine_path, device_index) as runner:
        return runner.layer_information()
