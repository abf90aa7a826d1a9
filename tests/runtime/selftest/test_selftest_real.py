"""`retinaface-trt selftest` on real TensorRT and an NVIDIA GPU (-m tensorrt; skipped here with the reason).

Nothing here has run yet: no machine of this project has TensorRT (docs/tensorrt.md). Run on one with
TensorRT (each case builds an engine; allow half an hour):

    python -m pytest -q -m tensorrt tests/runtime/selftest/test_selftest_real.py
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.tensorrt
torch = pytest.importorskip("torch")
trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install '.[tensorrt]' in the clone)")
if not torch.cuda.is_available():
    pytest.skip("TensorRT needs a CUDA device; PyTorch sees none", allow_module_level=True)

from runtime.backends.tensorrt.compat import version_tuple  # noqa: E402


def selftest(tmp_path, *arguments) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / "selftest.json"
    done = subprocess.run([sys.executable, "-m", "retinaface_trt", "selftest", *arguments, "--report", str(report)],
                          capture_output=True, text=True, timeout=3600)
    assert report.is_file(), done.stdout + done.stderr[-4000:]
    return done, json.loads(report.read_text())


def expected_skips(precisions=("fp32", "fp16")) -> set[str]:
    """The kinds this TensorRT and GPU cannot build, as runtime.backends.tensorrt.compat decides them."""
    version, capability = version_tuple(trt.__version__), torch.cuda.get_device_capability(0)
    skipped = set()
    if not hasattr(trt.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY"):
        skipped |= {f"{p}/same-cc" for p in precisions}
    if capability < (8, 0):
        skipped |= {f"{p}/ampere+" for p in precisions}
    if version[0] >= 11 and "fp16" in precisions:
        skipped.add("fp16/onnx")
    return skipped


def test_every_mobilenet_case_passes_with_random_weights(tmp_path):
    done, report = selftest(tmp_path, "--cases", "mobilenet0.25/*")
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    environment = report["environment"]
    assert environment["tensorrt"] == trt.__version__ and environment["gpu"] == torch.cuda.get_device_name(0)
    skipped = {c["name"].split("/", 1)[1] for c in report["cases"] if c["status"] == "skipped"}
    assert skipped == expected_skips()
    ran = [c for c in report["cases"] if c["status"] != "skipped"]
    assert ran and all(c["status"] == "passed" for c in ran)
    assert all(c["build"]["engine_bytes"] > 100_000 and c["build"]["seconds"] > 0 for c in ran)   # real plans


def test_the_published_checkpoint_is_judged_on_its_faces(tmp_path, mnet_pth):
    done, report = selftest(tmp_path, "--weights", str(mnet_pth), "--cases", "fixed", "dynamic-size", "postprocess")
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    fp16 = [c for c in report["cases"] if c["precision"] == "fp16"]
    assert fp16 and all(c["faces"]["reference"] >= 10 for c in fp16)
    assert {check["name"] for c in fp16 for check in c["checks"]} == {"faces matched"}


def test_resnet50_engines_pass_in_both_precisions(tmp_path):
    done, report = selftest(tmp_path, "--cases", "resnet50/*/fixed", "resnet50/*/dynamic-size")
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert [c["status"] for c in report["cases"]] == ["passed"] * 4
