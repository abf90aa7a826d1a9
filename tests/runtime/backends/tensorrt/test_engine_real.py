"""Real TensorRT on an NVIDIA GPU: build MobileNet-0.25 engines and compare them with PyTorch's outputs.

Skipped (with the reason) without ``import tensorrt`` or a CUDA device; nothing here has run on real
TensorRT yet (see docs/tensorrt.md). Run on a GPU machine with TensorRT installed:

    python -m pytest -q -m tensorrt tests/runtime/backends/tensorrt/test_engine_real.py
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError

pytestmark = pytest.mark.tensorrt
torch = pytest.importorskip("torch")
trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'retinaface-trt[tensorrt]')")
if not torch.cuda.is_available():
    pytest.skip("TensorRT needs a CUDA device; PyTorch sees none", allow_module_level=True)

from runtime.backends.tensorrt.build import BuildOptions, build_engine_file  # noqa: E402
from runtime.backends.tensorrt.engine import TensorRTRunner, ensure_engine  # noqa: E402


@pytest.fixture(scope="session")
def engines(mnet_pth, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("engines")
    cache = folder / "timing.cache"
    return {p: build_engine_file(mnet_pth, folder / f"mnet-{p}.engine", BuildOptions(precision=p, timing_cache=cache))
            for p in ("fp32", "fp16")}


@pytest.fixture(scope="session")
def crowd_input(crowd_reference):
    return torch.from_numpy(crowd_reference["input_640x640_bgr_minus_mean"]).cuda()


def _run(engine, batch):
    with TensorRTRunner(engine) as runner:
        return [t.cpu().numpy().copy() for t in runner.infer(batch)]


def _faces(loc, conf, priors, threshold=0.5):
    """Decoded (x1, y1, x2, y2) boxes in [0, 1] and scores after NMS 0.4, for one image."""
    centers = priors[:, :2] + loc[:, :2] * 0.1 * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(loc[:, 2:] * 0.2)
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1)
    keep = conf[:, 1] >= threshold
    boxes, scores = boxes[keep], conf[keep, 1]
    order, chosen = np.argsort(-scores), []
    while order.size:
        chosen.append(order[0])
        order = order[1:][_iou(boxes[order[0]], boxes[order[1:]]) <= 0.4]
    return boxes[chosen], scores[chosen]


def _iou(box, boxes):
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def test_fp32_outputs_match_pytorch(engines, crowd_input, crowd_reference):
    for name, ours in zip(("loc_640", "conf_640", "landms_640"), _run(engines["fp32"], crowd_input)):
        np.testing.assert_allclose(ours, crowd_reference[name], atol=1e-3, rtol=0, err_msg=name)


def test_fp16_faces_match_fp32_faces(engines, crowd_input, crowd_reference):
    priors = crowd_reference["priors_640"]
    f32 = _faces(*[o[0] for o in _run(engines["fp32"], crowd_input)[:2]], priors)[0]
    # fp16 scores may cross 0.5 for borderline faces: candidates from 0.45, every fp32 face must be matched.
    f16 = _faces(*[o[0] for o in _run(engines["fp16"], crowd_input)[:2]], priors, threshold=0.45)[0]
    assert len(f32) > 20 and all(_iou(box, f16).max() >= 0.9 for box in f32)


def test_dynamic_batch_gives_the_same_per_image_results(engines, crowd_input):
    images = torch.cat([crowd_input, crowd_input.flip(3), crowd_input.flip(2), crowd_input * 0.5])
    with TensorRTRunner(engines["fp32"]) as runner:
        singles = [runner.infer(img[None])[1].cpu().numpy().copy() for img in images]
        for n in range(1, 9):
            batch = images[torch.arange(n) % 4]
            conf = runner.infer(batch)[1].cpu().numpy()
            for i in range(n):
                np.testing.assert_allclose(conf[i], singles[i % 4][0], atol=1e-4, err_msg=f"batch {n}, image {i}")


def test_engine_from_another_tensorrt_version_is_refused_with_rebuild_hint(engines, tmp_path):
    engine = tmp_path / "old.engine"
    engine.write_bytes(engines["fp32"].read_bytes())
    info = json.loads(engines["fp32"].with_name(engines["fp32"].name + ".json").read_text())
    (tmp_path / "old.engine.json").write_text(json.dumps({**info, "tensorrt_version": "8.6.1"}))
    with pytest.raises(RetinaFaceError, match="rebuild it on this machine"):
        TensorRTRunner(engine)


def test_truncated_engine_is_a_clear_error(engines, tmp_path):
    engine = tmp_path / "cut.engine"
    engine.write_bytes(engines["fp32"].read_bytes()[:4096])
    (tmp_path / "cut.engine.json").write_text(engines["fp32"].with_name(engines["fp32"].name + ".json").read_text())
    with pytest.raises(RetinaFaceError, match="truncated"):
        TensorRTRunner(engine)


def test_engine_cache_is_reused(mnet_pth, tmp_path):
    first = ensure_engine(mnet_pth, tmp_path, max_batch=2)
    stamp = first.stat().st_mtime_ns
    assert ensure_engine(mnet_pth, tmp_path, max_batch=2) == first and first.stat().st_mtime_ns == stamp
