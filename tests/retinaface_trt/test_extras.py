"""Missing optional dependencies: one line naming the extra, from the real CLI with the packages hidden."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from retinaface_trt.errors import RetinaFaceError

REPO = Path(__file__).resolve().parents[2]
ONNX = ("onnx", "onnxruntime", "onnxslim")
EVAL = ("scipy", "matplotlib")


def run_without(hidden, *argv, timeout=300) -> subprocess.CompletedProcess:
    """``retinaface-trt ARGV`` in a child process where the ``hidden`` packages cannot be imported."""
    return subprocess.run([sys.executable, "-m", "tests.hide_modules", ",".join(hidden), *map(str, argv)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _one_error_line(result, extra: str) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"needs the '{extra}' extra" in lines[0] and f"pip install '.[{extra}]'" in lines[0]
    return lines[0]


def test_require_returns_the_module():
    import json

    from retinaface_trt.extras import require

    assert require("json", "eval", "a test") is json


def test_require_names_the_extra_and_its_packages():
    from retinaface_trt.extras import require

    with pytest.raises(RetinaFaceError, match=r"frobnicate needs the 'eval' extra \(scipy, matplotlib\), but "
                                              r"no_such_module_x is not installed"):
        require("no_such_module_x", "eval", "frobnicate")


def test_extra_packages_come_from_the_installed_metadata():
    from retinaface_trt.extras import extra_packages

    assert extra_packages("onnx") == list(ONNX) and extra_packages("eval") == list(EVAL)


def test_hidden_package_cannot_be_imported():
    result = subprocess.run([sys.executable, "-c", "from tests.hide_modules import hide; hide('scipy'); "
                             "import importlib.util; print(importlib.util.find_spec('scipy')); import scipy"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "None" and "No module named 'scipy'" in result.stderr


def test_export_onnx_without_the_onnx_extra(mnet_pth, tmp_path):
    line = _one_error_line(run_without(ONNX, "export-onnx", mnet_pth, tmp_path / "m.onnx"), "onnx")
    assert line.startswith("retinaface-trt export-onnx: error: export-onnx needs") and "onnx is not installed" in line
    assert list(tmp_path.iterdir()) == []


def test_simplify_without_onnxslim(mnet_pth, tmp_path):
    line = _one_error_line(run_without(["onnxslim"], "export-onnx", mnet_pth, tmp_path / "m.onnx", "--simplify"),
                           "onnx")
    assert "--simplify needs" in line and "onnxslim is not installed" in line and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing", EVAL)
def test_evaluate_without_the_eval_extra(shared_dir, mnet_pth, tmp_path, missing):
    subset = shared_dir / "widerface" / "val_subset_416"
    listing = tmp_path / "one.txt"
    listing.write_text("/0--Parade/0_Parade_Parade_0_102.jpg\n")
    result = run_without([missing], "evaluate", "--weights", mnet_pth, "--images", subset / "images",
                         "--ground-truth", shared_dir / "widerface" / "ground_truth", "--list", listing,
                         "--scale-manifest", subset / "manifest.tsv", "--backend", "torch", "--out", tmp_path / "out")
    line = _one_error_line(result, "eval")
    assert line.startswith("retinaface-trt evaluate: error: evaluate needs") and f"{missing} is not installed" in line
    assert not (tmp_path / "out").exists()


def test_help_detect_and_export_wts_need_no_extra(shared_dir, mnet_pth, tmp_path):
    hidden = ONNX + EVAL + ("tensorrt",)
    assert run_without(hidden, "--help").returncode == 0
    result = run_without(hidden, "detect", shared_dir / "images" / "crowd_1024x624.jpg", "--weights", mnet_pth,
                         "--backend", "torch", "--device", "cpu", "--json", tmp_path / "o.json")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o.json").stat().st_size > 0
    result = run_without(hidden, "export-wts", mnet_pth, tmp_path / "m.wts")
    assert result.returncode == 0 and (tmp_path / "m.wts").stat().st_size > 0, result.stderr


def test_detect_on_a_video_without_the_video_extra(mnet_pth, tmp_path):
    result = run_without(["av"], "detect", tmp_path / "clip.mp4", "--weights", mnet_pth, "--backend", "torch",
                         "--json-lines", tmp_path / "f.jsonl", "--save-dir", tmp_path / "copies")
    line = _one_error_line(result, "video")
    assert line.startswith("retinaface-trt detect: error: detect on videos needs") and "av is not installed" in line
    assert list(tmp_path.iterdir()) == []


def test_python_dash_m_runs_the_cli():
    version = subprocess.run([sys.executable, "-m", "retinaface_trt", "--version"], cwd=REPO, capture_output=True,
                             text=True, timeout=60)
    from retinaface_trt import __version__
    assert version.returncode == 0 and version.stdout.strip() == f"retinaface-trt {__version__}"
    bare = subprocess.run([sys.executable, "-m", "retinaface_trt"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and bare.stderr.startswith("usage: retinaface-trt")
