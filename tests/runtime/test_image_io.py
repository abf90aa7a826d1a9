"""Image reading: BGR kept through base64, layouts converted to BGR uint8, every bad input refused."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.image_io import decode_base64, decode_image, read_image, to_bgr8


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
