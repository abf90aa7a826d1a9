"""``retinaface-trt build --weights W -o ENGINE`` (or ``build W -o ENGINE``) (or ``build --onnx MODEL.onnx -o ENGINE``): a TensorRT engine
and its sidecar, on one CUDA device, optionally portable and optionally with decoding and NMS inside."""

from __future__ import annotations

import argparse
from pathlib import Path

from retinaface_trt.errors import RetinaFaceError
from runtime.backends import PRECISIONS
from runtime.backends.tensorrt.compat import HARDWARE_COMPATIBILITY
from runtime.cli import options


INT8 = options.Int8Flags(build=True)
THRESHOLDS = options.ThresholdFlags(optional=True, note=" (with --with-postprocess; defaults: detect.py's, top-k at "
                                                         "most 3840, TensorRT's limit)")


def add_parser(subparsers) -> None:
    build = subparsers.add_parser("build", help="build a TensorRT engine from .wts/.pth weights or an ONNX model",
                                  description="Build a TensorRT engine (plus ENGINE.json, its sidecar) on one "
                                              "CUDA device. Needs TensorRT and an NVIDIA GPU.")
    options.add_weights_arg(build, "weights", help="RetinaFace weights, .wts or .pth (hand-built network)")
    build.add_argument("--onnx", type=Path, metavar="MODEL.onnx",
                       help="build from this ONNX model (from export-onnx) with TensorRT's ONNX parser instead")
    build.add_argument("-o", "--output", type=Path, required=True, help="engine file to write (plus ENGINE.json)")
    build.add_argument("--precision", choices=PRECISIONS, default="fp32",
                       help="fp32 (TF32 off, matches PyTorch), fp16, or int8 (with --calibration-images; "
                            "docs/int8.md) (default: %(default)s)")
    _add_shape_args(build)
    build.add_argument("--workspace", type=options.count, default=1024, metavar="MIB",
                       help="builder scratch memory limit in MiB (default: %(default)s)")
    build.add_argument("--timing-cache", type=Path, metavar="DIR",
                       help="folder of timing caches, one file per TensorRT version and GPU, reused and updated")
    options.add_cuda_device_arg(build)
    _add_portability_args(build)
    _add_postprocess_args(build)
    INT8.add(build)
    build.add_argument("--force", action="store_true", help="overwrite an existing engine")
    build.set_defaults(run=run_build)


def _add_shape_args(parser) -> None:
    group = parser.add_argument_group("input shapes (one optimization profile)")
    group.add_argument("--input-size", type=options.size, default=(640, 640), metavar="WxH",
                       help="network input size, the profile's optimum (default: 640x640)")
    group.add_argument("--min-size", type=options.size, metavar="WxH",
                       help="smallest input size; with --max-size the height and width are dynamic")
    group.add_argument("--max-size", type=options.size, metavar="WxH",
                       help="largest input size; with --min-size the height and width are dynamic")
    group.add_argument("--opt-batch", type=options.count, default=1, help="batch size to tune for (default: %(default)s)")
    group.add_argument("--max-batch", type=options.count, default=8, help="largest batch (default: %(default)s)")


def _add_portability_args(parser) -> None:
    group = parser.add_argument_group("portable engines")
    group.add_argument("--version-compatible", action="store_true",
                       help="the engine also runs on later TensorRT versions of the same major version (and a "
                            "TensorRT 10 engine on 11); it carries its own lean runtime")
    group.add_argument("--hardware-compatibility", choices=HARDWARE_COMPATIBILITY, default="none",
                       help="none: this GPU architecture only; ampere+: any Ampere or newer GPU (build on one); "
                            "same-cc: GPUs of this compute capability, TensorRT 10.10+ (default: %(default)s)")


def _add_postprocess_args(parser) -> None:
    group = parser.add_argument_group("decoding and NMS inside the engine")
    group.add_argument("--with-postprocess", action="store_true",
                       help="add decoding, top-k and NMS to the engine: its outputs are dets [N, keep-top-k, 15] "
                            "and count [N] (fixed --input-size only; not with --int8-route implicit). TensorRT 10.x is "
                            "reported slower than 8.6 on data-dependent shapes such as NMS, and such engines are "
                            "not replayed from CUDA graphs: time both ways (docs/tensorrt.md)")
    THRESHOLDS.add(group)


def postprocess_settings(args: argparse.Namespace):
    """The engine's Thresholds of ``--with-postprocess`` (defaults where a flag is not given), or None."""
    given = THRESHOLDS.given(args)
    if not args.with_postprocess:
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise RetinaFaceError(f"{flags} only apply to an engine built --with-postprocess; add it or drop them")
        return None
    from retinaface_trt.thresholds import Thresholds

    thresholds = Thresholds(**given)         # a --top-k given is refused past the engine's limit, not clipped
    return (thresholds.check_engine() if "top_k" in given else thresholds).in_engine()


def build_options(args: argparse.Namespace):
    """The BuildOptions given by the flags (validated)."""
    from runtime.backends.tensorrt.build import BuildOptions

    built = BuildOptions(precision=args.precision, input_size=args.input_size, min_size=args.min_size,
                         max_size=args.max_size, opt_batch=args.opt_batch, max_batch=args.max_batch,
                         workspace_mib=args.workspace, timing_cache_dir=args.timing_cache,
                         version_compatible=args.version_compatible,
                         hardware_compatibility=args.hardware_compatibility, postprocess=postprocess_settings(args),
                         int8=INT8.parse(args, args.calibration_resize, args.input_size, args.precision))
    built.validate()
    return built


def _source(args: argparse.Namespace) -> Path:
    weights = options.take_weights(args, required=False)
    args.weights = Path(weights) if weights is not None else None
    if (args.weights is None) == (args.onnx is None):
        raise RetinaFaceError("build needs exactly one model: --weights W (.wts/.pth) or --onnx MODEL.onnx")
    source = args.weights or args.onnx
    if not source.is_file():
        raise RetinaFaceError(f"model file {source} does not exist; pass a .wts/.pth file or --onnx MODEL.onnx")
    return source


def _timing_cache_dir(folder: Path | None) -> None:
    """The timing cache folder must be a folder; it is created if missing."""
    if folder is None:
        return
    if folder.exists() and not folder.is_dir():
        raise RetinaFaceError(f"--timing-cache takes a folder (one cache file per TensorRT version and GPU "
                              f"inside), but {folder} is a file; pass its folder instead")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RetinaFaceError(f"cannot create the timing cache folder {folder}: {error.strerror or error}") from None


def run_build(args) -> int:
    from runtime.backends.tensorrt.build import build_engine_file, prepare_output
    from runtime.backends.tensorrt.compat import import_tensorrt
    from runtime.backends.tensorrt.engine import TorchCuda

    built = build_options(args)
    source = _source(args)
    from retinaface_trt.fileio import check_not_an_input

    check_not_an_input(args.output, [source])
    output = prepare_output(args.output, args.force)         # before any work: nothing is built for nowhere
    trt = import_tensorrt()
    device = TorchCuda().resolve(args.device)
    _timing_cache_dir(args.timing_cache)
    if args.onnx is not None:
        from runtime.backends.tensorrt.build_onnx import build_engine_from_onnx
        path = build_engine_from_onnx(source, output, built, force=args.force, trt=trt, device_index=device.index)
    else:
        path = build_engine_file(source, output, built, force=args.force, trt=trt, device_index=device.index)
    print(f"wrote {path} and {path.name}.json (TensorRT {trt.__version__}, {args.precision}, {device})")
    return 0
