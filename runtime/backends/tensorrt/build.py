"""Build a RetinaFace TensorRT engine from ``.wts`` / ``.pth`` weights and write it with its sidecar.

One :class:`BuildOptions` and one builder configuration (:func:`serialize_network`) serve both routes: the
hand-built network here and TensorRT's ONNX parser (:mod:`runtime.backends.tensorrt.build_onnx`). The
builder takes the ``trt`` module as a parameter: the installed ``tensorrt`` in production, the real
bindings of one version (with stand-ins for Builder and friends) in the conformance tests. Version
differences are delegated to :mod:`runtime.backends.tensorrt.compat`.

Shapes are NCHW float32 with a dynamic batch (``-1``) served by one optimization profile; with
``min_size``/``max_size`` the height and width are dynamic as well. Sizes are given as (W, H) pixels.
The build runs on the CUDA device ``device_index`` (made current for the whole build), and the sidecar
names that device. Timing caches live in a folder, one file per TensorRT version and GPU
(:func:`timing_cache_file`), loaded with mismatches refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from network import INPUT_NAME
from network.config import PRECISIONS
from retinaface_trt.thresholds import Thresholds
from retinaface_trt import __version__
from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.fileio import check_writable, write_bytes_atomic
from runtime.backends.tensorrt import compat as trt_compat
from runtime.backends.tensorrt import sidecar
from runtime.backends.tensorrt.compat import HARDWARE_COMPATIBILITY, PrecisionPlan

@dataclass(frozen=True)
class BuildOptions:
    """What to build. Sizes are (W, H) in pixels; batches are counts of images."""

    precision: str = "fp32"                       # "fp32" (TF32 off), "fp16" or "int8" (docs/int8.md)
    input_size: tuple[int, int] = (640, 640)      # the optimal (and, without min/max, the only) size
    min_size: tuple[int, int] | None = None       # with max_size: dynamic height and width
    max_size: tuple[int, int] | None = None
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 8
    workspace_mib: int = 1024
    timing_cache_dir: Path | None = None          # folder of timing caches (one per TensorRT version + GPU)
    version_compatible: bool = False              # runs on later TensorRT versions (lean runtime embedded)
    hardware_compatibility: str = "none"          # "none", "ampere+" or "same-cc"
    postprocess: Thresholds | None = None   # decoding and NMS inside the engine (fixed size only)
    int8: object = None                           # runtime.calibration.Int8Settings of precision "int8"

    @property
    def dynamic_size(self) -> bool:
        return self.min_size is not None or self.max_size is not None

    def input_shape(self) -> tuple[int, int, int, int]:
        """The network input shape: (-1, 3, H, W), or (-1, 3, -1, -1) with a dynamic size."""
        w, h = (-1, -1) if self.dynamic_size else self.input_size
        return (-1, 3, h, w)

    def profile(self) -> dict[str, tuple[int, int, int, int]]:
        """The optimization profile's "min", "opt", "max" NCHW shapes."""
        lo, hi = (self.min_size, self.max_size) if self.dynamic_size else (self.input_size, self.input_size)
        return {"min": (self.min_batch, 3, lo[1], lo[0]),
                "opt": (self.opt_batch, 3, self.input_size[1], self.input_size[0]),
                "max": (self.max_batch, 3, hi[1], hi[0])}

    def validate(self) -> None:
        """Raise RetinaFaceError for inconsistent sizes, batches or options."""
        if (self.min_size is None) != (self.max_size is None):
            raise RetinaFaceError("--min-size and --max-size go together; pass both or neither")
        p = self.profile()
        if any(not (0 < a <= b <= c) for a, b, c in zip(p["min"], p["opt"], p["max"])):
            raise RetinaFaceError(f"the profile must satisfy 0 < min <= opt <= max per dimension, found "
                                  f"min {p['min']}, opt {p['opt']}, max {p['max']} (NCHW); fix "
                                  "--opt-batch/--max-batch or --min-size/--input-size/--max-size")
        if self.precision not in PRECISIONS:
            raise RetinaFaceError(f"--precision must be {', '.join(PRECISIONS)}, not {self.precision!r}")
        from runtime.calibration import check_int8_request

        check_int8_request(self.precision, self.int8)
        if self.int8 is not None and self.int8.route == "implicit" and self.int8.resize == "original":
            raise RetinaFaceError("TensorRT's calibrator calibrates at one input size (--input-size): use "
                                  "--calibration-resize stretch or letterbox with --int8-route implicit")
        if self.hardware_compatibility not in HARDWARE_COMPATIBILITY:
            raise RetinaFaceError(f"--hardware-compatibility must be one of {', '.join(HARDWARE_COMPATIBILITY)}, "
                                  f"not {self.hardware_compatibility!r}")
        if self.postprocess is not None and self.int8 is not None and self.int8.route == "implicit":
            raise RetinaFaceError("--with-postprocess cannot be built with --int8-route implicit: TensorRT's "
                                  "calibrator would run the data-dependent NMS (reported to crash, NVIDIA/TensorRT#4071); use "
                                  "--int8-route explicit, or build without --with-postprocess")
        if self.postprocess is not None and self.dynamic_size:
            raise RetinaFaceError("--with-postprocess needs a fixed input size (the priors are constants of the "
                                  "engine): drop --min-size/--max-size and pick --input-size WxH")
        if self.workspace_mib <= 0:
            raise RetinaFaceError(f"--workspace must be a positive number of MiB, not {self.workspace_mib}")


def timing_cache_file(folder: str | Path, tensorrt_version: str, device: sidecar.DeviceInfo) -> Path:
    """The timing cache of one TensorRT version and GPU in ``folder``, e.g.
    ``timing-trt10.16.1.11-nvidia-h100-80gb-hbm3-sm9.0.cache``: timings measured elsewhere never mix."""
    gpu = re.sub(r"[^a-z0-9]+", "-", device.name.lower()).strip("-") or "gpu"
    return Path(folder) / f"timing-trt{tensorrt_version}-{gpu}-sm{device.compute_capability}.cache"


def build_serialized(trt, weights: Mapping[str, np.ndarray], cfg, options: BuildOptions, device: sidecar.DeviceInfo,
                     populate: Callable | None = None, quantization=None, calibrator=None) -> tuple[bytes, dict]:
    """Build the engine on the current CUDA device; return (plan bytes, {"outputs", "input_shape"}).

    INT8: ``quantization`` (a ``network.quantize.QuantizationPlan``) for the explicit route, ``calibrator`` (a
    ``trt.IInt8EntropyCalibrator2``) for the implicit one. ``weights`` must stay alive until this returns:
    TensorRT keeps references, not copies.
    """
    if populate is None:
        from network import populate_network as populate
    plan = trt_compat.precision_plan(trt, options.precision, int8_route=_route(options))
    builder = trt.Builder(trt_compat.tensorrt_logger(trt))
    network = builder.create_network(trt_compat.network_flags(trt, plan))
    # The returned store owns every array handed to TensorRT (which keeps references, not copies).
    store = populate(trt, network, weights, cfg, input_shape=options.input_shape(), half=plan.half_graph,
                     input_name=INPUT_NAME, postprocess=options.postprocess, priors=_priors(cfg, options),
                     quantization=_quantization(plan, quantization))
    if plan.calibrator:
        if calibrator is None:
            raise RetinaFaceError("an implicit INT8 build needs TensorRT's calibrator (runtime.backends.tensorrt.calibrator)")
        trt_compat.keep_layers_float(trt, network, options.int8.keep)
    if trt_compat.postprocess_constrained(plan, options.postprocess is not None):
        trt_compat.keep_postprocess_float(trt, network)
    built = serialize_network(trt, builder, network, options, plan, device, "the engine", calibrator)
    del store   # only now may the arrays go
    return built


def _route(options: BuildOptions) -> str:
    return options.int8.route if options.int8 is not None else "explicit"


def _quantization(plan: PrecisionPlan, quantization):
    """The QuantizationPlan with the Q/DQ overloads of this version (8.6: two arguments), or None."""
    if not plan.qdq_graph:
        return None
    if quantization is None:
        raise RetinaFaceError("an explicit INT8 build needs the scales of a calibration (runtime.calibration)")
    return dataclasses.replace(quantization, typed=plan.strongly_typed)


def _priors(cfg, options: BuildOptions):
    """The priors of the fixed input size, for an engine with post-processing inside (else None)."""
    if options.postprocess is None:
        return None
    from runtime.priors import prior_boxes

    width, height = options.input_size
    return prior_boxes(cfg, height, width)


def serialize_network(trt, builder, network, options: BuildOptions, plan: PrecisionPlan,
                      device: sidecar.DeviceInfo, what: str, calibrator=None) -> tuple[bytes, dict]:
    """Configure the builder for ``options``, build ``network``, write the timing cache back.

    Returns (plan bytes, {"outputs": {name: shape}, "input_shape": [...]}), shapes read from the network
    itself. Whatever owns the network's weights must stay alive until this returns; ``calibrator`` (implicit
    INT8) too.
    """
    config, cache_file = _builder_config(trt, builder, options, plan, device)
    if plan.calibrator:
        trt_compat.attach_calibrator(trt, builder, config, calibrator, _calibration_shape(options))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RetinaFaceError(f"TensorRT could not build {what} (its log above says why); check the GPU "
                              "memory and --workspace, or rerun with -vv for TensorRT's full log")
    if cache_file is not None:
        write_bytes_atomic(cache_file, trt_compat.serialize_timing_cache(config), force=True)
    return bytes(serialized), {"outputs": _output_shapes(network), "input_shape": _input_shape(network)}


def _calibration_shape(options: BuildOptions) -> tuple[int, int, int, int]:
    """The NCHW shape TensorRT calibrates at: one image at the optimal (W, H)."""
    width, height = options.input_size
    return (1, 3, height, width)


def _builder_config(trt, builder, options: BuildOptions, plan: PrecisionPlan, device: sidecar.DeviceInfo):
    """(IBuilderConfig, the timing cache file or None): every setting whose default matters, set."""
    config = builder.create_builder_config()
    trt_compat.set_precision(trt, config, plan, options.precision,
                             constrained=trt_compat.postprocess_constrained(plan, options.postprocess is not None))
    trt_compat.set_workspace(trt, config, options.workspace_mib << 20)
    trt_compat.set_portability(trt, config, options.version_compatible, options.hardware_compatibility,
                               device.compute_capability)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED   # so `inspect --layers` shows tactics
    cache_file = None
    if options.timing_cache_dir is not None:
        cache_file = timing_cache_file(options.timing_cache_dir, str(trt.__version__), device)
    trt_compat.attach_timing_cache(config, _read_cache(cache_file), where=f"timing cache {cache_file}")
    profile = builder.create_optimization_profile()
    shapes = options.profile()
    profile.set_shape(INPUT_NAME, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    trt_compat.attach_progress(trt, config, report=_show_progress)
    return config, cache_file


def _read_cache(cache_file: Path | None) -> bytes:
    if cache_file is None or not cache_file.exists():
        return b""
    try:
        return cache_file.read_bytes()
    except OSError as error:
        raise RetinaFaceError(f"cannot read timing cache {cache_file}: {error.strerror or error}") from None


def _show_progress(message: str, *args) -> None:
    """Build progress on stderr whatever the log level: a build takes minutes and should not look stuck."""
    print("build: " + message % args, file=sys.stderr, flush=True)


def _output_shapes(network) -> dict[str, list[int]]:
    outputs = (network.get_output(i) for i in range(network.num_outputs))
    return {tensor.name: [int(d) for d in tensor.shape] for tensor in outputs}


def _input_shape(network) -> list[int]:
    """The network input's shape as built (a fixed-batch ONNX model keeps its batch, not -1)."""
    return [int(d) for d in network.get_input(0).shape]


def sidecar_info(trt, options: BuildOptions, built: dict, backbone: str, weights_sha256: str,
                 plan: bytes, device: sidecar.DeviceInfo) -> dict:
    """The sidecar dictionary (see :mod:`runtime.backends.tensorrt.sidecar`) of a freshly built engine."""
    info = {
        "project_version": __version__, "tensorrt_version": str(trt.__version__),
        "gpu_name": device.name, "compute_capability": device.compute_capability, "device_index": device.index,
        "backbone": backbone, "precision": options.precision, "input_name": INPUT_NAME,
        "input_shape": built["input_shape"], "outputs": built["outputs"],
        "profile": {k: list(v) for k, v in options.profile().items()},
        "weights_sha256": weights_sha256,
        "engine_sha256": hashlib.sha256(plan).hexdigest(), "engine_bytes": len(plan),
        "version_compatible": options.version_compatible, "hardware_compatibility": options.hardware_compatibility,
    }
    if options.postprocess is not None:
        info["postprocess"] = options.postprocess.in_engine().as_dict()
    if options.int8 is not None:
        info["int8"] = {**options.int8.describe(), **({"calibration": built["calibration"]} if "calibration" in built
                                                     else {})}
    return info


def write_engine(engine_path: Path, plan: bytes, info: dict) -> Path:
    """Write the engine and its sidecar, each atomically (a failed write is one RetinaFaceError line naming the
    file, from :func:`retinaface_trt.fileio.atomic_write`); if the sidecar cannot be written the engine is
    removed again, so an engine never stands without its sidecar."""
    write_bytes_atomic(engine_path, plan, force=True)
    try:
        sidecar.write_sidecar(engine_path, info)
    except RetinaFaceError:
        with contextlib.suppress(OSError):
            os.unlink(engine_path)
        raise
    return engine_path


def prepare_output(engine_path: str | Path, force: bool) -> Path:
    """``engine_path`` checked for writing before any work: RetinaFaceError if it exists (without
    ``force``), if its folder is missing, or if the engine or its sidecar path is a directory."""
    engine_path = check_writable(engine_path, force)
    for path in (engine_path, sidecar.sidecar_path(engine_path)):
        if path.is_dir():
            raise RetinaFaceError(f"cannot write {path}: it is a directory")
    return engine_path


def build_engine_file(weights_path: str | Path, engine_path: str | Path, options: BuildOptions = BuildOptions(),
                      force: bool = False, trt=None, device_index: int = 0) -> Path:
    """Build ``weights_path`` (.wts or .pth) on CUDA device ``device_index`` into ``engine_path`` plus its
    sidecar; return ``engine_path``. ``trt`` defaults to the installed TensorRT (RetinaFaceError with the
    install command if absent)."""
    from network.config import config_for_weights
    from wts_export.weights import load_weights, sha256_file

    options.validate()
    engine_path = prepare_output(engine_path, force)
    trt = trt or trt_compat.import_tensorrt()   # building has no alternative without TensorRT
    device = sidecar.current_device(device_index)
    weights = load_weights(weights_path)
    cfg = config_for_weights(weights)
    trt_compat.precision_plan(trt, options.precision, int8_route=_route(options))   # refused before calibrating
    quantization, implicit = _int8_inputs(trt, weights_path, weights, cfg, options, device_index)
    with sidecar.device_scope(device_index):
        plan, built = build_serialized(trt, weights, cfg, options, device, quantization=quantization,
                                       calibrator=implicit.calibrator if implicit else None)
    if implicit is not None:
        implicit.finish()
    if options.int8 is not None:
        built["calibration"] = int8_digest(weights_path, options.int8, trt)
    info = sidecar_info(trt, options, built, cfg.name, sha256_file(weights_path), plan, device)
    return write_engine(engine_path, plan, {**info, "source": "weights"})


def calibration_device(device_index: int) -> str:
    """Where calibration images are pre-processed (and, explicit route, run through the executor): the build's GPU."""
    return f"cuda:{device_index}"


def _int8_inputs(trt, weights_path, weights, cfg, options: BuildOptions, device_index: int):
    """(QuantizationPlan or None, ImplicitCalibration or None) of an INT8 build: the explicit route's scales are
    computed here, on the build's GPU with the executor; the implicit route's by TensorRT during the build."""
    if options.int8 is None:
        return None, None
    device = calibration_device(device_index)
    if options.int8.route == "implicit":
        from runtime.backends.tensorrt.calibrator import ImplicitCalibration
        from runtime.calibration import check_keep

        check_keep(weights, cfg, options.int8)
        return None, ImplicitCalibration(trt, weights_path, options.int8, device)
    from runtime.calibration import quantization_plan

    return quantization_plan(weights_path, weights, cfg, options.int8, device=device), None


def int8_digest(weights_path, settings, trt) -> str:
    """16 hex digits of the calibration key of ``settings`` (images, weights, resize, route, versions)."""
    from runtime import calibration as cal
    from wts_export.weights import sha256_file

    files = cal.calibration_images(settings)
    return cal.key_digest(cal.calibration_key(sha256_file(weights_path), settings, files, str(trt.__version__)))
