"""Fixtures of the conformance tests: the real TensorRT bindings of each checked version, a compiled
stand-in for the native libraries, and the probe's findings per version (one subprocess per version).

The bindings are installed by ``tools/install_trt_bindings.sh`` into ``.cache/trt/<version>/``. Where
they (or gcc) are missing the tests skip with the reason, unless ``RETINAFACE_REQUIRE_TRT_BINDINGS=1``
(set by ``.ci/run``), in which case they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSIONS = ("8.6.1", "10.3.0", "10.16.1.11", "11.4.0.106")
SONAMES = [f"lib{lib}.so.{major}" for major in (8, 10, 11)
           for lib in ("nvinfer", "nvinfer_plugin", "nvonnxparser", "nvparsers")]


def missing(reason: str):
    """Fail under RETINAFACE_REQUIRE_TRT_BINDINGS=1 (CI), skip otherwise."""
    if os.environ.get("RETINAFACE_REQUIRE_TRT_BINDINGS") == "1":
        pytest.fail(f"{reason} (RETINAFACE_REQUIRE_TRT_BINDINGS=1); run tools/install_trt_bindings.sh")
    pytest.skip(f"{reason}; run tools/install_trt_bindings.sh to check against the real TensorRT bindings")


@pytest.fixture(scope="session")
def stub_dir(tmp_path_factory) -> Path:
    """A folder holding the compiled stand-in under every soname the bindings link."""
    if shutil.which("gcc") is None:
        missing("gcc is needed to compile the stand-in TensorRT library")
    folder = tmp_path_factory.mktemp("trt_stub")
    library = folder / "libtrt_stub.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(library),
                    str(REPO / "tests" / "conformance" / "stub" / "trt_stub.c")], check=True)
    for soname in SONAMES:
        shutil.copyfile(library, folder / soname)
    return folder


def bindings_dir(version: str) -> Path:
    folder = REPO / ".cache" / "trt" / version
    if not (folder / "tensorrt_bindings").is_dir():
        missing(f"the TensorRT {version} bindings are not installed in {folder}")
    return folder


_PROBES: dict[str, dict] = {}


@pytest.fixture(scope="session")
def probe(stub_dir, mnet_pth, tmp_path_factory):
    """``probe(version)`` → the findings of tests/conformance/probe.py for that version (run once)."""

    def run(version: str) -> dict:
        if version not in _PROBES:
            out = tmp_path_factory.mktemp("probe") / f"{version}.json"
            env = dict(os.environ, LD_LIBRARY_PATH=str(stub_dir),
                       PYTHONPATH=os.pathsep.join([str(bindings_dir(version)), str(REPO)]))
            done = subprocess.run([sys.executable, "-m", "tests.conformance.probe", str(out), str(mnet_pth)],
                                  cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                pytest.fail(f"the probe for TensorRT {version} crashed:\n{done.stderr[-4000:]}")
            _PROBES[version] = json.loads(out.read_text())
        return _PROBES[version]

    return run
