"""The command line's stderr holds its own lines only: libpng's, OpenCV's and Python warnings' are dropped."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np

from runtime.cli import quiet

REPO = Path(__file__).resolve().parents[3]


def _png_with_a_bad_icc_profile() -> bytes:
    png = cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    body = b"foo\x00\x00" + zlib.compress(b"not a profile" * 10)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    return png[:33] + chunk + png[33:]       # after IHDR: libpng warns "iCCP: ..." on its own


def test_detect_prints_no_line_of_libpng_or_opencv(tmp_path, mnet_pth):
    (tmp_path / "icc.png").write_bytes(_png_with_a_bad_icc_profile())
    direct = subprocess.run([sys.executable, "-c", "import cv2, sys; cv2.imread(sys.argv[1])", str(tmp_path / "icc.png")],
                            capture_output=True, text=True, timeout=60)
    assert "libpng warning" in direct.stderr                  # what the file makes libpng print
    result = subprocess.run([sys.executable, "-m", "retinaface_trt", "detect", str(tmp_path / "icc.png"),
                             "--weights", str(mnet_pth), "--device", "cpu", "--resize", "letterbox", "--input-size",
                             "64x64", "--save-dir", str(tmp_path / "copies"), "-q"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def _filtered(chunks: list[bytes]) -> bytes:
    read_end, write_end = os.pipe()
    out_read, out_write = os.pipe()
    pump = threading.Thread(target=quiet._pump, args=(read_end, out_write))
    pump.start()
    for chunk in chunks:
        os.write(write_end, chunk)
    os.close(write_end)
    pump.join(10)
    os.close(out_write)
    with os.fdopen(out_read, "rb") as source:
        return source.read()


def test_the_filter_drops_library_lines_and_keeps_everything_else_in_order():
    chunks = [b"detect 1/2 [##   ] 50%\r", b"libpng warn", b"ing: iCCP: too short\n",
              b"[ WARN:0@0.084] global grfmt_tiff.cpp:811 readData ...\n", b"retinaface-trt detect: error: x\n",
              b"[ERROR:0@0.055] global loadsave.cpp imencode\n", b"2 images, 0 faces"]
    assert _filtered(chunks) == b"detect 1/2 [##   ] 50%\rretinaface-trt detect: error: x\n2 images, 0 faces"


def _stderr_seen_through_the_filter(terminal: bool) -> bytes:
    """What a child printing ``sys.stderr.isatty()`` inside :func:`quiet.filtered_stderr` writes to its fd 2, a
    pseudo-terminal or a pipe."""
    import pty

    code = "import sys\nfrom runtime.cli import quiet\nwith quiet.filtered_stderr():\n    print(sys.stderr.isatty(), file=sys.stderr)\n"
    if terminal:
        leader, follower = pty.openpty()
    else:
        leader, follower = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=follower)
    os.close(follower)
    data = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:             # a pseudo-terminal whose other side closed
            break
        if not chunk:
            break
        data += chunk
    child.wait(60)
    os.close(leader)
    return data


def test_the_progress_bar_still_sees_a_terminal_behind_the_filter():
    # fd 2 becomes the filter's pipe; the bar must still be redrawn in place where stderr is a terminal
    assert _stderr_seen_through_the_filter(terminal=True).strip() == b"True"
    assert _stderr_seen_through_the_filter(terminal=False).strip() == b"False"
