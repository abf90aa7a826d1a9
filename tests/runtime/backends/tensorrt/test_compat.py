"""runtime.backends.tensorrt.compat and the build options against small hand-written fakes of the three TensorRT lines.

(The same helpers are checked against the real bindings of each version in tests/conformance.)"""

from __future__ import annotations

import enum
import logging
import types

import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.backends.tensorrt import compat as trt_compat
from runtime.backends.tensorrt.build import BuildOptions
from runtime.backends.tensorrt.engine import engine_cache_key


def fake_trt(version: str, creation_flags: list[str], builder_flags: list[str], progress: bool = False):
    class ILogger:
        class Severity(enum.Enum):
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self):
            pass

    trt = types.SimpleNamespace(
        __version__=version, ILogger=ILogger,
        NetworkDefinitionCreationFlag=enum.IntEnum("F", {n: i for i, n in enumerate(creation_flags)}),
        BuilderFlag=enum.IntEnum("B", {n: i for i, n in enumerate(builder_flags)}))
    if progress:
        trt.IProgressMonitor = type("IProgressMonitor", (), {"__init__": lambda self: None})
    return trt


TRT86 = fake_trt("8.6.1", ["EXPLICIT_BATCH", "EXPLICIT_PRECISION"], ["FP16", "INT8", "TF32"])
TRT10 = fake_trt("10.16.1.11", ["EXPLICIT_BATCH", "STRONGLY_TYPED"], ["FP16", "INT8", "TF32"], progress=True)
TRT11 = fake_trt("11.4.0.106", ["STRONGLY_TYPED", "PREFER_JIT_PYTHON_PLUGINS"], ["TF32"], progress=True)


class RecordingConfig:
    def __init__(self):
        self.calls = []

    def set_flag(self, flag):
        self.calls.append(("set", flag.name))

    def clear_flag(self, flag):
        self.calls.append(("clear", flag.name))


@pytest.mark.parametrize("trt, flags", [(TRT86, 1 << 0), (TRT10, 1 << 1), (TRT11, 0)])
def test_network_flags(trt, flags):
    assert trt_compat.network_flags(trt) == flags


@pytest.mark.parametrize("trt, calls", [(TRT86, [("set", "FP16")]), (TRT10, []), (TRT11, [])])
def test_fp16_route(trt, calls):
    config = RecordingConfig()
    trt_compat.set_precision(trt, config, "fp16")
    assert config.calls == calls


def test_fp32_clears_tf32():
    config = RecordingConfig()
    trt_compat.set_precision(TRT11, config, "fp32")
    assert config.calls == [("clear", "TF32")]


def test_unknown_precision_is_an_error():
    with pytest.raises(RetinaFaceError, match="'fp32' or 'fp16'"):
        trt_compat.set_precision(TRT11, RecordingConfig(), "int8")


def test_major_version():
    assert [trt_compat.major_version(t) for t in (TRT86, TRT10, TRT11)] == [8, 10, 11]


def test_logger_bridge_maps_severity_to_logging_level(caplog):
    bridge = trt_compat.make_logger(TRT11, logging.getLogger("test.trt"))
    with caplog.at_level(logging.DEBUG, "test.trt"):
        bridge.log(TRT11.ILogger.Severity.ERROR, "engine failed")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.ERROR, "engine failed")]


def test_progress_without_monitor_is_one_log_line():
    lines = []
    trt_compat.attach_progress(TRT86, RecordingConfig(), report=lambda *a: lines.append(a[0] % a[1:]))
    assert len(lines) == 1 and "8.6.1" in lines[0]


def test_progress_monitor_reports_phases():
    config, lines = types.SimpleNamespace(), []
    trt_compat.attach_progress(TRT11, config, report=lambda *a: lines.append(a[0] % a[1:]))
    config.progress_monitor.phase_start("Building", None, 10)
    keep_going = [config.progress_monitor.step_complete("Building", s) for s in range(10)]
    assert all(keep_going) and lines[0] == "build phase Building (10 steps)" and len(lines) == 11


def test_fixed_size_profile_has_dynamic_batch_only():
    options = BuildOptions(input_size=(640, 480), opt_batch=2, max_batch=4)
    assert options.input_shape() == (-1, 3, 480, 640)
    assert options.profile() == {"min": (1, 3, 480, 640), "opt": (2, 3, 480, 640), "max": (4, 3, 480, 640)}


def test_dynamic_size_profile():
    options = BuildOptions(input_size=(640, 640), min_size=(320, 240), max_size=(1280, 960))
    assert options.input_shape() == (-1, 3, -1, -1) and options.profile()["min"] == (1, 3, 240, 320)


def test_profile_out_of_order_is_an_error():
    with pytest.raises(RetinaFaceError, match="0 < min <= opt <= max"):
        BuildOptions(opt_batch=9, max_batch=8).validate()


def test_cache_key_depends_on_precision_and_tensorrt_version():
    keys = {engine_cache_key("ab", v, "H100 sm9.0", p, (640, 640), 8)
            for v in ("10.16.1.11", "11.4.0.106") for p in ("fp32", "fp16")}
    assert len(keys) == 4
