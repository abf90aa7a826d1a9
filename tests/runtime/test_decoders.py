"""Choosing the image decoder, and nvJPEG against OpenCV on the shared photos (GPU only)."""

from __future__ import annotations

import pytest
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.image_io import resolve_decoder


def test_auto_is_opencv_on_the_cpu():
    assert resolve_decoder("auto", torch.device("cpu"), "fp16") == "cv2"


@pytest.fixture
def torchvision_present(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "torchvision" else real(name, *a))


@pytest.mark.parametrize("precision, expected", [("fp32", "cv2"), ("fp16", "nvjpeg"), ("int8", "nvjpeg")])
def test_auto_for_one_image_on_a_gpu_keeps_opencv_for_fp32_only(torchvision_present, precision, expected):
    """fp32 is the precision equal to the original within 1e-4, which decodes with OpenCV: auto keeps its pixels."""
    assert resolve_decoder("auto", torch.device("cuda", 0), precision) == expected


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_auto_for_a_folder_is_opencv_on_a_gpu_too(torchvision_present, precision):
    """Threads of cv2.imdecode outran batched nvJPEG fivefold on the GPU machine; nvjpeg stays a choice."""
    assert resolve_decoder("auto", torch.device("cuda", 0), precision, folder=True) == "cv2"
    assert resolve_decoder("nvjpeg", torch.device("cuda", 0), precision, folder=True) == "nvjpeg"


def test_nvjpeg_on_the_cpu_is_refused_with_the_fix():
    with pytest.raises(RetinaFaceError, match="decoder 'cv2'"):
        resolve_decoder("nvjpeg", torch.device("cpu"), "fp16")


def test_unknown_decoder_is_refused():
    with pytest.raises(RetinaFaceError, match="cv2, nvjpeg"):
        resolve_decoder("pillow", torch.device("cpu"), "fp16")


def _matched(reference, other, iou=0.9):
    from runtime.postprocess import box_iou

    if len(reference) == 0:
        return 0
    if len(other) == 0:
        return 0
    best = box_iou(reference[:, :4], other[:, :4]).max(axis=1)
    return int((best >= iou).sum())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["crowd_1024x624.jpg", "selfie_1600x898.jpg", "children_1024x768.jpg"])
def test_nvjpeg_and_opencv_give_the_same_faces(mnet_pth, shared_dir, name):
    pytest.importorskip("torchvision")
    from runtime.detector import Detector
    from runtime.image_io import decode_for

    data = (shared_dir / "images" / name).read_bytes()
    with Detector.from_options(weights=str(mnet_pth), backend="torch", device="cuda") as detector:
        gpu = decode_for(data, "nvjpeg", detector.device)
        cpu = decode_for(data, "cv2", detector.device)
        assert isinstance(gpu, torch.Tensor) and tuple(gpu.shape) == cpu.shape
        assert float((gpu.cpu().numpy().astype(int) - cpu).__abs__().mean()) < 3   # BGR, not RGB
        from_gpu, from_cpu = (d[d[:, 4] >= 0.5] for d in detector.detect_arrays([gpu, cpu]))
    assert len(from_cpu) > 0
    assert _matched(from_cpu, from_gpu) >= 0.97 * len(from_cpu)
    assert _matched(from_gpu, from_cpu) >= 0.97 * len(from_gpu)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_batch_decoded_by_nvjpeg_equals_its_images_decoded_alone(shared_dir):
    """Decoded together, each JPEG gets the pixels it gets alone (torchvision's batched call did not); a broken
    JPEG fails alone, with its name."""
    pytest.importorskip("torchvision")
    from runtime.image_io import decode_for, decode_jpegs

    names = ["crowd_1024x624.jpg", "selfie_1600x898.jpg", "children_1024x768.jpg"]
    datas = [(shared_dir / "images" / name).read_bytes() for name in names]
    broken = datas[0][:3] + bytes(200)              # a JPEG marker, then nothing either decoder takes
    device = torch.device("cuda", 0)
    decoded = decode_jpegs(datas + [broken], device, names + ["broken.jpg"])
    for data, image in zip(datas, decoded):
        assert isinstance(image, torch.Tensor) and image.device == device
        assert torch.equal(image, decode_for(data, "nvjpeg", device))
    assert isinstance(decoded[3], RetinaFaceError) and "broken.jpg" in str(decoded[3])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_detect_over_a_folder_with_nvjpeg_finds_opencvs_faces(mnet_pth, shared_dir, tmp_path):
    """The job pipeline with JPEGs decoded on the GPU (the reader's batched nvJPEG) against OpenCV's pixels, on
    the shared photos repeated: the same records in the same order, faces matched at IoU 0.9."""
    pytest.importorskip("torchvision")
    import shutil

    import numpy as np

    from runtime.detector import Detector
    from runtime.jobs.pipeline import detect_stream
    from runtime.jobs.reader import TaskList
    from runtime.jobs.tasks import JobSettings, Task

    paths = []
    for i in range(24):
        name = ["crowd_1024x624.jpg", "selfie_1600x898.jpg", "children_1024x768.jpg"][i % 3]
        paths.append(str(tmp_path / f"{i:02d}_{name}"))
        shutil.copyfile(shared_dir / "images" / name, paths[-1])
    records = {}
    with Detector.from_options(weights=str(mnet_pth), backend="torch", device="cuda", precision="fp16",
                               resize="stretch") as detector:
        for decoder in ("cv2", "nvjpeg"):
            settings = JobSettings(batch=8, read_threads=4, decoder=decoder, vis_threshold=0.5)
            outcomes = detect_stream(detector, TaskList(Task(i, p) for i, p in enumerate(paths)), settings)
            records[decoder] = {o.index: o.record for o in outcomes}
    assert sorted(records["nvjpeg"]) == list(range(24))
    for index, cpu in records["cv2"].items():
        gpu = records["nvjpeg"][index]
        assert (gpu["image"], gpu["width"], gpu["height"]) == (cpu["image"], cpu["width"], cpu["height"])
        boxes = [np.array([[f["box"]["x"], f["box"]["y"], f["box"]["x"] + f["box"]["w"], f["box"]["y"] + f["box"]["h"]]
                           for f in r["faces"]], np.float32).reshape(-1, 4) for r in (cpu, gpu)]
        assert len(boxes[0]) > 0
        assert _matched(boxes[0], boxes[1]) >= 0.95 * len(boxes[0])
        assert _matched(boxes[1], boxes[0]) >= 0.95 * len(boxes[1])
