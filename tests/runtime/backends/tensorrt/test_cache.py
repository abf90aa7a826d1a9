"""The engine cache (runtime.backends.tensorrt.cache): its key, reuse, rebuild of damaged entries, and where
the build goes (device, timing caches), with the build itself replaced by a recorder."""

from __future__ import annotations

import hashlib

import pytest

from retinaface_trt.thresholds import Thresholds
from runtime.backends.tensorrt import build as trt_build
from runtime.backends.tensorrt import cache, sidecar
from runtime.backends.tensorrt.cache import engine_cache_key, ensure_engine
from runtime.backends.tensorrt.sidecar import DeviceInfo
from tests.runtime.backends.tensorrt.fakes import fake_trt, info_for

A100 = DeviceInfo("NVIDIA A100-SXM4-80GB", "8.0", 1)


def test_cache_key_depends_on_precision_and_tensorrt_version():
    keys = {engine_cache_key("ab", v, "H100 sm9.0", p, (640, 640), 8)
            for v in ("10.16.1.11", "11.4.0.106") for p in ("fp32", "fp16")}
    assert len(keys) == 4


def test_cache_key_includes_the_project_version():
    """Audit item 5: a new release may build another network from the same weights."""
    assert engine_cache_key("ab", "10.16.1.11", "H100", "fp32", (640, 640), 8, project_version="0.1.0") != \
        engine_cache_key("ab", "10.16.1.11", "H100", "fp32", (640, 640), 8, project_version="0.2.0")


def test_cache_key_includes_the_postprocessing():
    keys = {engine_cache_key("ab", "10.16.1.11", "H100", "fp32", (640, 640), 8, postprocess=p)
            for p in (None, Thresholds().in_engine(), Thresholds(confidence_threshold=0.5).in_engine())}
    assert len(keys) == 3


@pytest.fixture()
def recorder(monkeypatch, mnet_pth):
    """Replaces the build by a recorder that writes a valid engine + sidecar; returns the calls."""
    calls = []

    def fake_build(weights, path, options, force=False, trt=None, device_index=0):
        calls.append({"options": options, "device_index": device_index, "path": path})
        plan = b"engine bytes"
        path.write_bytes(plan)
        sidecar.write_sidecar(path, info_for(plan))
        return path

    monkeypatch.setattr(trt_build, "build_engine_file", fake_build)
    monkeypatch.setattr(sidecar, "current_device", lambda index: A100)
    return calls


def test_an_engine_is_built_once_then_reused(tmp_path, recorder, mnet_pth):
    trt = fake_trt("10.16.1.11")
    first = ensure_engine(mnet_pth, tmp_path, trt=trt, device_index=1)
    again = ensure_engine(mnet_pth, tmp_path, trt=trt, device_index=1)
    assert first == again and len(recorder) == 1 and recorder[0]["device_index"] == 1


def test_the_build_uses_the_cache_folder_for_timing_caches(tmp_path, recorder, mnet_pth):
    ensure_engine(mnet_pth, tmp_path / "cache", trt=fake_trt("10.16.1.11"), device_index=1,
                  postprocess=Thresholds().in_engine())
    options = recorder[0]["options"]
    assert options.timing_cache_dir == tmp_path / "cache" and options.postprocess == Thresholds().in_engine()


def test_a_damaged_cached_engine_is_rebuilt(tmp_path, recorder, mnet_pth):
    trt = fake_trt("10.16.1.11")
    path = ensure_engine(mnet_pth, tmp_path, trt=trt)
    path.write_bytes(b"engine bytez")
    assert hashlib.sha256(path.read_bytes()).hexdigest() != sidecar.read_sidecar(path)["engine_sha256"]
    ensure_engine(mnet_pth, tmp_path, trt=trt)
    assert len(recorder) == 2


def test_the_default_cache_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RETINAFACE_TRT_CACHE", str(tmp_path))
    assert cache.default_engine_cache() == tmp_path


def test_cache_key_includes_the_int8_calibration_and_is_unchanged_without_it():
    plain = engine_cache_key("ab", "10.16.1.11", "H100", "int8", (640, 640), 8)
    keys = {engine_cache_key("ab", "10.16.1.11", "H100", "int8", (640, 640), 8, int8=q)
            for q in ({"calibration": "0" * 16, "keep": []}, {"calibration": "1" * 16, "keep": []},
                      {"calibration": "0" * 16, "keep": ["fpn.*"]})}
    assert len(keys) == 3 and plain not in keys
    assert plain == engine_cache_key("ab", "10.16.1.11", "H100", "int8", (640, 640), 8, int8=None)


def test_an_int8_engine_is_rebuilt_for_other_calibration_images(tmp_path, recorder, mnet_pth, crop_folder):
    from runtime.calibration import Int8Settings

    trt = fake_trt("10.16.1.11")
    few, more = (Int8Settings(crop_folder, count=n, resize="original") for n in (16, 20))
    first = ensure_engine(mnet_pth, tmp_path, "int8", trt=trt, int8=few)
    assert ensure_engine(mnet_pth, tmp_path, "int8", trt=trt, int8=few) == first and len(recorder) == 1
    assert ensure_engine(mnet_pth, tmp_path, "int8", trt=trt, int8=more) != first and len(recorder) == 2
    assert recorder[0]["options"].int8 is few
