"""The detection pipeline's settings, their defaults and their valid ranges, in one light module.

The detection thresholds are :class:`retinaface_trt.thresholds.Thresholds` (shared with the network).
Used by the library (:class:`runtime.detector.Detector`, the SDK) and by the command-line flag groups
(:mod:`runtime.cli.options`), so a value is refused the same way from Python and from the shell: one
:class:`RetinaFaceError` line naming the setting, its range and the value found. Nothing heavy is imported
here (no torch, no OpenCV), so ``--help`` stays fast.
"""

from __future__ import annotations

import math

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.thresholds import check_count, check_probability  # noqa: F401 - the checks, defined once

DEVICES_HELP = "cpu, cuda, cuda:N or auto (cuda when available)"
RESIZE_POLICIES = ("original", "stretch", "letterbox", "padded")
DECODERS = ("auto", "cv2", "nvjpeg")   # JPEG decoders (runtime.image_io.resolve_decoder)
# File name endings of the image formats OpenCV reads (cv2.imread's documented list, OpenEXR left out: this
# OpenCV build has it disabled): what a folder of images holds (detect's folders, calibration images).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm", ".pnm",
                  ".jpe", ".jfif", ".dib", ".pbm", ".pxm", ".pam", ".pfm", ".sr", ".ras", ".hdr", ".pic", ".gif",
                  ".avif")
DEFAULT_INPUT_SIZE = (640, 640)     # (W, H): the deployment notes' fixed engine size
MAX_INPUT_SIDE = 8192               # pixels per side of the network input
# 40 megapixels: well above any camera image, well below what exhausts memory in the float pipeline.
DEFAULT_MAX_PIXELS = 40_000_000
# An image file within the pixel limit takes at most 16 bytes per pixel (uncompressed float32 RGBA: TIFF, PFM)
# plus its metadata (EXIF, ICC, XMP): a larger file is refused before it is read.
MAX_BYTES_PER_PIXEL = 16
METADATA_ALLOWANCE = 64 << 20


def max_file_bytes(max_pixels: int) -> int:
    """The largest image file (bytes) accepted under ``max_pixels``; 0 (no limit) when ``max_pixels`` is 0."""
    return max_pixels * MAX_BYTES_PER_PIXEL + METADATA_ALLOWANCE if max_pixels else 0


def check_input_size(value, name: str = "input size") -> tuple[int, int]:
    """``value`` (W, H) as a tuple of two ints in 1..MAX_INPUT_SIDE; else RetinaFaceError."""
    try:
        width, height = (check_count(name, v) for v in value)
    except (TypeError, ValueError, RetinaFaceError):
        width = height = 0
    if not (0 < width <= MAX_INPUT_SIDE and 0 < height <= MAX_INPUT_SIDE):
        raise RetinaFaceError(f"{name} must be (width, height) with each side in 1..{MAX_INPUT_SIDE}, "
                              f"found {value!r}")
    return width, height


def check_device(value) -> str:
    """``value`` lower-cased if it names a device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (N ≥ 0); else
    RetinaFaceError. Whether CUDA device N exists is checked by :func:`runtime.device.resolve_device`."""
    name = str(value).strip().lower() if isinstance(value, str) else None
    kind, _, index = (name or "").partition(":")
    if name in ("auto", "cpu", "cuda") or (kind == "cuda" and index.isdigit()):
        return name
    hint = "; the CPU takes no index: use cpu" if kind == "cpu" else ""
    raise RetinaFaceError(f"device must be auto, cpu, cuda or cuda:N (N = 0, 1, …), found {value!r}{hint}")


def check_non_negative(name: str, value) -> float:
    """``value`` as a float if it is a finite number ≥ 0; else RetinaFaceError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise RetinaFaceError(f"{name} must be a finite number ≥ 0, found {value!r}")
    return number


def check_resize(value) -> str:
    """``value`` if it names a resize policy; else RetinaFaceError listing them."""
    if value not in RESIZE_POLICIES:
        raise RetinaFaceError(f"unknown resize policy {value!r}; expected one of: {', '.join(RESIZE_POLICIES)}")
    return value
