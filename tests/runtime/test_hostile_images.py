"""Hostile and unusual image files, generated here: each gets one line (or is decoded as cv2.imread decodes it)
in the reader, the SDK, detect (which goes on with the other inputs) and compare."""

from __future__ import annotations

import base64
import json
import struct

import cv2
import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime import backends
from runtime.cli import main as cli
from runtime.image_io import decode_base64, decode_image, read_image
from tests.runtime.conftest import ReplayBackend


def webp_bomb() -> bytes:
    """26 bytes: a lossless WebP whose header declares 16384×16384 pixels."""
    bits = (16384 - 1) | ((16384 - 1) << 14)
    vp8l = b"\x2f" + struct.pack("<I", bits) + b"\x00"
    chunk = b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def gif_bomb() -> bytes:
    """29 bytes: a 1×1 GIF whose one frame declares 65535×65535 pixels."""
    return (b"GIF89a" + struct.pack("<HH", 1, 1) + b"\x00\x00\x00" + b"\x2c" + struct.pack("<HHHH", 0, 0, 65535, 65535)
            + b"\x00" + b"\x02\x02\x44\x01\x00" + b"\x3b")


BOMBS = {"bomb.webp": webp_bomb, "bomb.gif": gif_bomb}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_header_pillow_calls_a_decompression_bomb_is_refused_on_one_line(tmp_path, name):
    data = BOMBS[name]()
    path = tmp_path / name
    path.write_bytes(data)
    for read in (lambda: read_image(path), lambda: decode_image(data, source=name),
                 lambda: decode_base64(base64.b64encode(data).decode(), source=name)):
        with pytest.raises(RetinaFaceError, match=rf"(^|/){name}: its header declares a frame of \d+ pixels, which "
                                                  r"exceeds the limit of 40000000; .*--max-pixels"):
            read()


def test_a_bomb_above_pillows_own_limit_but_within_max_pixels_names_the_way_out(tmp_path):
    with pytest.raises(RetinaFaceError, match="more than the header reader .Pillow. takes; pass --max-pixels 0"):
        decode_image(webp_bomb(), source="w.webp", max_pixels=300_000_000)


def test_detect_reports_a_bomb_and_writes_the_records_of_the_good_images(tmp_path, shared_dir, crowd_reference,
                                                                        monkeypatch, capsys):
    monkeypatch.setattr(backends, "create_backend", lambda *a, **k: ReplayBackend(crowd_reference))
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((shared_dir / "images" / "crowd_1024x624.jpg").read_bytes())
    for name, make in BOMBS.items():
        (folder / name).write_bytes(make())
    out = tmp_path / "o.json"
    assert cli.main(["detect", str(folder), "--weights", "replayed.pth", "--resize", "stretch", "--json", str(out),
                     "-q"]) == 1
    records = {r["image"].rsplit("/", 1)[1]: r for r in json.loads(out.read_text())}
    assert records["a.jpg"]["faces"] and "declares a frame" in records["bomb.gif"]["error"]
    assert "declares a frame" in records["bomb.webp"]["error"]
    err = capsys.readouterr().err
    assert "Traceback" not in err and "2 of 3 inputs failed" in err


def test_the_sdk_raises_the_projects_error_for_a_bomb(mnet_pth):
    from runtime import Engine

    with Engine(weights=str(mnet_pth), backend="torch", device="cpu", resize="letterbox",
                input_size=(160, 160)) as engine:
        with pytest.raises(RetinaFaceError, match="declares a frame"):
            engine.infer(base64.b64encode(gif_bomb()).decode())


def test_compare_prints_one_line_for_a_bomb(mnet_pth, tmp_path, capsys):
    path = tmp_path / "bomb.webp"
    path.write_bytes(webp_bomb())
    assert cli.main(["compare", "--weights", str(mnet_pth), "--input-size", "64x64", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "declares a frame" in err and "Traceback" not in err


# ---- decoded as cv2.imread decodes (detect.py's reader) ------------------------------------------------------

def _gradient(height=48, width=64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack([x / width, y / height, (x + y) / (width + height)]).astype(np.float32)


@pytest.mark.parametrize("name, scale, dtype", [
    ("radiance.hdr", 1.7, np.float32),       # OpenCV scales HDR by 255: values above 1 saturate
    ("float.pfm", 255.0, np.float32),        # PFM: rounded as stored
    ("wide.tiff", 65535.0, np.uint16),       # 16-bit TIFF: rounded, not the high byte
    ("wide.png", 65535.0, np.uint16),        # 16-bit PNG: libpng's high byte
    ("gray.pgm", 65535.0, np.uint16)])
def test_files_decode_as_imread_decodes_them(tmp_path, name, scale, dtype):
    image = _gradient() * scale
    if name.endswith(".pgm"):
        image = image[:, :, 0]
    path = tmp_path / name
    assert cv2.imwrite(str(path), image.astype(dtype) if dtype == np.uint16 else image)
    expected = cv2.imread(str(path))
    assert expected is not None and expected.std() > 1          # not a blank image
    np.testing.assert_array_equal(read_image(path), expected)
    np.testing.assert_array_equal(decode_image(path.read_bytes()), expected)


def test_a_float_tiff_which_imread_refuses_is_scaled_like_hdr(tmp_path):
    path = tmp_path / "float.tiff"
    assert cv2.imwrite(str(path), _gradient())
    expected = np.clip(np.rint(_gradient() * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(read_image(path), expected)


def test_folders_take_every_extension_opencv_reads(tmp_path, crowd_reference, monkeypatch):
    from runtime.options import IMAGE_SUFFIXES

    monkeypatch.setattr(backends, "create_backend", lambda *a, **k: ReplayBackend(crowd_reference))
    folder = tmp_path / "in"
    folder.mkdir()
    image = (np.dstack([_gradient()[:, :, 0]] * 3) * 255).astype(np.uint8)
    for suffix in (".jpe", ".gif", ".avif", ".pbm", ".pfm", ".hdr", ".ras", ".sr", ".pam", ".dib", ".pic"):
        data = image[:, :, 0] if suffix == ".pbm" else image.astype(np.float32) / 255 if suffix in (
            ".pfm", ".hdr", ".pic") else image
        ok, encoded = cv2.imencode(".hdr" if suffix == ".pic" else suffix, data)
        assert ok and suffix in IMAGE_SUFFIXES, suffix
        (folder / f"a{suffix}").write_bytes(encoded.tobytes())
    (folder / "a.jfif").write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "o.json"
    assert cli.main(["detect", str(folder), "--weights", "replayed.pth", "--resize", "stretch", "--json", str(out),
                     "-q"]) == 0
    records = json.loads(out.read_text())
    assert len(records) == 12 and all("error" not in r and r["width"] == 64 for r in records)


@pytest.mark.parametrize("suffix, magic", [(".pgm", b"P5"), (".pbm", b"P4"), (".hdr", b"#?RADIANCE"),
                                           (".jfif", b"\xff\xd8\xff"), (".pxm", b"P6")])
def test_annotated_copies_are_encoded_in_the_format_their_name_says(tmp_path, crowd_reference, monkeypatch, suffix,
                                                                    magic, capfd):
    monkeypatch.setattr(backends, "create_backend", lambda *a, **k: ReplayBackend(crowd_reference))
    folder, out = tmp_path / "in", tmp_path / "copies"
    folder.mkdir()
    image = (np.dstack([_gradient()[:, :, 0]] * 3) * 255).astype(np.uint8)
    data = image[:, :, 0] if suffix in (".pgm", ".pbm") else image.astype(np.float32) / 255 if suffix == ".hdr" \
        else image
    (folder / f"a{suffix}").write_bytes(cv2.imencode({".jfif": ".jpg", ".pxm": ".ppm"}.get(suffix, suffix), data)[1])
    assert cli.main(["detect", str(folder), "--weights", "replayed.pth", "--resize", "stretch", "--save-dir",
                     str(out), "-q"]) == 0
    copy = (out / f"a{suffix}").read_bytes()
    assert copy.startswith(magic)
    assert cv2.imdecode(np.frombuffer(copy, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    assert capfd.readouterr().err == ""                                     # no stray line from OpenCV


def test_a_copy_opencv_cannot_encode_fails_that_input_on_one_line():
    from runtime.draw import encode_like

    with pytest.raises(RetinaFaceError, match=r"^tiny.jp2: OpenCV cannot encode its annotated copy \(4×4\) as .jp2"):
        encode_like("tiny.jp2", np.zeros((4, 4, 3), np.uint8))
