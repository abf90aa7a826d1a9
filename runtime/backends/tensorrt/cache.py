"""The engine cache: engines built automatically from weights, one file per (weights, project version,
TensorRT version, GPU, precision, input size, batch, post-processing), with their timing caches beside them."""

from __future__ import annotations

from pathlib import Path

from retinaface_trt.thresholds import Thresholds
from retinaface_trt import __version__
from retinaface_trt.errors import RetinaFaceError
from runtime.backends.tensorrt import compat as trt_compat
from runtime.backends.tensorrt import sidecar
from runtime.cache import cache_root, entry_key


def default_engine_cache() -> Path:
    """Where engines built automatically from weights are kept: the project's cache root (:mod:`runtime.cache`,
    $RETINAFACE_TRT_CACHE or ~/.cache/retinaface-trt)."""
    return cache_root()


def engine_cache_key(weights_sha256: str, tensorrt_version: str, gpu: str, precision: str,
                     input_size: tuple[int, int], max_batch: int, project_version: str = __version__,
                     postprocess: Thresholds | None = None, int8: dict | None = None) -> str:
    """16 hex digits identifying one cached engine. The project version is part of it: a new release may
    build a different network from the same weights. ``int8``: the calibration (its key's digest) and the
    quantization settings of an INT8 engine."""
    settings = postprocess.in_engine().as_dict() if postprocess is not None else None
    return entry_key(weights_sha256, project_version, tensorrt_version, gpu, precision, list(input_size),
                     max_batch, settings, *([int8] if int8 is not None else []))


def ensure_engine(weights: str | Path, cache_dir: str | Path, precision: str = "fp32",
                  input_size: tuple[int, int] = (640, 640), max_batch: int = 8, device_index: int = 0,
                  trt=None, postprocess: Thresholds | None = None, int8=None) -> Path:
    """Return a usable engine for ``weights`` from ``cache_dir``, building it there first if needed.

    The engine is built on, and labelled with, CUDA device ``device_index``. The file name carries
    :func:`engine_cache_key`, so a new TensorRT version, another GPU or other settings get their own
    engine; a cached engine whose bytes do not match its sidecar is rebuilt. ``int8`` (Int8Settings, precision
    "int8"): a cached INT8 engine of the same calibration key is used without calibrating again.
    """
    from runtime.backends.tensorrt.build import BuildOptions, build_engine_file, int8_digest
    from wts_export.weights import sha256_file

    trt = trt or trt_compat.import_tensorrt("or use `--backend torch`, which needs no TensorRT")
    device = sidecar.current_device(device_index)
    quantization = None if int8 is None else {"calibration": int8_digest(weights, int8, trt), "method": int8.method,
                                              "keep": list(int8.keep), "route": int8.route}
    key = engine_cache_key(sha256_file(weights), str(trt.__version__), f"{device.name} sm{device.compute_capability}",
                           precision, tuple(input_size), max_batch, postprocess=postprocess, int8=quantization)
    path = Path(cache_dir) / f"retinaface-{precision}-{input_size[0]}x{input_size[1]}-{key}.engine"
    if path.exists() and sidecar.sidecar_path(path).exists():
        try:
            sidecar.check_engine_file(path)
            return path
        except RetinaFaceError:
            pass   # damaged cache entry: rebuilt below
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RetinaFaceError(f"cannot create the engine cache {path.parent}: {error.strerror or error}; "
                              "pass --engine-cache DIR") from None
    options = BuildOptions(precision=precision, input_size=tuple(input_size), max_batch=max_batch,
                           timing_cache_dir=path.parent, postprocess=postprocess, int8=int8)
    return build_engine_file(weights, path, options, force=True, trt=trt, device_index=device_index)
