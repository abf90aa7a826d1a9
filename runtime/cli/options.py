"""Flag groups shared by the subcommands: each flag is declared once, with its choices, default and range.

Each group is a :class:`FlagGroup` object that adds its flags (``add(parser)``) and turns the parsed namespace
into typed settings (``parse(args)``), as Polygraphy's argument groups do: a subcommand lists the groups it
takes, and hands the settings (never the namespace) to the library and to job code. The values are checked by
their ``type`` while argparse parses them, so a bad value is refused before any work starts.
:meth:`DetectorSettings.options` maps the model and pipeline settings to the keyword arguments of
:meth:`runtime.detector.Detector.from_options`, so every flag reaches the library the same way from every
subcommand. Choices come from the library (backends, precisions, resize policies), never re-listed here.

The spellings of the original detect.py (``-m/--trained_model``, ``--network``, ``--cpu``,
``--confidence_threshold``, ``--top_k``, ``--nms_threshold``, ``--keep_top_k``; ``--vis_thres`` and
``-s/--save_image`` in ``detect``) are accepted as hidden aliases of the flags they mean (same destination,
same check; docs/detection.md has the table). ``--network`` is not an option: the backbone is read from the
weights, and :meth:`ModelSettings.check_network` refuses a ``--network`` that disagrees with them.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from retinaface_trt.errors import RetinaFaceError
from network.config import BACKBONES
from runtime.backends import BACKENDS, PRECISIONS
from retinaface_trt.thresholds import Thresholds
from runtime.face import DEFAULT_VIS_THRESHOLD
from runtime.options import (DEVICES_HELP, DEFAULT_INPUT_SIZE, DEFAULT_MAX_PIXELS, RESIZE_POLICIES, MAX_INPUT_SIDE,
                             check_count, check_device, check_non_negative, check_probability)

_DEFAULTS = Thresholds()
POSTPROCESS = ("pipeline", "network")     # runtime.detector.POSTPROCESS (that module imports torch)


def description(doc: str) -> str:
    """The first paragraph of a module docstring as a ``--help`` description: reStructuredText's double backticks
    become single quotes, as the rest of --help writes code."""
    return re.sub(r"``(.+?)``", r"'\1'", doc.split("\n\n")[0])


def argparse_type(check, name: str):
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


size = argparse_type(_parse_size, "size")                      # "640x480" -> (640, 480), (W, H)
probability = argparse_type(lambda t: check_probability("the value", t), "probability")
count = argparse_type(lambda t: check_count("the value", t), "count")
count_or_zero = argparse_type(lambda t: check_count("the value", t, low=0), "count_or_zero")
non_negative = argparse_type(lambda t: check_non_negative("the value", t), "non_negative")
device = argparse_type(check_device, "device")


def _origin_size(text: str) -> str:
    """The original test_widerface.py's ``--origin_size True|False`` → a resize policy: True is ``original``
    (each image at its own size); False (its 1600-pixel short side) has no counterpart here: refused, with why."""
    if text.strip().lower() in ("true", "1", "yes"):
        return "original"
    if text.strip().lower() in ("false", "0", "no"):
        raise RetinaFaceError("--origin_size False (the original's resize to a 1600-pixel short side, at most 2150 "
                              "long) has no counterpart here: use --resize stretch or letterbox with --input-size "
                              "WxH, or drop the flag (images run at their own size, --origin_size True)")
    raise RetinaFaceError(f"--origin_size takes True or False, found {text!r}; here it is --resize original (the "
                          "default)")


origin_size = argparse_type(_origin_size, "origin_size")


# detect.py's --network values → the configuration names of network.config (and the weights' own names).
NETWORK_NAMES = {"mobile0.25": "mobilenet0.25", **{name: name for name in BACKBONES}}


SPELLINGS_GIVEN = "_spellings_given"   # namespace entry of StoreOnce while parsing (removed by main.parse_args)


class StoreOnce(argparse.Action):
    """Store a value, refusing (usage error) another value given for the same destination under another
    spelling: ``-m a.pth --weights b.pth`` would otherwise silently take the last."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault(SPELLINGS_GIVEN, {})
        previous = given.get(self.dest)
        if previous is not None and previous[0] != option_string and previous[1] != values:
            parser.error(f"{option_string} {values} conflicts with {previous[0]} {previous[1]}: they are the same "
                         "setting; give it once")
        given[self.dest] = (option_string, values)
        setattr(namespace, self.dest, values)


def alias(parser, action: argparse.Action, *names: str) -> None:
    """Accept ``names`` for ``action`` (same destination, type and check), hidden from ``--help``; two spellings
    given different values are refused (:class:`StoreOnce`)."""
    if type(action).__name__ == "_StoreAction":
        action.__class__ = StoreOnce     # the canonical spelling checks against its aliases too
    parser.add_argument(*names, dest=action.dest, type=action.type, metavar=action.metavar, action=StoreOnce,
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_device_arg(parser, default: str = "auto") -> argparse.Action:
    return parser.add_argument("--device", type=device, default=default, help=f"{DEVICES_HELP} (default: {default})")


class FlagGroup:
    """Flags that add themselves to a parser (:meth:`add`) and parse into typed settings (:meth:`parse`)."""

    def add(self, parser) -> "FlagGroup":
        raise NotImplementedError

    def parse(self, args: argparse.Namespace):
        raise NotImplementedError


@dataclass(frozen=True)
class ModelSettings:
    """What runs the network (the model group's flags)."""

    weights: str | None
    engine: str | None
    backend: str
    device: str
    precision: str
    threads: int | None
    engine_cache: str | None
    network: str | None = None     # detect.py's --network, checked against the weights (check_network)

    def check_network(self, cfg) -> None:
        """Raise RetinaFaceError when detect.py's ``--network`` names another backbone than ``cfg`` (the
        :class:`network.config.RetinaFaceConfig` read from the weights)."""
        if self.network and NETWORK_NAMES[self.network] != cfg.name:
            raise RetinaFaceError(f"--network {self.network} does not match the weights, which hold a {cfg.name} "
                                  "network; the backbone is read from the weights: drop --network (or pass the "
                                  "other weights)")


class ModelFlags(FlagGroup):
    """--weights, --engine, --backend, --device, --precision, --threads, --engine-cache: what runs the network."""

    def __init__(self, *, engine: bool = True, default_device: str = "auto"):
        self.engine, self.default_device = engine, default_device

    def add(self, parser) -> "ModelFlags":
        group = parser.add_argument_group("model")
        weights = group.add_argument("--weights", help=".pth or .wts weights (the hand-built network; TensorRT "
                                                       "engines are built from them on demand)")
        alias(group, weights, "-m", "--trained_model")
        group.add_argument("--network", choices=NETWORK_NAMES, default=None, help=argparse.SUPPRESS)
        if self.engine:
            group.add_argument("--engine", help="a serialized TensorRT engine, or an .onnx model")
        group.add_argument("--backend", default="auto", choices=BACKENDS,
                           help="what runs the network (default auto: TensorRT for an engine on a GPU, ONNX Runtime "
                                "for an .onnx file, else the fastest CPU backend installed or the executor; torch is "
                                "the executor's old name)")
        device_action = add_device_arg(group, self.default_device)
        group.add_argument("--cpu", dest=device_action.dest, action="store_const", const="cpu",
                           default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        group.add_argument("--precision", default="fp32", choices=PRECISIONS,
                           help="network precision (default fp32; TensorRT engines given with --engine keep theirs)")
        group.add_argument("--threads", type=count, default=None,
                           help="CPU threads for the network and the pipeline (default: one per core; fewer avoid "
                                "contention where other programs share the cores)")
        group.add_argument("--engine-cache", metavar="DIR",
                           help="where engines built from --weights are kept (default ~/.cache/retinaface-trt)")
        return self

    def parse(self, args: argparse.Namespace) -> ModelSettings:
        return ModelSettings(args.weights, args.engine if self.engine else None, args.backend, args.device,
                             args.precision, args.threads, args.engine_cache, args.network)


@dataclass(frozen=True)
class PipelineSettings:
    """How images become faces (the pipeline group's flags)."""

    resize: str
    input_size: tuple[int, int]
    thresholds: Thresholds
    postprocess: str
    max_pixels: int


class PipelineFlags(FlagGroup):
    """--resize, --input-size, detect.py's thresholds and --max-pixels: how images become faces."""

    def __init__(self, *, resize_default: str = "original"):
        self.resize_default, self.thresholds = resize_default, ThresholdFlags()

    def add(self, parser) -> "PipelineFlags":
        group = parser.add_argument_group("pipeline")
        group.add_argument("--resize", default=self.resize_default, choices=RESIZE_POLICIES,
                           help=f"original: each image at its own size (detect.py); stretch / letterbox: to "
                                f"--input-size; padded: at its own size on one of a few canvas sizes, padded with "
                                f"the mean (many sizes at full speed; see docs/detection.md) "
                                f"(default {self.resize_default})")
        group.add_argument("--input-size", type=size, default=DEFAULT_INPUT_SIZE, metavar="WxH",
                           help="network input for stretch / letterbox (default %dx%d)" % DEFAULT_INPUT_SIZE)
        group.add_argument("--origin_size", dest="resize", type=origin_size, default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS)
        self.thresholds.add(group)
        group.add_argument("--postprocess", default="pipeline", choices=POSTPROCESS,
                           help="pipeline: decoding and NMS as detect.py (default); network: the model's own, for "
                                "engines built --with-postprocess (see docs/tensorrt.md)")
        group.add_argument("--max-pixels", type=count_or_zero, default=DEFAULT_MAX_PIXELS,
                           help=f"refuse larger images (default {DEFAULT_MAX_PIXELS}; 0: no limit)")
        return self

    def parse(self, args: argparse.Namespace) -> PipelineSettings:
        return PipelineSettings(args.resize, tuple(args.input_size), self.thresholds.parse(args), args.postprocess,
                                args.max_pixels)


THRESHOLDS = (("--confidence-threshold", probability, "confidence_threshold", "keep candidates scoring above this"),
              ("--nms-threshold", probability, "nms_threshold", "IoU above which NMS removes a box"),
              ("--top-k", count, "top_k", "candidates kept before NMS"),
              ("--keep-top-k", count, "keep_top_k", "detections kept after NMS"))


class ThresholdFlags(FlagGroup):
    """detect.py's four thresholds (and their detect.py spellings). ``optional``: default None (not given), for
    a command where they only apply with another flag (:meth:`given`); ``note`` is appended to each help."""

    def __init__(self, *, optional: bool = False, note: str = ""):
        self.optional, self.note = optional, note

    def add(self, group) -> "ThresholdFlags":
        for flag, kind, name, text in THRESHOLDS:
            value = None if self.optional else getattr(_DEFAULTS, name)
            shown = "" if self.optional else f" (default {value})"
            action = group.add_argument(flag, type=kind, default=value, metavar=flag[2:].upper().replace("-", "_"),
                                        help=f"{text}{shown}{self.note}")
            alias(group, action, flag.replace("-", "_").replace("__", "--", 1))
        return self

    def given(self, args: argparse.Namespace) -> dict:
        """{field: value} of the thresholds given on the command line (optional flags)."""
        values = vars(args)
        return {name: values[name] for name in Thresholds.names() if values[name] is not None}

    def parse(self, args: argparse.Namespace) -> Thresholds:
        return Thresholds(**self.given(args))


class VisThresholdFlag(FlagGroup):
    """--vis-threshold (detect.py's --vis_thres): the lowest score a face needs to be reported (and drawn, for a
    command that draws: ``drawn``)."""

    def __init__(self, *, drawn: bool = True):
        self.drawn = drawn

    def add(self, parser) -> "VisThresholdFlag":
        what = "reported and drawn" if self.drawn else "reported"
        action = parser.add_argument("--vis-threshold", type=probability, default=DEFAULT_VIS_THRESHOLD,
                                     help=f"faces {what} from this score (default {DEFAULT_VIS_THRESHOLD})")
        alias(parser, action, "--vis_thres")
        return self

    def parse(self, args: argparse.Namespace) -> float:
        return args.vis_threshold


STDOUT_NAMES = ("-", "/dev/stdout")


def add_json_arg(parser, what: str, *, switch: bool = False) -> None:
    """``--json OUT.json`` (``-``: standard output) and ``--force``, the same in every command. ``switch``: the
    command had ``--json`` as a switch printing JSON, so ``--json`` alone still means standard output."""
    extra = dict(nargs="?", const="-") if switch else {}
    alone = "; --json alone: standard output" if switch else ""
    parser.add_argument("--json", dest="json_path", metavar="OUT.json", **extra,
                        help=f"write {what} as JSON to this file (- for standard output{alone}); missing folders "
                             "are created")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --json file")


def is_stdout(path: str) -> bool:
    return path in STDOUT_NAMES


def check_json_path(args: argparse.Namespace) -> None:
    """``--json``'s file checked before any work (see retinaface_trt.fileio.check_writable); an image file name is
    refused, as it is an input that ``--json`` took where the switch form was meant."""
    path = getattr(args, "json_path", None)
    if not path or is_stdout(path):
        return
    from runtime.options import IMAGE_SUFFIXES

    if path.lower().endswith(IMAGE_SUFFIXES):
        raise RetinaFaceError(f"--json {path}: that is an image, not a JSON file name; put --json after the "
                              "images, or write --json - (standard output) or --json OUT.json")
    from retinaface_trt.fileio import check_writable

    check_writable(path, args.force)


def add_cuda_device_arg(parser) -> None:
    """``--device``: the CUDA device TensorRT works on (a CPU is no choice there, unlike detect's --device); the
    default is ``auto`` as in every command, which here means CUDA device 0."""
    parser.add_argument("--device", default="auto", metavar="N|cuda:N",
                        help="CUDA device to use: N, cuda:N, cuda or auto (default: auto, CUDA device 0; TensorRT "
                             "needs an NVIDIA GPU)")


def add_weights_arg(parser, positional: str, *, help: str) -> None:
    """``--weights W``, as in every command, and W as the first positional (the older spelling, kept): the
    positional ``positional`` (named for --help) is optional; :func:`take_weights` puts the values in place."""
    parser.add_argument("--weights", dest="weights_flag", metavar=positional.upper(), help=help)
    parser.add_argument("weights_positional", nargs="?", metavar=positional.upper(),
                        help="the same as --weights (the older spelling)")


def take_weights(args: argparse.Namespace, required: bool = True):
    """The weights of :func:`add_weights_arg` (None when absent and not ``required``). A usage error (exit 2) if
    they are given twice (--weights and the positional) or, when ``required``, not at all."""
    if args.weights_flag is not None and args.weights_positional is not None:
        _usage_error(args, f"the weights are given twice, with --weights and as {args.weights_positional}; "
                           "keep --weights")
    weights = args.weights_flag if args.weights_flag is not None else args.weights_positional
    if required and weights is None:
        _usage_error(args, "no weights given: pass --weights W (a .pth or .wts file)")
    return weights


def _usage_error(args: argparse.Namespace, message: str):
    parser = getattr(args, "command_parser", None)
    if parser is None:
        raise RetinaFaceError(message)
    parser.error(message)


# INT8 ---------------------------------------------------------------------------------------------------------
class Int8Flags(FlagGroup):
    """The calibration flags of ``--precision int8`` (docs/int8.md). ``build`` adds the engine-only ones: the
    route (explicit Q/DQ or TensorRT's calibrator) and the resize policy the engine will be used with."""

    FLAGS = ("calibration_images", "calibration_cache", "keep_precision")

    def __init__(self, *, build: bool = False):
        self.build = build

    def add(self, parser) -> "Int8Flags":
        from network.quantize import METHODS
        from runtime.calibration import DEFAULT_COUNT, MIN_IMAGES, ROUTES

        group = parser.add_argument_group("INT8 (with --precision int8; docs/int8.md)")
        group.add_argument("--calibration-images", type=Path, metavar="DIR",
                           help="folder of calibration images (subfolders included), pre-processed as the network's "
                                "inputs")
        group.add_argument("--calibration-count",
                           type=argparse_type(lambda t: check_count("the value", t, low=MIN_IMAGES),
                                              "calibration_count"),
                           default=DEFAULT_COUNT, metavar="N",
                           help=f"images used, evenly spread over the folder (default {DEFAULT_COUNT}, at least "
                                f"{MIN_IMAGES})")
        group.add_argument("--calibration-cache", type=Path, metavar="FILE",
                           help="read the calibration from FILE when it was made for the same weights, images and "
                                "settings; else calibrate and write it (a cache made for others is refused)")
        group.add_argument("--calibration-method", choices=METHODS, default="entropy",
                           help="entropy (TensorRT's KL-divergence method, default), percentile (99.99%%) or max")
        group.add_argument("--keep-precision", action="append", default=[], metavar="PATTERN",
                           help="keep the layers whose PyTorch module path matches PATTERN (fnmatch, e.g. "
                                "'body.stage1.*') in float32, beyond the first convolutions and the heads; '!PATTERN' "
                                "quantizes them even where kept by default; repeatable")
        if self.build:
            group.add_argument("--int8-route", choices=ROUTES, default="explicit",
                               help="explicit: Q/DQ layers with the project's scales (every TensorRT version; what "
                                    "`evaluate --precision int8` measures); implicit: TensorRT's entropy calibrator "
                                    "(8.6 and 10.x only) (default %(default)s)")
            group.add_argument("--calibration-resize", choices=RESIZE_POLICIES, default="stretch",
                               help="how images will be fitted to --input-size when the engine runs: stretch "
                                    "(default), letterbox, or original (each image at its own size, for a "
                                    "dynamic-size engine)")
        return self

    def parse(self, args: argparse.Namespace, resize: str, input_size, precision: str | None = "int8"):
        """The ``runtime.calibration.Int8Settings`` given by the INT8 flags, or None without them.

        ``precision``: the command's --precision (the flags must come exactly with "int8"); None for a command
        without one (compare: the flags add the emulated INT8 path).
        """
        given = [f"--{name.replace('_', '-')}" for name in self.FLAGS if vars(args)[name]]
        if precision is not None and precision != "int8":
            if given:
                raise RetinaFaceError(f"{', '.join(given)} apply to --precision int8 only; add it or drop them")
            return None
        if args.calibration_images is None:
            if precision == "int8":
                raise RetinaFaceError("--precision int8 needs --calibration-images DIR: a folder of images like the "
                                      "ones to detect faces in (docs/int8.md)")
            if given:
                raise RetinaFaceError(f"{', '.join(given)} need --calibration-images DIR")
            return None
        from runtime.calibration import Int8Settings

        return Int8Settings(args.calibration_images, args.calibration_count, args.calibration_cache,
                            args.calibration_method, tuple(args.keep_precision), resize, tuple(input_size),
                            args.int8_route if self.build else "explicit")


@dataclass(frozen=True)
class DetectorSettings:
    """The model, pipeline and INT8 settings: everything :meth:`runtime.detector.Detector.from_options` takes."""

    model: ModelSettings
    pipeline: PipelineSettings
    int8: object = None          # runtime.calibration.Int8Settings, or None

    def options(self) -> dict:
        """The keyword arguments of ``Detector.from_options``; RetinaFaceError naming the flags without a model."""
        model, pipeline = self.model, self.pipeline
        if model.weights is None and model.engine is None:
            raise RetinaFaceError("no model given: pass --weights W (a .pth or .wts file, e.g. "
                                  "weights/mobilenet0.25_Final.pth) or --engine E (a TensorRT engine or an .onnx model)")
        return dict(weights=model.weights, engine=model.engine, backend=model.backend, device=model.device,
                    precision=model.precision, engine_cache=model.engine_cache, threads=model.threads,
                    resize=pipeline.resize, input_size=pipeline.input_size, thresholds=pipeline.thresholds,
                    max_pixels=pipeline.max_pixels, postprocess=pipeline.postprocess, int8=self.int8)


class DetectorFlags(FlagGroup):
    """The model and pipeline groups, and the INT8 group where the command takes it (``int8``)."""

    def __init__(self, *, int8: bool = True, engine: bool = True, default_device: str = "auto",
                 resize_default: str = "original"):
        self.model = ModelFlags(engine=engine, default_device=default_device)
        self.pipeline = PipelineFlags(resize_default=resize_default)
        self.int8 = Int8Flags() if int8 else None

    def add(self, parser) -> "DetectorFlags":
        for group in (self.model, self.pipeline, self.int8):
            if group is not None:
                group.add(parser)
        return self

    def parse(self, args: argparse.Namespace) -> DetectorSettings:
        model, pipeline = self.model.parse(args), self.pipeline.parse(args)
        if self.int8 is None and model.precision == "int8":
            raise RetinaFaceError("--precision int8 needs calibration images, which this command does not take; "
                                  "detect, evaluate, compare and build do (docs/int8.md)")
        calibration = self.int8.parse(args, pipeline.resize, pipeline.input_size, model.precision) \
            if self.int8 else None
        return DetectorSettings(model, pipeline, calibration)
