"""Image reading: BGR kept through base64, layouts converted to BGR uint8, every bad input refused."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime import image_io
from runtime.image_io import decode_base64, decode_image, read_image, to_bgr8
from runtime.options import max_file_bytes


def _coloured(height=24, width=32) -> np.ndarray:
    """A synthetic image whose three channels all differ (a swap to RGB would show)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image[:, :, 0] = 10   # blue low, red high: BGR and RGB differ everywhere
    image[:, :, 2] = 240
    return image


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def test_base64_keeps_bgr_like_imread(tmp_path):
    path = tmp_path / "c.png"
    path.write_bytes(_png(_coloured()))
    decoded = decode_base64(base64.b64encode(path.read_bytes()).decode())
    np.testing.assert_array_equal(decoded, cv2.imread(str(path)))


def test_base64_data_url_prefix_is_accepted():
    text = "data:image/png;base64," + base64.b64encode(_png(_coloured())).decode()
    np.testing.assert_array_equal(decode_base64(text), _coloured())


def test_empty_base64_is_refused():
    with pytest.raises(RetinaFaceError, match="empty"):
        decode_base64("")


def test_invalid_base64_is_refused():
    with pytest.raises(RetinaFaceError, match="invalid base64"):
        decode_base64("not*base64!")


def test_base64_of_non_image_is_refused():
    with pytest.raises(RetinaFaceError, match="not a readable image"):
        decode_base64(base64.b64encode(b"hello, this is text").decode())


def test_truncated_jpeg_is_refused(shared_dir):
    data = (shared_dir / "images" / "crowd_1024x624.jpg").read_bytes()
    with pytest.raises(RetinaFaceError, match="not a readable image"):
        decode_image(data[:600], source="cut.jpg")


def test_text_file_is_refused(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image")
    with pytest.raises(RetinaFaceError, match="notes.jpg"):
        read_image(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(RetinaFaceError, match="no such file"):
        read_image(tmp_path / "absent.jpg")


def test_folder_is_refused_as_file(tmp_path):
    with pytest.raises(RetinaFaceError, match="is a folder"):
        read_image(tmp_path)


def test_grayscale_png_becomes_bgr():
    gray = _coloured()[:, :, 1].copy()
    out = decode_image(_png(gray))
    assert out.shape == (*gray.shape, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


def test_rgba_png_drops_alpha():
    bgra = np.dstack([_coloured(), np.full((24, 32), 77, np.uint8)])
    np.testing.assert_array_equal(decode_image(_png(bgra)), _coloured())


def test_16_bit_png_keeps_high_byte():
    wide = _coloured().astype(np.uint16) * 257  # v * 257 has high byte v
    out = decode_image(_png(wide))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, _coloured())


def test_zero_size_array_is_refused():
    with pytest.raises(RetinaFaceError, match="zero-size"):
        to_bgr8(np.zeros((0, 5, 3), np.uint8))


def test_pixel_limit_is_enforced():
    with pytest.raises(RetinaFaceError, match="exceeds the limit"):
        decode_image(_png(_coloured()), max_pixels=24 * 32 - 1)


def test_pixel_limit_allows_exact_size():
    assert decode_image(_png(_coloured()), max_pixels=24 * 32).shape == (24, 32, 3)


# ---- nothing is decoded, or read, before it is known to fit ---------------------------------------------

REPO = Path(__file__).resolve().parents[2]
# What cv2.imencode writes here (every format OpenCV decodes and encodes in this build), by extension.
ENCODED = (".bmp", ".jpg", ".jp2", ".png", ".webp", ".avif", ".pbm", ".ppm", ".pfm", ".sr", ".tiff", ".hdr",
           ".gif", ".pam")


def _encoded(ext: str, height=64, width=96) -> bytes:   # JPEG 2000 needs 64 pixels or more a side
    image = _coloured(height, width)
    if ext in (".pfm", ".hdr"):
        image = image.astype(np.float32) / 255
    elif ext == ".pbm":
        image = image[:, :, 1]
    ok, data = cv2.imencode(ext, image)
    assert ok, ext
    return data.tobytes()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def zero_png(width: int, height: int) -> bytes:
    """A valid 8-bit grayscale PNG of zeros, built in constant time: every row is compressed alone after a
    full flush (so its deflate bytes repeat exactly); the Adler-32 of n zero bytes is (n mod 65521) << 16 | 1."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    row = compressor.compress(bytes(width + 1)) + compressor.flush(zlib.Z_FULL_FLUSH)
    raw_length = (width + 1) * height
    stream = b"\x78\xda" + row * height + compressor.flush() + struct.pack(">I", (raw_length % 65521) << 16 | 1)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", stream) + _png_chunk(b"IEND", b"")


def test_zero_png_helper_is_a_real_png():
    decoded = cv2.imdecode(np.frombuffer(zero_png(70, 40), np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.shape == (40, 70) and not decoded.any()


@pytest.mark.parametrize("ext", ENCODED)
def test_header_size_of_every_format_opencv_writes(ext):
    assert image_io.header_size(io.BytesIO(_encoded(ext, 64, 96))) == (96, 64)


@pytest.mark.parametrize("ext", ENCODED)
def test_size_is_refused_from_the_header_without_decoding(ext, monkeypatch):
    def no_decoding(*args):
        raise AssertionError("cv2.imdecode was called")

    data = _encoded(ext, 64, 96)
    monkeypatch.setattr(image_io.cv2, "imdecode", no_decoding)
    with pytest.raises(RetinaFaceError, match="header declares 96×64 = 6144 pixels, which exceeds the limit of 6143"):
        decode_image(data, source=f"a{ext}", max_pixels=6143)


def test_jpeg_declaring_60000_squared_is_refused(shared_dir):
    data = bytearray((shared_dir / "images" / "crowd_1024x624.jpg").read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    with pytest.raises(RetinaFaceError, match="header declares 60000×60000"):
        decode_image(bytes(data), source="bomb.jpg")


_MEASURE = textwrap.dedent("""
    import base64, json, resource, sys
    from runtime import image_io
    data = open(sys.argv[1], "rb").read()
    text = base64.b64encode(data).decode()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    errors = []
    for call in (lambda: image_io.read_image(sys.argv[1]), lambda: image_io.decode_base64(text),
                 lambda: image_io.decode_image(data)):
        try:
            call()
            errors.append("no error")
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"errors": errors, "growth_mib": (after - before) / 1024}))
""")


def test_decompression_bomb_is_refused_with_flat_memory(tmp_path):
    """A 1.3 MB PNG declaring 32000×32000 pixels (1 GB once decoded, 3 GB as BGR): refused from its header by
    the file, base64 and bytes entries, the peak memory of the process growing by less than 64 MiB."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(zero_png(32000, 32000))
    assert bomb.stat().st_size < 2 << 20
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(bomb)], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    outcome = json.loads(result.stdout)
    assert all(e.startswith("RetinaFaceError") and "32000×32000" in e for e in outcome["errors"]), outcome
    assert outcome["growth_mib"] < 64, outcome


def test_sdk_refuses_a_bomb_before_the_network(tmp_path, monkeypatch, crowd_reference):
    from runtime import Engine, backends
    from tests.runtime.conftest import ReplayBackend

    replay = ReplayBackend(crowd_reference)
    monkeypatch.setattr(backends, "create_backend", lambda *a, **k: replay)
    with Engine(weights="replayed.pth", resize="stretch") as engine:
        with pytest.raises(RetinaFaceError, match="declares 20000×20000"):
            engine.infer(base64.b64encode(zero_png(20000, 20000)).decode())
    assert replay.batches == []


def test_fifo_named_like_an_image_is_refused_at_once(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    outcome = []

    def read():
        try:
            read_image(fifo)
            outcome.append("no error")
        except RetinaFaceError as error:
            outcome.append(str(error))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    try:
        assert not reader.is_alive(), "read_image waited on a FIFO"
        assert outcome == [f"{fifo} is a FIFO, not a regular file; expected an image file"]
    finally:
        with contextlib.suppress(OSError):   # release a reader blocked in open() (the code before the fix)
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_character_device_is_refused_without_reading():
    """``detect /dev/zero`` read forever; run in a child with 2 GiB of address space so that a regression
    fails with MemoryError instead of exhausting the machine."""
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
            "from runtime.image_io import read_image\n"
            "try:\n    read_image('/dev/zero')\nexcept Exception as error:\n    print(type(error).__name__, error)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "RetinaFaceError /dev/zero is a character device, not a regular file; " \
                                    "expected an image file", result.stdout + result.stderr


def test_file_over_the_byte_limit_is_refused_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.jpg"
    with open(big, "wb") as handle:   # sparse: no disk space, no time
        handle.truncate(max_file_bytes(1000) + 1)
    monkeypatch.setattr(image_io, "header_size", lambda stream: pytest.fail("the file was read"))
    with pytest.raises(RetinaFaceError, match=rf"{max_file_bytes(1000) + 1} bytes is more than an image of at most "
                                              "1000 pixels takes"):
        read_image(big, max_pixels=1000)


def test_base64_over_the_byte_limit_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(image_io, "max_file_bytes", lambda max_pixels: 100)
    monkeypatch.setattr(image_io.base64, "b64decode", lambda *a, **k: pytest.fail("the base64 was decoded"))
    with pytest.raises(RetinaFaceError, match="150 bytes is more than"):
        decode_base64("A" * 200)


def test_no_limit_decodes_without_a_header_check(monkeypatch):
    monkeypatch.setattr(image_io, "header_size", lambda stream: pytest.fail("the header was read"))
    assert decode_image(_png(_coloured()), max_pixels=0).shape == (24, 32, 3)


def test_byte_limit_follows_the_pixel_limit():
    assert max_file_bytes(0) == 0
    assert max_file_bytes(40_000_000) == 40_000_000 * 16 + (64 << 20)


def _exif_rotated_jpeg(orientation: int) -> bytes:
    """A 40×80 JPEG whose EXIF says how to turn it (6: 90° clockwise, as phones store portrait photos)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(_coloured(40, 80)).save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_is_applied_like_imread(tmp_path, orientation):
    path = tmp_path / "phone.jpg"
    path.write_bytes(_exif_rotated_jpeg(orientation))
    expected = cv2.imread(str(path))   # what detect.py reads
    assert expected.shape[:2] == ((80, 40) if orientation in (6, 8) else (40, 80))
    np.testing.assert_array_equal(read_image(path), expected)
    np.testing.assert_array_equal(decode_base64(base64.b64encode(path.read_bytes()).decode()), expected)


@pytest.mark.parametrize("ext", [".png", ".tiff", ".webp"])
def test_layouts_decode_as_imread_does(ext):
    """Alpha, 16-bit and float convert exactly as cv2.imread converts them (detect.py's reader); a float TIFF,
    which cv2.imread refuses, is scaled by 255 as HDR is."""
    rng = np.random.default_rng(3)
    for image in (rng.integers(0, 256, (20, 30, 4), dtype=np.uint8), rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16),
                  rng.random((20, 30, 3), dtype=np.float32) * 300):
        if ext == ".webp" and image.dtype != np.uint8 or ext == ".png" and image.dtype == np.float32:
            continue
        data = cv2.imencode(ext, image)[1]
        expected = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if expected is None:     # float TIFF
            assert ext == ".tiff" and image.dtype == np.float32
            expected = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(decode_image(data.tobytes()), expected)


@pytest.mark.parametrize("dtype, channels", [("uint8", 1), ("uint8", 4), ("uint16", 3), ("uint16", 4),
                                             ("float32", 1), ("float32", 3)])
def test_header_size_of_every_tiff_layout_opencv_writes(dtype, channels):
    """Pillow's TIFF opener refuses some layouts OpenCV decodes (float32 RGB): the directory is read instead."""
    image = np.zeros((64, 96, channels) if channels > 1 else (64, 96), dtype)
    data = cv2.imencode(".tiff", image)[1].tobytes()
    assert image_io.header_size(io.BytesIO(data)) == (96, 64)
    assert decode_image(data).shape == (64, 96, 3)


def test_header_size_of_a_bigtiff():
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(_coloured(64, 96)).save(buffer, "TIFF", big_tiff=True)
    assert buffer.getvalue()[:4] == b"II+\x00" and image_io.header_size(buffer) == (96, 64)
