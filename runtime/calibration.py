"""INT8 calibration: images → the project's pre-processing → the float network on the executor → activation
histograms → one ``amax`` per quantization point (:mod:`network.quantize`), kept in a cache file.

**Images.** Every file under ``Int8Settings.images`` (searched recursively) whose name ends in an image suffix,
sorted by path; ``count`` of them, evenly spread over that list, are used. Each goes through the pipeline's own
steps: :func:`runtime.image_io.read_image` (BGR, as cv2.imread), the resize policy and input size of the engine or
detector (:func:`runtime.preprocess.resize_image`), minus the mean (:func:`runtime.preprocess.to_network_input`),
one image at a time (``original`` sizes differ). An empty or unreadable folder, fewer images than asked for, or an
image that does not decode is one RetinaFaceError line, and no cache is written.

**The cache** (``--calibration-cache FILE``, JSON, written atomically once calibration succeeded):
``{"format": 1, "kind": ..., "key": {...}, "payload": {...}}``. The key holds what the statistics depend on: the
project version, the weights' sha256, the resize policy and input size, the route (explicit; or
implicit, with the TensorRT version) and a sha256 of the images used (relative path, size in bytes, modification
time of each). A cache whose key differs is refused with one line naming what differs: it is never silently
recalibrated over, because the file was named by the user and may belong to another model still in use.
Payload: ``{"amax": {method: {point: amax}}}`` for the explicit route (every method is computed from the same
histograms, so another ``--calibration-method`` needs no new calibration) or ``{"tensorrt": base64}`` (TensorRT's
own calibration cache, implicit route). ``keep`` patterns are not part of the key: statistics cover every point.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

from network.quantize import METHODS
from retinaface_trt import __version__
from retinaface_trt.errors import RetinaFaceError
from runtime.options import DEFAULT_INPUT_SIZE, check_count, check_input_size, check_resize

CACHE_FORMAT = 1
CACHE_KIND = {"explicit": "retinaface-trt int8 calibration", "implicit": "tensorrt int8 calibration cache"}
ROUTES = ("explicit", "implicit")
DEFAULT_COUNT = 200
MIN_IMAGES = 16       # fewer give scales that depend on which images were picked


@dataclass(frozen=True)
class Int8Settings:
    """How to calibrate and quantize; checked when created (RetinaFaceError).

    images:     folder of calibration images (searched recursively)
    count:      images used, evenly spread over the sorted list (default 200, at least 16)
    cache:      the calibration cache file (None: calibrate every time)
    method:     ``entropy`` (default: TensorRT's KL-divergence method), ``percentile`` (99.99 %) or ``max``
    keep:       fnmatch patterns of points kept in float32, beyond the first convolution and the heads
    resize:     the resize policy of the engine or detector: ``stretch`` (default), ``letterbox``, ``original``
    input_size: (W, H) of ``stretch`` / ``letterbox``
    route:      ``explicit`` (Q/DQ layers, scales from the project; all TensorRT versions and the executor) or
                ``implicit`` (TensorRT's entropy calibrator, 8.6 and 10.x engines only)
    """

    images: Path
    count: int = DEFAULT_COUNT
    cache: Path | None = None
    method: str = "entropy"
    keep: tuple[str, ...] = ()
    resize: str = "stretch"
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    route: str = "explicit"

    def __post_init__(self):
        object.__setattr__(self, "images", Path(self.images))
        object.__setattr__(self, "cache", None if self.cache is None else Path(self.cache))
        object.__setattr__(self, "count", check_count("the calibration image count", self.count, low=MIN_IMAGES))
        object.__setattr__(self, "keep", tuple(self.keep))
        object.__setattr__(self, "input_size", check_input_size(self.input_size))
        check_resize(self.resize)
        for name, value, allowed in (("calibration method", self.method, METHODS), ("INT8 route", self.route, ROUTES)):
            if value not in allowed:
                raise RetinaFaceError(f"unknown {name} {value!r}; expected one of: {', '.join(allowed)}")
        if any(not isinstance(p, str) or not p.strip() for p in self.keep):
            raise RetinaFaceError(f"--keep-precision patterns must be non-empty, found {list(self.keep)}")

    def describe(self) -> dict:
        """The settings as JSON-ready values (for sidecars and summaries)."""
        return {"images": str(self.images), "count": self.count, "cache": None if self.cache is None else str(self.cache),
                "method": self.method, "keep_precision": list(self.keep), "resize": self.resize,
                "input_size": list(self.input_size), "route": self.route}


def check_int8_request(precision: str, int8) -> None:
    """RetinaFaceError unless :class:`Int8Settings` come exactly with ``precision == "int8"``."""
    if precision == "int8" and int8 is None:
        raise RetinaFaceError("--precision int8 needs calibration images: pass --calibration-images DIR (build, "
                              "detect, evaluate and compare take it; docs/int8.md)")
    if precision != "int8" and int8 is not None:
        raise RetinaFaceError(f"the calibration flags apply to --precision int8 only, not {precision}; add "
                              "--precision int8 or drop them")


def report_line(message: str) -> None:
    """Calibration progress on stderr whatever the log level: it takes a minute and should not look stuck."""
    print("calibration: " + message, file=sys.stderr, flush=True)


# Images ------------------------------------------------------------------------------------------------------
def calibration_images(settings: Int8Settings) -> list[Path]:
    """The ``settings.count`` image files used, evenly spread over the sorted image files of the folder."""
    from runtime.options import IMAGE_SUFFIXES

    folder = settings.images
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise RetinaFaceError(f"--calibration-images: {folder} {what}; pass a folder of images (JPEG, PNG, …)")
    try:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError as error:
        raise RetinaFaceError(f"--calibration-images: cannot read {error.filename or folder}: "
                              f"{error.strerror or error}") from None
    if not files:
        raise RetinaFaceError(f"--calibration-images: {folder} holds no image files ({', '.join(IMAGE_SUFFIXES[:4])}, "
                              "…, searched in its subfolders too)")
    if len(files) < settings.count:
        fix = (f"pass --calibration-count {len(files)} or add images" if len(files) >= MIN_IMAGES else
               f"calibration needs at least {MIN_IMAGES}: add {MIN_IMAGES - len(files)} or more images like the ones "
               "to detect faces in")
        raise RetinaFaceError(f"--calibration-images: {folder} holds {len(files)} image{'s' * (len(files) != 1)}, "
                              f"fewer than the {settings.count} asked for; {fix}")
    return [files[i * len(files) // settings.count] for i in range(settings.count)]


def images_digest(folder: Path, files: list[Path]) -> str:
    """sha256 over (relative path, size, modification time) of each file: a changed or replaced image changes it."""
    entries = []
    for path in files:
        try:
            status = path.stat()
        except OSError as error:
            raise RetinaFaceError(f"cannot read calibration image {path}: {error.strerror or error}") from None
        entries.append([path.relative_to(folder).as_posix(), status.st_size, status.st_mtime_ns])
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def network_inputs(files: list[Path], settings: Int8Settings, device) -> Iterator:
    """float32 [1, 3, H, W] network inputs (BGR minus the mean) of ``files`` on ``device``, one per image."""
    from runtime.image_io import read_image
    from runtime.preprocess import resize_image, to_network_input

    for path in files:
        resized, _ = resize_image(read_image(path), settings.resize, settings.input_size)
        yield to_network_input([resized], device)


# The key and the cache -----------------------------------------------------------------------------------------
def weights_digest(weights, arrays: Mapping) -> str:
    """sha256 of the weights file, or of the arrays (names and bytes) when weights are given as a mapping."""
    if isinstance(weights, (str, os.PathLike)):
        from wts_export.weights import sha256_file

        return sha256_file(weights)
    import numpy as np

    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name], dtype=np.float32).tobytes())
    return digest.hexdigest()


def calibration_key(weights_sha256: str, settings: Int8Settings, files: list[Path],
                    tensorrt_version: str | None = None) -> dict:
    """Everything the statistics depend on (see the module docstring; the weights determine the backbone)."""
    key = {"project_version": __version__, "weights_sha256": weights_sha256, "resize": settings.resize, "input_size": list(settings.input_size), "route": settings.route,
           "images": len(files), "images_sha256": images_digest(settings.images, files)}
    if settings.route == "implicit":
        key["tensorrt_version"] = tensorrt_version
    return key


def key_digest(key: dict) -> str:
    """16 hex digits identifying ``key`` (for engine cache names and sidecars): :func:`runtime.cache.entry_key`."""
    from runtime.cache import entry_key

    return entry_key(key)


_KEY_WORDS = {"project_version": "project version", "weights_sha256": "other weights", "resize": "resize policy", "input_size": "input size", "route": "INT8 route", "images": "image count",
              "images_sha256": "other or changed calibration images", "tensorrt_version": "TensorRT version"}


def read_cache(path: Path, key: dict) -> dict | None:
    """The payload of the cache at ``path`` if its key is ``key``; None if there is no file; else RetinaFaceError."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RetinaFaceError(f"calibration cache {path} cannot be read ({getattr(error, 'strerror', None) or error}); "
                              "delete it or pass another --calibration-cache") from None
    kind = CACHE_KIND[key["route"]]
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or data.get("kind") != kind \
            or not isinstance(data.get("key"), dict) or not isinstance(data.get("payload"), dict):
        raise RetinaFaceError(f"{path} is not a {kind} (format {CACHE_FORMAT}) of this project; delete it or pass "
                              "another --calibration-cache")
    differences = [_KEY_WORDS.get(k, k) + _both(data["key"].get(k), v) for k, v in key.items() if data["key"].get(k) != v]
    if differences:
        raise RetinaFaceError(f"calibration cache {path} was made for another setup ({'; '.join(differences)}); "
                              "delete it to calibrate again, or pass another --calibration-cache")
    return data["payload"]


def _both(cached, wanted) -> str:
    if isinstance(wanted, str) and len(wanted) == 64:          # a digest: its first digits are enough
        return f" ({str(cached)[:12]}… cached, {wanted[:12]}… now)"
    return f" ({json.dumps(cached)} cached, {json.dumps(wanted)} now)"


def write_cache(path: Path, key: dict, payload: dict) -> None:
    """Write the cache atomically (an interrupted run leaves no half-written file)."""
    from retinaface_trt.fileio import write_text_atomic

    document = {"format": CACHE_FORMAT, "kind": CACHE_KIND[key["route"]], "key": key, "payload": payload}
    write_text_atomic(path, json.dumps(document, indent=1, sort_keys=True) + "\n")


def check_cache_writable(settings: Int8Settings) -> None:
    """Before any calibration work: the cache file can be written (RetinaFaceError naming it if not)."""
    if settings.cache is not None:
        from retinaface_trt.fileio import check_writable

        check_writable(settings.cache, force=True)


def encode_tensorrt_cache(data: bytes) -> dict:
    return {"tensorrt": base64.b64encode(bytes(data)).decode("ascii")}


def decode_tensorrt_cache(payload: dict, path: Path) -> bytes:
    try:
        return base64.b64decode(payload["tensorrt"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise RetinaFaceError(f"calibration cache {path} holds no TensorRT calibration data; delete it") from None


# Statistics ---------------------------------------------------------------------------------------------------
def observed_network(arrays: Mapping, cfg):
    """The float network on the executor with every point's tensor as an extra output.

    Returns (network, {point: name of its tensor among the outputs, or the input's name}).
    """
    from network import INPUT_NAME, populate_network
    from network.executor import trt
    from network.quantize import ActivationObserver

    observer = ActivationObserver()
    network = trt.Builder(trt.Logger()).create_network(0)
    populate_network(trt, network, arrays, cfg, input_shape=(-1, 3, -1, -1), quantization=observer)
    names: dict[int, str] = {}
    for tensor in observer.points.values():
        if id(tensor) not in names:
            names[id(tensor)] = INPUT_NAME if tensor.is_network_input else f"calibration.{len(names)}"
            if not tensor.is_network_input:
                tensor.name = names[id(tensor)]
                network.mark_output(tensor)
    return network, {point: names[id(tensor)] for point, tensor in observer.points.items()}


def check_keep(arrays: Mapping, cfg, settings: Int8Settings) -> None:
    """Before any work: every ``--keep-precision`` pattern matches a point of this network (RetinaFaceError)."""
    from network.quantize import check_keep_patterns

    if settings.keep:
        check_keep_patterns(settings.keep, observed_network(arrays, cfg)[1])


def collect_histograms(arrays: Mapping, cfg, batches, device) -> dict:
    """{point: network.quantize.Histogram} of ``batches`` (float32 [N, 3, H, W] network inputs) on ``device``."""
    from network import INPUT_NAME
    from network.executor import Program
    from network.quantize import Histogram
    from runtime.device import float32_convolutions

    network, names = observed_network(arrays, cfg)
    program = Program(network, device, fold_batchnorm=True)
    histograms = {name: Histogram() for name in set(names.values())}
    with float32_convolutions():
        for batch in batches:
            values = {**program({INPUT_NAME: batch}), INPUT_NAME: batch}
            for name, histogram in histograms.items():
                histogram.add(values[name])
    return {point: histograms[name] for point, name in names.items()}


def amax_table(histograms: Mapping) -> dict:
    """{method: {point: amax}} for every method of ``network.quantize.METHODS`` (points sharing a tensor share
    its histogram, computed once)."""
    from network.quantize import amax_of

    unique = {id(h): h for h in histograms.values()}
    values = {(key, method): amax_of(h, method) for key, h in unique.items() for method in METHODS}
    return {method: {point: float(values[id(h), method]) for point, h in histograms.items()} for method in METHODS}


def calibrate(arrays: Mapping, cfg, settings: Int8Settings, files: list[Path], device="cpu",
              report: Callable[[str], None] = report_line) -> dict:
    """{method: {point: amax}} from ``files`` (see the module docstring)."""
    from runtime.device import resolve_device

    device = resolve_device(str(device))          # a name or a torch.device
    size = "" if settings.resize == "original" else " {}x{}".format(*settings.input_size)
    report(f"{len(files)} images of {settings.images} ({settings.resize}{size}) through the float network on {device}")
    start = time.perf_counter()
    table = amax_table(collect_histograms(arrays, cfg, network_inputs(files, settings, device), device))
    report(f"{len(files)} images in {time.perf_counter() - start:.1f} s")
    return table


def quantization_plan(weights, arrays: Mapping, cfg, settings: Int8Settings, device="cpu", typed: bool = True,
                      report: Callable[[str], None] = report_line):
    """The :class:`network.quantize.QuantizationPlan` of ``settings``: amax from the cache when its key matches,
    else from a calibration (then written to the cache). ``weights`` is the path (or mapping) ``arrays`` came from."""
    from network.quantize import QuantizationPlan

    if settings.route != "explicit":
        raise RetinaFaceError("the scales of the implicit route are TensorRT's own (its calibrator runs inside the "
                              "build); only the explicit route has scales computed here")
    check_keep(arrays, cfg, settings)
    files = calibration_images(settings)
    key = calibration_key(weights_digest(weights, arrays), settings, files)
    payload = read_cache(settings.cache, key) if settings.cache is not None else None
    if payload is None:
        check_cache_writable(settings)
        payload = {"amax": calibrate(arrays, cfg, settings, files, device, report)}
        if settings.cache is not None:
            write_cache(settings.cache, key, payload)
            report(f"statistics written to {settings.cache}")
    else:
        report(f"statistics from {settings.cache} (no calibration run)")
    return QuantizationPlan(_amax(payload, settings), settings.keep, typed)


def _amax(payload: dict, settings: Int8Settings) -> dict:
    table = payload.get("amax", {}).get(settings.method) if isinstance(payload.get("amax"), dict) else None
    if not isinstance(table, dict) or not all(isinstance(v, (int, float)) for v in table.values()):
        raise RetinaFaceError(f"calibration cache {settings.cache} has no {settings.method} statistics; delete it "
                              "to calibrate again")
    return {str(k): float(v) for k, v in table.items()}
