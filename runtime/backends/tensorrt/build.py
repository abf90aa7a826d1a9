"""Build a RetinaFace TensorRT engine from ``.wts`` / ``.pth`` weights and write it with its sidecar.

The builder takes the ``trt`` module as a parameter: the installed ``tensorrt`` in production, the real
bindings of one version (with stand-ins for Builder and friends) in the conformance tests. Version
differences are delegated to :mod:`runtime.backends.tensorrt.compat`.

Shapes are NCHW float32 with a dynamic batch (``-1``) served by one optimization profile; with
``min_size``/``max_size`` the height and width are dynamic as well. Sizes are given as (W, H) pixels.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from retinaface_trt import __version__
from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.fileio import check_writable, write_bytes_atomic
from runtime.backends.tensorrt import compat as trt_compat
from runtime.backends.tensorrt.sidecar import DeviceInfo, write_sidecar

INPUT_NAME = "input"
OUTPUT_NAMES = ("loc", "conf", "landms")


@dataclass(frozen=True)
class BuildOptions:
    """What to build. Sizes are (W, H) in pixels; batches are counts of images."""

    precision: str = "fp32"                       # "fp32" (TF32 off) or "fp16"
    input_size: tuple[int, int] = (640, 640)      # the optimal (and, without min/max, the only) size
    min_size: tuple[int, int] | None = None       # with max_size: dynamic height and width
    max_size: tuple[int, int] | None = None
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 8
    workspace_mib: int = 1024
    timing_cache: Path | None = None              # read if present, written back after the build

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
        """Raise RetinaFaceError for inconsistent sizes or batches."""
        if (self.min_size is None) != (self.max_size is None):
            raise RetinaFaceError("--min-size and --max-size go together; pass both or neither")
        p = self.profile()
        if any(not (0 < a <= b <= c) for a, b, c in zip(p["min"], p["opt"], p["max"])):
            raise RetinaFaceError(f"the profile must satisfy 0 < min <= opt <= max per dimension, found "
                                  f"min {p['min']}, opt {p['opt']}, max {p['max']} (NCHW); fix "
                                  "--opt-batch/--max-batch or --min-size/--input-size/--max-size")
        if self.precision not in ("fp32", "fp16"):
            raise RetinaFaceError(f"--precision must be fp32 or fp16, not {self.precision!r}")


def build_serialized(trt, weights: Mapping[str, np.ndarray], cfg, options: BuildOptions, logger,
                     populate: Callable | None = None) -> tuple[bytes, dict]:
    """Build the engine; return (plan bytes, {"outputs": {name: shape}, "input_shape": [...]}).

    ``weights`` must stay alive until this returns: TensorRT keeps references, not copies.
    """
    if populate is None:
        from network import populate_network as populate
    builder = trt.Builder(logger)
    network = builder.create_network(trt_compat.network_flags(trt))
    half = options.precision == "fp16" and trt_compat.uses_strong_typing(trt)
    # The returned store owns every array handed to TensorRT (which keeps references, not copies).
    store = populate(trt, network, weights, cfg, input_shape=options.input_shape(), half=half, input_name=INPUT_NAME)
    built = serialize_network(trt, builder, network, options, "the engine")
    del store   # only now may the arrays go
    return built


def serialize_network(trt, builder, network, options: BuildOptions, what: str) -> tuple[bytes, dict]:
    """Configure the builder for ``options``, build ``network``, write the timing cache back.

    Returns (plan bytes, {"outputs": {name: shape}, "input_shape": [...]}). Whatever owns the network's
    weights must stay alive until this returns.
    """
    config = _builder_config(trt, builder, options)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RetinaFaceError(f"TensorRT could not build {what} (its log above says why); check the GPU "
                              "memory and --workspace, or rerun with -vv for TensorRT's full log")
    if options.timing_cache is not None:
        write_bytes_atomic(options.timing_cache, trt_compat.serialize_timing_cache(config))
    return bytes(plan), {"outputs": _output_shapes(network), "input_shape": list(options.input_shape())}


def _builder_config(trt, builder, options: BuildOptions):
    config = builder.create_builder_config()
    trt_compat.set_precision(trt, config, options.precision)
    trt_compat.set_workspace(trt, config, options.workspace_mib << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED   # so `inspect` shows layer details
    cache = options.timing_cache
    trt_compat.attach_timing_cache(config, cache.read_bytes() if cache is not None and cache.exists() else b"")
    profile = builder.create_optimization_profile()
    shapes = options.profile()
    profile.set_shape(INPUT_NAME, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    trt_compat.attach_progress(trt, config, report=_show_progress)
    return config


def _show_progress(message: str, *args) -> None:
    """Build progress on stderr whatever the log level: a build takes minutes and should not look stuck."""
    print("build: " + message % args, file=sys.stderr, flush=True)


def _output_shapes(network) -> dict[str, list[int]]:
    outputs = (network.get_output(i) for i in range(network.num_outputs))
    return {tensor.name: [int(d) for d in tensor.shape] for tensor in outputs}


def sidecar_info(trt, options: BuildOptions, built: dict, backbone: str, weights_sha256: str,
                 plan: bytes, device: DeviceInfo) -> dict:
    """The sidecar dictionary (see :mod:`runtime.backends.tensorrt.sidecar`) of a freshly built engine."""
    return {
        "project_version": __version__, "tensorrt_version": str(trt.__version__),
        "gpu_name": device.name, "compute_capability": device.compute_capability,
        "backbone": backbone, "precision": options.precision, "input_name": INPUT_NAME,
        "input_shape": built["input_shape"], "outputs": built["outputs"],
        "profile": {k: list(v) for k, v in options.profile().items()},
        "weights_sha256": weights_sha256,
        "engine_sha256": hashlib.sha256(plan).hexdigest(), "engine_bytes": len(plan),
    }


def build_engine_file(weights_path: str | Path, engine_path: str | Path, options: BuildOptions = BuildOptions(),
                      force: bool = False, trt=None, device: DeviceInfo | None = None) -> Path:
    """Build ``weights_path`` (.wts or .pth) into ``engine_path`` plus its sidecar; return ``engine_path``.

    ``trt`` defaults to the installed TensorRT (RetinaFaceError with the install command if absent);
    ``device`` defaults to the current CUDA device.
    """
    from network.config import config_for_weights
    from runtime.backends.tensorrt.device import current_device
    from wts_export.weights import load_weights, sha256_file

    options.validate()
    engine_path = check_writable(engine_path, force)
    trt = trt or trt_compat.import_tensorrt()
    device = device or current_device()
    weights = load_weights(weights_path)
    cfg = config_for_weights(weights)
    plan, built = build_serialized(trt, weights, cfg, options, trt_compat.make_logger(trt))
    write_bytes_atomic(engine_path, plan, force=True)
    write_sidecar(engine_path, sidecar_info(trt, options, built, cfg.name, sha256_file(weights_path), plan, device))
    return engine_path
