"""Fixtures shared by all tests: the ../shared data folder and the real MobileNet-0.25 checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__import__("os").environ.get("RETINAFACE_SHARED", REPO.parent / "shared"))
MNET_SHA256 = "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"missing test data {path}: these tests need ../shared beside the checkout "
                    "(or RETINAFACE_SHARED pointing to it)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def mnet_pth() -> Path:
    """The published mobilenet0.25_Final.pth, copied into the ignored weights/ folder."""
    target = REPO / "weights" / "mobilenet0.25_Final.pth"
    if not target.exists():
        shutil.copyfile(_require(SHARED / "weights" / "mobilenet0.25_Final.pth"), target)
    return target


@pytest.fixture(scope="session")
def crowd_reference(shared_dir) -> dict:
    """Raw outputs and detections of the original implementation on crowd_1024x624.jpg."""
    import numpy as np

    folder = _require(shared_dir / "reference" / "crowd_640")
    return {p.stem: np.load(p) for p in sorted(folder.glob("*.npy"))}


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """What the project caches (engines, ONNX exports) goes to a temporary folder, not the user's ~/.cache."""
    import os

    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("RETINAFACE_TRT_CACHE")
    os.environ["RETINAFACE_TRT_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("RETINAFACE_TRT_CACHE", None)
    else:
        os.environ["RETINAFACE_TRT_CACHE"] = previous


@pytest.fixture
def read_only(monkeypatch):
    """Make creating files in the returned folders fail with EACCES/EROFS, as a read-only folder does for a
    normal user (chmod does not stop root, who runs these tests in CI, so the refusal is simulated)."""
    import errno
    import os

    from retinaface_trt import fileio

    folders: dict[str, int] = {}
    real_open = os.open

    def fake_open(path, flags, *args, **kwargs):
        parent = os.path.dirname(os.path.abspath(os.fspath(path)))
        if flags & os.O_CREAT and parent in folders:
            code = folders[parent]
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(fileio.os, "open", fake_open)

    def add(folder: Path, code: int = errno.EACCES) -> Path:
        folder.mkdir(exist_ok=True)
        folders[str(folder.resolve())] = code
        return folder
    return add


def pytest_report_header(config):
    """Which CPU kernels this run uses: float comparisons must hold whichever they are (tests/README.md)."""
    import os

    import torch

    forced = {name: os.environ[name] for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if name in os.environ}
    return (f"CPU kernels: PyTorch {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads"
            + (f"; forced by {forced}" if forced else ""))
