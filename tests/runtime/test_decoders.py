"""Choosing the image decoder, and nvJPEG against OpenCV on the shared photos (GPU only)."""

from __future__ import annotations

import pytest
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.image_io import resolve_decoder


def test_auto_is_opencv_on_the_cpu():
    assert resolve_decoder("auto", torch.device("cpu")) == "cv2"


def test_nvjpeg_on_the_cpu_is_refused_with_the_fix():
    with pytest.raises(RetinaFaceError, match="decoder 'cv2'"):
        resolve_decoder("nvjpeg", torch.device("cpu"))


def test_unknown_decoder_is_refused():
    with pytest.raises(RetinaFaceError, match="cv2, nvjpeg"):
        resolve_decoder("pillow", torch.device("cpu"))


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
