"""Reading images from files, bytes and base64 into the one format the pipeline takes.

Every image leaves this module as a BGR ``uint8`` array of shape [H, W, 3], C-contiguous, exactly what
``cv2.imread(path)`` gives for an ordinary colour JPEG. Decoding always goes through ``cv2.imdecode`` so
that the channel order stays BGR (decoding base64 with another library gives RGB, which the network
was not trained on). Other layouts are converted: grayscale → BGR, BGRA → BGR (alpha dropped),
16-bit → 8-bit (the high byte, ``value >> 8``), float → clipped to [0, 255].

Every failure raises :class:`RetinaFaceError` with one line naming the input (its ``source``).
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import os
import re

import cv2
import numpy as np

from retinaface_trt.errors import RetinaFaceError
from runtime.options import DEFAULT_MAX_PIXELS


_DATA_URL = re.compile(r"^\s*data:image/[\w.+-]+;base64,", re.IGNORECASE)


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file into BGR uint8 [H, W, 3]. Raises RetinaFaceError if it is missing or unreadable."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise RetinaFaceError(f"{path} is a folder, expected an image file")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise RetinaFaceError(f"{path}: no such file; check the path") from None
    except OSError as error:
        raise RetinaFaceError(f"cannot read {path}: {error.strerror or error}") from None
    return decode_image(data, source=path, max_pixels=max_pixels)


def decode_base64(text: str, max_pixels: int = DEFAULT_MAX_PIXELS, source: str = "base64 input") -> np.ndarray:
    """Decode a base64 string (optionally with a ``data:image/...;base64,`` prefix) into BGR uint8 [H, W, 3]."""
    return decode_image(base64_bytes(text, source), source=source, max_pixels=max_pixels)


def base64_bytes(text: str, source: str = "base64 input") -> bytes:
    """The encoded image bytes of a base64 string (a ``data:image/...;base64,`` prefix and line breaks allowed)."""
    if not isinstance(text, (str, bytes)):
        raise RetinaFaceError(f"{source}: expected a base64 string, got {type(text).__name__}")
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    payload = _DATA_URL.sub("", text, count=1)
    payload = "".join(payload.split())  # line breaks (MIME-style base64) are not part of the data
    if not payload:
        raise RetinaFaceError(f"{source}: the base64 string is empty; expected an encoded image")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise RetinaFaceError(f"{source}: invalid base64 ({error}); expected standard base64 of an "
                              "image file, optionally prefixed with data:image/...;base64,") from None
    return data


def decode_image(data: bytes, source: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, …) with ``cv2.imdecode`` into BGR uint8 [H, W, 3]."""
    if len(data) == 0:
        raise RetinaFaceError(f"{source}: empty data; expected an encoded image (JPEG, PNG, …)")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise RetinaFaceError(f"{source}: not a readable image (truncated, corrupt, or not an image "
                              "format OpenCV decodes); expected a JPEG, PNG, BMP, …")
    return to_bgr8(image, source=source, max_pixels=max_pixels)


def to_bgr8(image: np.ndarray, source: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Convert a decoded OpenCV image (any depth, 1/3/4 channels) to BGR uint8 [H, W, 3] and check its size."""
    check_size(image, source, max_pixels)
    image = _to_uint8(image)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.ndim != 3 or image.shape[2] != 3:
        raise RetinaFaceError(f"{source}: unsupported image layout {image.shape}; expected 1, 3 or 4 channels")
    return np.ascontiguousarray(image)


def check_size(image: np.ndarray, source: str, max_pixels: int) -> None:
    """Raise RetinaFaceError if ``image`` has no pixels or more than ``max_pixels`` of them."""
    if image.ndim < 2 or image.shape[0] == 0 or image.shape[1] == 0:
        raise RetinaFaceError(f"{source}: zero-size image {tuple(image.shape)}; expected at least 1×1 pixels")
    height, width = image.shape[:2]
    if max_pixels and height * width > max_pixels:
        raise RetinaFaceError(f"{source}: {width}×{height} = {height * width} pixels exceeds the limit of "
                              f"{max_pixels}; downscale the image or raise the limit (--max-pixels / max_pixels)")


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)  # keep the high byte: 65535 → 255, like a 16→8-bit export
    return np.clip(image, 0, 255).astype(np.uint8)


# JPEG decoding on the GPU ------------------------------------------------------------------------------------

DECODERS = ("auto", "cv2", "nvjpeg")
_JPEG_MAGIC = b"\xff\xd8\xff"


def resolve_decoder(decoder: str, device) -> str:
    """``cv2`` or ``nvjpeg`` for images that a pipeline on ``device`` receives encoded.

    ``auto`` takes nvJPEG (``torchvision.io.decode_jpeg`` on the GPU, ten times faster than ``cv2.imdecode``
    per image) for a CUDA device when torchvision is installed, else OpenCV. Both give BGR; their pixels differ
    by a few grey levels (different IDCT and chroma upsampling), the faces found do not (tested).
    """
    if decoder not in DECODERS:
        raise RetinaFaceError(f"unknown decoder {decoder!r}; expected one of: {', '.join(DECODERS)}")
    available = getattr(device, "type", str(device)) == "cuda" and importlib.util.find_spec("torchvision") is not None
    if decoder == "nvjpeg" and not available:
        raise RetinaFaceError("the nvjpeg decoder needs a CUDA device and torchvision "
                              "(pip install 'retinaface-trt[nvjpeg]'); use decoder 'cv2'")
    return "nvjpeg" if decoder == "nvjpeg" or (decoder == "auto" and available) else "cv2"


def decode_for(data: bytes, decoder: str, device, source: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS):
    """Decode with ``decoder`` (from :func:`resolve_decoder`): a BGR uint8 [H, W, 3] ndarray from OpenCV, or
    for a JPEG with nvJPEG a BGR uint8 [H, W, 3] tensor on ``device``. Anything nvJPEG does not take (other
    formats, CMYK or progressive corner cases) goes to OpenCV, which also gives the error for bad data."""
    if decoder == "nvjpeg" and data[:3] == _JPEG_MAGIC:
        image = _nvjpeg(data, device)
        if image is not None:
            check_size(image, source, max_pixels)
            return image
    return decode_image(data, source=source, max_pixels=max_pixels)


def _nvjpeg(data: bytes, device):
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        rgb = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB,
                          device=device)
    except RuntimeError:
        return None
    return rgb.flip(0).permute(1, 2, 0)        # [3, H, W] RGB → [H, W, 3] BGR, as cv2.imdecode gives
