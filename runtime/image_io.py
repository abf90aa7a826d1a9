"""Reading images from files, bytes and base64 into the one format the pipeline takes.

Every image leaves this module as a BGR ``uint8`` array of shape [H, W, 3], C-contiguous, what
``cv2.imread(path)`` (detect.py's reader) gives. Decoding always goes through ``cv2.imdecode`` so that the
channel order stays BGR (decoding base64 with another library gives RGB, which the network was not trained
on) and, as ``cv2.imread`` does, a JPEG's EXIF orientation is applied (a phone photo taken upright is detected
upright, with boxes in the pixels detect.py reports). Files are decoded with ``cv2.IMREAD_COLOR``, the flag of
``cv2.imread``, so every layout is narrowed exactly as detect.py's reader narrows it (16-bit PNG: the high byte,
16-bit TIFF: rounded, Radiance HDR: scaled by 255, PFM: rounded as stored). The one layout ``cv2.imread`` refuses
here, a float TIFF, is decoded as stored and scaled by 255 as HDR is (float images hold [0, 1]). Arrays given to
:func:`to_bgr8` are converted: grayscale → BGR, BGRA → BGR (alpha dropped), 16-bit → 8-bit (the high byte),
float → clipped to [0, 255].

Nothing is decoded before it is known to fit ``max_pixels`` (0: no limit):

1. a file must be a regular file (a FIFO would block forever, ``/dev/zero`` never ends) no larger than
   :func:`runtime.options.max_file_bytes` (16 bytes per allowed pixel plus 64 MiB of metadata);
2. the width and height are read from the header (:func:`header_size`: Pillow for JPEG, PNG, BMP, TIFF,
   WebP, JPEG 2000, PBM/PGM/PPM, Sun raster, GIF and AVIF; the text headers of PFM, PAM and Radiance HDR
   here) and the image is refused when W × H exceeds the limit, or when the header is not one of these
   formats: a small file declaring 32000 × 32000 pixels costs nothing;
3. only then ``cv2.imdecode`` runs, and the decoded size is checked again.

Base64 (the SDK) goes through the same steps (:func:`decode_base64`). Every failure raises
:class:`RetinaFaceError` with one line naming the input (its ``source``).
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import io
import os
import re
import stat
import struct
from typing import IO

import cv2
import numpy as np

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.extras import install_hint
from runtime.options import DECODERS, DEFAULT_MAX_PIXELS, max_file_bytes


_DATA_URL = re.compile(r"^\s*data:image/[\w.+-]+;base64,", re.IGNORECASE)
# What cv2.imread decodes (EXIF orientation applied, every depth narrowed to 8 bits as OpenCV narrows it) ...
DECODE_FLAGS = cv2.IMREAD_COLOR
# ... and, for what it refuses (float TIFF), depth and channels as stored (EXIF orientation applied).
STORED_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
# Formats OpenCV decodes whose header Pillow's openers read, by Pillow's format names (AVIF only in recent
# Pillows). TIFF is read through Pillow's directory parser instead: its opener refuses pixel layouts that
# OpenCV decodes (three float32 channels, for one).
PILLOW_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "JPEG2000", "PPM", "SUN", "GIF", "AVIF")
TIFF_WIDTH, TIFF_LENGTH = 256, 257   # the ImageWidth and ImageLength tags
HEADER_FORMATS = "JPEG, PNG, BMP, TIFF, WebP, JPEG 2000, PBM/PGM/PPM/PFM/PAM, Sun raster, GIF, AVIF, HDR"
_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file into BGR uint8 [H, W, 3]. Raises RetinaFaceError if it is missing, not a regular
    file, too large (bytes, or pixels declared by its header) or unreadable; see the module doc."""
    return _decode(read_bytes(path, max_pixels), os.fspath(path), max_pixels)


def read_bytes(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The encoded bytes of the image file ``path``, once steps 1 and 2 of the module doc passed (a regular
    file, its length and its header's size within ``max_pixels``); :func:`read_image` decodes them on the host,
    :func:`decode_jpegs` on the GPU."""
    path = os.fspath(path)
    with _open_regular(path, max_pixels) as handle:
        check_header(handle, path, max_pixels)
        handle.seek(0)
        try:
            return handle.read()
        except OSError as error:
            raise RetinaFaceError(f"cannot read {path}: {error.strerror or error}") from None


def decode_base64(text: str, max_pixels: int = DEFAULT_MAX_PIXELS, source: str = "base64 input") -> np.ndarray:
    """Decode a base64 string (optionally with a ``data:image/...;base64,`` prefix) into BGR uint8 [H, W, 3],
    with the checks of :func:`decode_image` (the length before decoding the base64, the header before the pixels)."""
    return decode_image(base64_bytes(text, source, max_pixels), source=source, max_pixels=max_pixels)


def base64_bytes(text: str, source: str = "base64 input", max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The encoded image bytes of a base64 string (a ``data:image/...;base64,`` prefix and line breaks allowed),
    refused before decoding when longer than images of ``max_pixels`` can be."""
    if not isinstance(text, (str, bytes)):
        raise RetinaFaceError(f"{source}: expected a base64 string, got {type(text).__name__}")
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    payload = _DATA_URL.sub("", text, count=1)
    payload = "".join(payload.split())  # line breaks (MIME-style base64) are not part of the data
    if not payload:
        raise RetinaFaceError(f"{source}: the base64 string is empty; expected an encoded image")
    _check_bytes(len(payload) * 3 // 4, source, max_pixels)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise RetinaFaceError(f"{source}: invalid base64 ({error}); expected standard base64 of an "
                              "image file, optionally prefixed with data:image/...;base64,") from None
    return data


def decode_image(data: bytes, source: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, …) with ``cv2.imdecode`` into BGR uint8 [H, W, 3], once their
    length and the size their header declares are within ``max_pixels`` (see the module doc)."""
    if len(data) == 0:
        raise RetinaFaceError(f"{source}: empty data; expected an encoded image (JPEG, PNG, …)")
    _check_bytes(len(data), source, max_pixels)
    check_header(io.BytesIO(data), source, max_pixels)
    return _decode(data, source, max_pixels)


def check_header(stream: IO[bytes], source: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int] | None:
    """Read the (width, height) declared by the header of the seekable binary ``stream`` and raise
    RetinaFaceError when W × H exceeds ``max_pixels`` or no supported header is found. Returns the size
    (None when ``max_pixels`` is 0: nothing is read)."""
    if not max_pixels:
        return None
    try:
        size = _declared_size(stream)
    except _DeclaredTooMany as bomb:
        if bomb.pixels > max_pixels:
            raise RetinaFaceError(f"{source}: its header declares a frame of {bomb.pixels} pixels, which exceeds the "
                                  f"limit of {max_pixels}; downscale the image or raise the limit (--max-pixels / "
                                  "max_pixels, 0 for none)") from None
        raise RetinaFaceError(f"{source}: its header declares a frame of {bomb.pixels} pixels, more than the header "
                              "reader (Pillow) takes; pass --max-pixels 0 (max_pixels=0) to decode it unchecked") \
            from None
    if size is None:
        raise RetinaFaceError(f"{source}: not a readable image (no {HEADER_FORMATS} header: truncated, corrupt, "
                              "or not an image); expected a JPEG, PNG, BMP, …")
    _check_pixels(*size, source, max_pixels, "its header declares ")
    return size


def header_size(stream: IO[bytes]) -> tuple[int, int] | None:
    """(width, height) that the header of the seekable binary ``stream`` declares, read without decoding
    any pixel (only the header is read); None when it is not a header of a format OpenCV decodes, or one whose
    frame Pillow refuses as a decompression bomb (:func:`check_header` refuses it, naming its pixels)."""
    try:
        return _declared_size(stream)
    except _DeclaredTooMany:
        return None


def _declared_size(stream: IO[bytes]) -> tuple[int, int] | None:
    """:func:`header_size`, raising :class:`_DeclaredTooMany` for a frame Pillow refuses as a decompression bomb."""
    stream.seek(0)
    head = stream.read(4096)
    return _text_header_size(head) or _tiff_header_size(stream, head[:16]) or _pillow_header_size(stream, head[:16])


def declared_pixels(path: str | os.PathLike) -> int | None:
    """W × H as the header of the image file ``path`` declares it (only the header is read); None when the file
    has no header of a supported format, or one whose frame Pillow refuses as a decompression bomb (reading the
    image then refuses it on one line); RetinaFaceError when it is not a regular file or cannot be opened."""
    with _open_regular(os.fspath(path), 0) as handle:
        size = header_size(handle)
    return None if size is None else size[0] * size[1]


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
    _check_pixels(image.shape[1], image.shape[0], source, max_pixels)


def _check_pixels(width: int, height: int, source: str, max_pixels: int, declared: str = "") -> None:
    if max_pixels and width * height > max_pixels:
        raise RetinaFaceError(f"{source}: {declared}{width}×{height} = {width * height} pixels, which exceeds the "
                              f"limit of {max_pixels}; downscale the image or raise the limit "
                              "(--max-pixels / max_pixels, 0 for none)")


def _check_bytes(size: int, source: str, max_pixels: int) -> None:
    limit = max_file_bytes(max_pixels)
    if limit and size > limit:
        raise RetinaFaceError(f"{source}: {size} bytes is more than an image of at most {max_pixels} pixels takes "
                              f"({limit} bytes at most); raise the limit (--max-pixels / max_pixels, 0 for none)")


def _open_regular(path: str, max_pixels: int) -> IO[bytes]:
    """``path`` opened for reading once it is known to be a regular file of an acceptable size. O_NONBLOCK
    makes opening a FIFO return at once (so it can be refused) and is ignored for regular files."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise RetinaFaceError(f"{path}: no such file; check the path") from None
    except OSError as error:
        raise RetinaFaceError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        info = os.fstat(fd)   # the opened file itself: no race with a path swapped in between
        if stat.S_ISDIR(info.st_mode):
            raise RetinaFaceError(f"{path} is a folder, expected an image file")
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), None)
        if kind:
            raise RetinaFaceError(f"{path} is {kind}, not a regular file; expected an image file")
        _check_bytes(info.st_size, path, max_pixels)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _decode(data: bytes, source: str, max_pixels: int) -> np.ndarray:
    encoded = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(encoded, DECODE_FLAGS)
    if image is None:
        image = cv2.imdecode(encoded, STORED_FLAGS)
        if image is not None and image.dtype.kind == "f":
            image = cv2.convertScaleAbs(np.maximum(image, 0), alpha=255.0)    # as OpenCV narrows HDR
    if image is None:
        raise RetinaFaceError(f"{source}: not a readable image (truncated, corrupt, or not an image "
                              "format OpenCV decodes); expected a JPEG, PNG, BMP, …")
    return to_bgr8(image, source=source, max_pixels=max_pixels)


class _DeclaredTooMany(Exception):
    """A header whose frame Pillow's opener refused as a decompression bomb; ``pixels`` it declares."""

    def __init__(self, pixels: int):
        super().__init__(pixels)
        self.pixels = pixels


def _pillow_header_size(stream: IO[bytes], prefix: bytes) -> tuple[int, int] | None:
    """The size Pillow reads from the header. Each format's opener is called directly: ``Image.open`` also
    applies Pillow's own pixel limit, a process-wide setting (``Image.MAX_IMAGE_PIXELS``) that this module
    neither wants to depend on nor may change for the other users of Pillow in the process. Some openers (WebP,
    GIF frames) apply that limit themselves: their DecompressionBombError becomes :class:`_DeclaredTooMany`."""
    from PIL import Image

    Image.init()
    for name in PILLOW_FORMATS:
        factory, accept = Image.OPEN.get(name, (None, None))
        accepted = factory is not None and (accept is None or accept(prefix))
        if not accepted or isinstance(accepted, str):   # a str is Pillow's "looks like it, but" warning
            continue
        try:
            stream.seek(0)
            return tuple(factory(stream, "").size)
        except Image.DecompressionBombError as error:
            found = re.search(r"\((\d+) pixels\)", str(error))
            raise _DeclaredTooMany(int(found[1]) if found else 2 * (Image.MAX_IMAGE_PIXELS or 0) + 1) from None
        except (SyntaxError, IndexError, TypeError, ValueError, struct.error, EOFError, OSError):
            continue   # what Pillow raises for a header it cannot parse
    return None


def _tiff_header_size(stream: IO[bytes], prefix: bytes) -> tuple[int, int] | None:
    """Width and height of a TIFF's first directory (the page OpenCV decodes), BigTIFF included."""
    from PIL import TiffImagePlugin

    if prefix[:4] not in TiffImagePlugin.PREFIXES:
        return None
    try:
        directory = TiffImagePlugin.ImageFileDirectory_v2(prefix[:16] if b"+" in prefix[2:4] else prefix[:8])
        stream.seek(directory.next)
        directory.load(stream)
        width, height = directory.get(TIFF_WIDTH), directory.get(TIFF_LENGTH)
    except (SyntaxError, IndexError, TypeError, ValueError, struct.error, EOFError, OSError):
        return None
    return (int(width), int(height)) if isinstance(width, int) and isinstance(height, int) else None


def _text_header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) of the text headers Pillow does not read: PFM ``PF``/``Pf``, PAM ``P7`` and Radiance
    HDR (``-Y H +X W`` after the header lines, either axis first)."""
    words = head.split(None, 3) if head[:2] in (b"PF", b"Pf") else []
    if len(words) >= 3 and words[1].isdigit() and words[2].isdigit():
        return int(words[1]), int(words[2])
    if head[:3] == b"P7\n":
        fields = dict(line.split(None, 1) for line in head.split(b"ENDHDR")[0].splitlines()[1:] if b" " in line)
        if fields.get(b"WIDTH", b"").strip().isdigit() and fields.get(b"HEIGHT", b"").strip().isdigit():
            return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    if head.startswith((b"#?RADIANCE", b"#?RGBE")) and b"\n\n" in head:
        found = re.match(rb"([-+])([XY]) (\d+) ([-+])([XY]) (\d+)\n", head.split(b"\n\n", 1)[1])
        if found and {found[2], found[5]} == {b"X", b"Y"}:
            sizes = {found[2]: int(found[3]), found[5]: int(found[6])}
            return sizes[b"X"], sizes[b"Y"]
    return None


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)  # keep the high byte: 65535 → 255, like a 16→8-bit export
    return np.clip(image, 0, 255).astype(np.uint8)


# JPEG decoding on the GPU ------------------------------------------------------------------------------------

_JPEG_MAGIC = b"\xff\xd8\xff"


def resolve_decoder(decoder: str, device, precision: str, *, folder: bool = False) -> str:
    """``cv2`` or ``nvjpeg`` for images that a pipeline on ``device`` computing in ``precision`` decodes.

    ``auto`` takes nvJPEG (``torchvision.io.decode_jpeg`` on the GPU) for one image at a time (the SDK, the
    service: ``folder`` False) on a CUDA device when torchvision is installed and the precision is not ``fp32``,
    and OpenCV otherwise. A ``folder`` job's ``auto`` is OpenCV on every device: its reading threads decode in
    parallel on every core, and on the project's GPU machine (one H100, 16 CPU cores, 2026-12-07) 16 threads of
    ``cv2.imdecode`` decoded the shared photos at 1,028 images/s where batched nvJPEG reached 177 to 207 at any
    batch size (docs/benchmarks.md). Both give BGR; their pixels differ by a few grey levels (different IDCT
    and chroma upsampling), the faces found do not (tested). ``fp32`` keeps OpenCV's pixels: it is the precision
    whose detections equal the original implementation's within 1e-4, which decodes with OpenCV; ``fp16`` and
    ``int8`` differ from it more than the decoders do.
    """
    if decoder not in DECODERS:
        raise RetinaFaceError(f"unknown decoder {decoder!r}; expected one of: {', '.join(DECODERS)}")
    available = getattr(device, "type", str(device)) == "cuda" and importlib.util.find_spec("torchvision") is not None
    if decoder == "nvjpeg" and not available:
        raise RetinaFaceError(f"the nvjpeg decoder needs a CUDA device and torchvision "
                              f"({install_hint('nvjpeg')}); use decoder 'cv2'")
    if decoder == "auto":
        return "nvjpeg" if available and precision != "fp32" and not folder else "cv2"
    return decoder


def is_jpeg(data: bytes) -> bool:
    """Whether ``data`` starts as a JPEG does (what nvJPEG may decode)."""
    return data[:3] == _JPEG_MAGIC


def decode_for(data: bytes, decoder: str, device, source: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS):
    """Decode with ``decoder`` (from :func:`resolve_decoder`): a BGR uint8 [H, W, 3] ndarray from OpenCV, or
    for a JPEG with nvJPEG a BGR uint8 [H, W, 3] tensor on ``device``. Anything nvJPEG does not take (other
    formats, CMYK or progressive corner cases) goes to OpenCV, which also gives the error for bad data. The
    length and header checks of :func:`decode_image` come first either way."""
    if decoder == "nvjpeg" and is_jpeg(data):
        _check_bytes(len(data), source, max_pixels)
        check_header(io.BytesIO(data), source, max_pixels)
        image = decode_jpegs([data], device, [source], max_pixels)[0]
        if isinstance(image, RetinaFaceError):
            raise image
        return image
    return decode_image(data, source=source, max_pixels=max_pixels)


def decode_jpegs(datas: list[bytes], device, sources: list[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> list:
    """JPEG bytes (already checked: :func:`read_bytes`, or the checks of :func:`decode_for`) decoded by nvJPEG,
    each a BGR uint8 [H, W, 3] tensor on ``device`` (EXIF orientation applied, as ``cv2.imdecode`` applies it);
    or, where nvJPEG refuses an image, OpenCV's ndarray; or, for data that neither decodes, the RetinaFaceError
    naming its source (in place of the image: one bad file fails alone).

    Each JPEG is decoded by a call of its own: torchvision's batched call (a list of several JPEGs) gave other
    images' pixels for the photos after the first on the project's H100 (torchvision 0.26, 2026-12-07: the
    batch-against-alone test in tests/runtime/test_decoders.py failed), and it was no faster (177 to 207
    images/s at any batch size).

    The decoding runs on a stream of its own, which is waited for before returning: the tensors are complete
    for any stream that reads them. They were allocated on that stream, so whoever frees them must be done with
    them first (the pipeline frees a batch's images after waiting for its detections)."""
    import torch

    if not datas:
        return []
    device = torch.device(device)
    with torch.cuda.device(device):
        stream = _decode_stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            decoded = [_nvjpeg(data, device) for data in datas]
            images = [None if rgb is None else rgb.flip(0).permute(1, 2, 0) for rgb in decoded]  # RGB → BGR
        stream.synchronize()
    results: list = []
    for data, source, image in zip(datas, sources, images):
        try:
            if image is None:
                image = decode_image(data, source=source, max_pixels=max_pixels)
            else:
                check_size(image, source, max_pixels)
        except RetinaFaceError as error:
            image = error
        results.append(image)
    return results


_DECODE_STREAMS: dict = {}


def _decode_stream(device):
    """The one CUDA stream per device that nvJPEG decodes on (created on first use)."""
    import torch

    if device not in _DECODE_STREAMS:
        _DECODE_STREAMS.setdefault(device, torch.cuda.Stream(device))
    return _DECODE_STREAMS[device]


def _nvjpeg(data: bytes, device):
    """torchvision's nvJPEG decode of one JPEG into an RGB [3, H, W] tensor, or None when it refuses it (a list
    of one: the call whose pixels tests/runtime/test_decoders.py checked on the H100)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        return decode_jpeg([encoded], mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)[0]
    except RuntimeError:
        return None
