"""TensorRT's entropy calibrator fed by the project (runtime.backends.tensorrt.calibrator), called as TensorRT calls
it, on fakes of the bindings (the real interface is checked in tests/conformance)."""

from __future__ import annotations

import json

import pytest
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.backends.tensorrt.calibrator import ImplicitCalibration, entropy_calibrator
from runtime.calibration import Int8Settings
from tests.runtime.backends.tensorrt.fakes import TRT10, TRT11, fake_trt


def drain(calibrator) -> list[list[int]]:
    """What TensorRT does during calibration: ask for batches until an empty list."""
    answers = []
    while True:
        answers.append(calibrator.get_batch(["input"]))
        if not answers[-1]:
            return answers


def test_batches_are_handed_out_as_device_pointers_kept_alive_until_the_next():
    batches = [torch.full((1, 3, 4, 4), float(i)) for i in range(3)]
    calibrator = entropy_calibrator(TRT10, iter(batches))
    first = calibrator.get_batch(["input"])
    assert first == [calibrator._current.data_ptr()] and torch.equal(calibrator._current, batches[0])
    assert [len(a) for a in drain(calibrator)] == [1, 1, 0] and calibrator.batches_seen == 3
    assert calibrator.get_batch_size() == 1 and calibrator.error is None


def test_an_error_in_a_batch_ends_calibration_and_is_kept():
    def batches():
        yield torch.zeros(1, 3, 4, 4)
        raise RetinaFaceError("cannot read calibration image x.jpg")

    calibrator = entropy_calibrator(TRT10, batches())
    assert [len(a) for a in drain(calibrator)] == [1, 0] and "x.jpg" in str(calibrator.error)


def test_other_input_names_are_an_error_not_a_wrong_pointer():
    calibrator = entropy_calibrator(TRT10, iter([torch.zeros(1)]))
    assert calibrator.get_batch(["images"]) == [] and "inputs ['images']" in str(calibrator.error)


def test_the_cache_offered_and_the_cache_written():
    calibrator = entropy_calibrator(TRT10, iter(()), cache=b"offered")
    calibrator.write_calibration_cache(memoryview(b"written"))
    assert calibrator.read_calibration_cache() == b"offered" and calibrator.written == b"written"


def test_tensorrt_11_has_no_calibrator():
    with pytest.raises(RetinaFaceError, match="removed in 11.0.*--int8-route explicit"):
        entropy_calibrator(TRT11, iter(()))


@pytest.fixture()
def implicit(crop_folder, tmp_path):
    return Int8Settings(crop_folder, count=16, cache=tmp_path / "trt.json", route="implicit", input_size=(128, 96))


def calibrate(trt, mnet_pth, config, lines):
    calibration = ImplicitCalibration(trt, mnet_pth, config, "cpu", report=lines.append)
    if calibration.calibrator.read_calibration_cache() is None:      # TensorRT calibrates only without a cache
        drain(calibration.calibrator)
        calibration.calibrator.write_calibration_cache(b"TRT-100161-EntropyCalibration2\n")
    calibration.finish()
    return calibration


def test_tensorrt_calibrates_once_then_reads_the_cache(implicit, mnet_pth):
    lines = []
    first = calibrate(TRT10, mnet_pth, implicit, lines)
    assert first.calibrator.batches_seen == 16 and first.calibrator.offered is None
    document = json.loads(implicit.cache.read_text())
    assert document["key"]["tensorrt_version"] == "10.16.1.11" and document["kind"] == "tensorrt int8 calibration cache"
    second = calibrate(TRT10, mnet_pth, implicit, lines)
    assert second.calibrator.offered == b"TRT-100161-EntropyCalibration2\n" and second.calibrator.batches_seen == 0
    assert lines[-1] == f"TensorRT's calibration from {implicit.cache} (no calibration run)"


def test_a_cache_of_another_tensorrt_version_is_refused(implicit, mnet_pth):
    calibrate(fake_trt("10.3.0"), mnet_pth, implicit, [])
    with pytest.raises(RetinaFaceError, match='TensorRT version \\("10.3.0" cached, "10.16.1.11" now\\)'):
        ImplicitCalibration(TRT10, mnet_pth, implicit, "cpu", report=lambda line: None)


def test_a_failed_calibration_writes_no_cache(implicit, mnet_pth, monkeypatch):
    from runtime import calibration as cal

    def broken(files, settings, device):
        raise RetinaFaceError("calibration image crop00.jpg: not a readable image")
        yield

    monkeypatch.setattr(cal, "network_inputs", broken)
    calibration = ImplicitCalibration(TRT10, mnet_pth, implicit, "cpu", report=lambda line: None)
    drain(calibration.calibrator)
    with pytest.raises(RetinaFaceError, match="crop00.jpg"):
        calibration.finish()
    assert not implicit.cache.exists()
