"""Post-processing: exact detect.py semantics on hand-made NMS cases and real outputs, for every strategy.

The reference is a slow, one-pair-at-a-time greedy NMS written independently below (float32 comparisons,
as NumPy and torch compare a float32 array with a Python float). Strategies: the host (NumPy) one, the
device (fixed-shape) one with its Triton kernels run by Triton's CPU interpreter, and the CUDA one where a
GPU exists.
"""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest
import torch

from runtime import postprocess
from retinaface_trt.thresholds import Thresholds
from runtime.postprocess import box_iou, detect_faces, detect_faces_batch, greedy_nms

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                  reason="Triton is not installed (.ci/run installs it for its CPU interpreter)")


def slow_greedy(boxes: np.ndarray, count: int, threshold: float) -> list[int]:
    """Sequential greedy NMS over boxes [K, 4] in score order (the first ``count``), one pair at a time."""
    def iou(a, b):
        f = np.float32
        w = max(f(0), min(a[2], b[2]) - max(a[0], b[0]) + f(1))
        h = max(f(0), min(a[3], b[3]) - max(a[1], b[1]) + f(1))
        area = lambda r: (r[2] - r[0] + f(1)) * (r[3] - r[1] + f(1))   # noqa: E731
        with np.errstate(invalid="ignore"):
            return f(w * h) / f(area(a) + area(b) - f(w * h))

    kept: list[int] = []
    for j in range(count):
        if all(iou(boxes[i], boxes[j]) <= np.float32(threshold) for i in kept):
            kept.append(j)
    return kept


def grid_boxes(n: int, k: int, seed: int) -> np.ndarray:
    """Integer boxes on a small grid: many equal IoUs, ties and exact threshold hits. float32 [n, k, 4]."""
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, 40, (n, k, 2)).astype(np.float32)
    return np.concatenate([xy, xy + rng.integers(1, 12, (n, k, 2)).astype(np.float32)], axis=2)


def at_threshold() -> np.ndarray:
    """"+1" areas: A is 10×10 = 100 px, B is 10×4 = 40 px inside A: IoU 40/100, exactly 0.4 in float32."""
    return np.array([[0, 0, 9, 9], [0, 0, 9, 3]], dtype=np.float32)


CASES = {
    "at the threshold": (at_threshold(), 0.4, [0, 1]),
    "just below the threshold": (at_threshold(), 0.39, [0]),
    "a suppression chain": (np.stack([np.arange(12) * 5, np.zeros(12), np.arange(12) * 5 + 9,
                                      np.full(12, 9)], axis=1).astype(np.float32), 0.3, None),
    "identical boxes (ties)": (np.tile(np.float32([[3, 3, 20, 20]]), (5, 1)), 0.4, [0]),
    "degenerate boxes (0/0 is NaN: removed)": (np.float32([[5, 5, 4, 4], [9, 9, 8, 8], [0, 0, 3, 3]]), 0.4, [0, 2]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_host_nms_hand_made_cases(case):
    boxes, threshold, expected = CASES[case]
    reference = slow_greedy(boxes, len(boxes), threshold)
    assert greedy_nms(boxes, threshold).tolist() == reference == (expected if expected is not None else reference)


@pytest.mark.parametrize("seed", range(3))
def test_host_nms_equals_slow_reference_on_grids(seed):
    boxes = grid_boxes(1, 150, seed)[0]
    assert greedy_nms(boxes, 0.4).tolist() == slow_greedy(boxes, 150, 0.4)


def test_nms_of_nothing_is_empty():
    kept = greedy_nms(np.zeros((0, 4), np.float32), 0.4)
    assert kept.shape == (0,) and kept.dtype == np.int64


def interpreted(tmp_path, **cases) -> dict:
    """Run :mod:`tests.runtime.triton_interpreted` on ``cases`` ({"name.boxes": array, ...}); its outputs."""
    import subprocess
    import sys

    source, target = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(source, **cases)
    done = subprocess.run([sys.executable, "-m", "tests.runtime.triton_interpreted", str(source), str(target)],
                          capture_output=True, text=True, timeout=600, cwd=pathlib.Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(target))


@needs_triton
def test_triton_nms_hand_made_cases(tmp_path):
    cases = {}
    for i, (boxes, threshold, _) in enumerate(CASES[name] for name in sorted(CASES)):
        cases.update({f"case{i}.boxes": boxes[None], f"case{i}.counts": np.array([len(boxes)]),
                      f"case{i}.threshold": np.float32(threshold)})
    found = interpreted(tmp_path, **cases)
    for i, (boxes, threshold, _) in enumerate(CASES[name] for name in sorted(CASES)):
        assert np.flatnonzero(found[f"case{i}.keep"][0]).tolist() == slow_greedy(boxes, len(boxes), threshold)


@needs_triton
def test_triton_nms_equals_slow_reference_past_one_mask_word(tmp_path):
    # 150 boxes: three 64-bit words per row; counts that end inside a word, at zero, and at the full size.
    boxes, counts = grid_boxes(3, 150, seed=4), np.array([150, 77, 0])
    keep = interpreted(tmp_path, **{"grid.boxes": boxes, "grid.counts": counts, "grid.threshold": np.float32(0.4)})
    for n, count in enumerate(counts):
        assert np.flatnonzero(keep["grid.keep"][n]).tolist() == slow_greedy(boxes[n], count, 0.4)


def _raw(crowd_reference, batch=1):
    return [torch.from_numpy(crowd_reference[k]).expand(batch, -1, -1) for k in ("loc_640", "conf_640", "landms_640")]


def test_detections_equal_stored_detections(crowd_reference):
    priors = torch.from_numpy(crowd_reference["priors_640"])
    dets = detect_faces(*(t[0] for t in _raw(crowd_reference)), priors, 640, 640).numpy()
    np.testing.assert_allclose(dets, crowd_reference["dets_640_in640coords"], rtol=0, atol=1e-5)


def test_detections_are_sorted_and_above_the_confidence(crowd_reference):
    priors = torch.from_numpy(crowd_reference["priors_640"])
    scores = detect_faces(*(t[0] for t in _raw(crowd_reference)), priors, 640, 640).numpy()[:, 4]
    assert np.all(np.diff(scores) <= 0) and scores.min() > 0.02


def test_keep_top_k_caps_the_count(crowd_reference):
    priors = torch.from_numpy(crowd_reference["priors_640"])
    dets, counts = detect_faces_batch(*_raw(crowd_reference), priors, 640, 640, Thresholds(keep_top_k=7))
    assert dets.shape == (1, 7, 15) and int(counts[0]) == 7
    np.testing.assert_array_equal(dets[0].numpy(), crowd_reference["dets_640_in640coords"][:7])


def test_more_candidates_than_top_k(crowd_reference):
    priors = torch.from_numpy(crowd_reference["priors_640"])
    dets = detect_faces(*(t[0] for t in _raw(crowd_reference)), priors, 640, 640, Thresholds(top_k=1))
    assert dets.shape == (1, 15) and float(dets[0, 4]) == crowd_reference["conf_640"][0, :, 1].max()


def test_zero_candidates_give_zero_counts_and_zero_rows(crowd_reference):
    priors = torch.from_numpy(crowd_reference["priors_640"])
    dets, counts = detect_faces_batch(*_raw(crowd_reference), priors, 640, 640, Thresholds(confidence_threshold=1.0))
    assert counts.tolist() == [0] and dets.shape == (1, 750, 15) and not dets.any()


def test_batch_equals_each_image_alone(crowd_reference):
    priors = torch.from_numpy(crowd_reference["priors_640"])
    loc, conf, landms = _raw(crowd_reference)
    g = torch.Generator().manual_seed(5)
    other = torch.softmax(torch.randn(1, conf.shape[1], 2, generator=g) * 3, dim=-1)
    batch = (torch.cat((loc, loc * 0.5)), torch.cat((conf, other)), torch.cat((landms, landms)))
    dets, counts = detect_faces_batch(*batch, priors, 640, 640)
    for n in range(2):
        alone = detect_faces(batch[0][n], batch[1][n], batch[2][n], priors, 640, 640)
        assert int(counts[n]) == len(alone) and torch.equal(dets[n, :counts[n]], alone)


def test_equal_scores_keep_prior_order(crowd_reference):
    # Ties in score: the lower prior index comes first (a stable sort), whatever the strategy.
    priors = torch.from_numpy(crowd_reference["priors_640"])
    loc, conf, landms = (t[0].clone() for t in _raw(crowd_reference))
    conf[:, 1] = torch.where(conf[:, 1] > 0.5, torch.tensor(0.75), conf[:, 1])
    dets = detect_faces(loc, conf, landms, priors, 640, 640, Thresholds(nms_threshold=1.0))
    tied = dets[dets[:, 4] == 0.75]
    assert len(tied) > 1
    expected = postprocess.decode_boxes(loc[conf[:, 1] == 0.75], priors[conf[:, 1] == 0.75]) * 640
    np.testing.assert_array_equal(tied[:, :4].numpy(), expected.numpy())


@needs_triton
def test_device_strategy_equals_host_strategy(crowd_reference, tmp_path):
    # The fixed-shape strategy (as on CUDA) with the Triton kernels interpreted, on CPU tensors.
    priors = torch.from_numpy(crowd_reference["priors_640"])
    raw = [t.contiguous().numpy() for t in _raw(crowd_reference)]
    found = interpreted(tmp_path, **{"strategy.loc": raw[0], "strategy.conf": raw[1], "strategy.landms": raw[2],
                                     "strategy.priors": priors.numpy(), "strategy.top_k": np.int64(400)})
    host, host_counts = detect_faces_batch(*_raw(crowd_reference), priors, 640, 640, Thresholds(top_k=400))
    assert found["strategy.counts"].tolist() == host_counts.tolist()
    assert np.array_equal(found["strategy.dets"], host.numpy())


def test_iou_is_plus_one_and_symmetric():
    a = np.float32([[0, 0, 9, 9]])
    b = np.float32([[5, 0, 14, 9]])
    assert box_iou(a, b)[0, 0] == np.float32(50 / 150) == box_iou(b, a)[0, 0]
    assert box_iou(torch.from_numpy(a), torch.from_numpy(b))[0, 0].item() == pytest.approx(1 / 3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_strategy_equals_host_strategy(crowd_reference):
    priors = torch.from_numpy(crowd_reference["priors_640"])
    host, host_counts = detect_faces_batch(*_raw(crowd_reference, 3), priors, 640, 640)
    cuda, counts = detect_faces_batch(*(t.cuda() for t in _raw(crowd_reference, 3)), priors.cuda(), 640, 640)
    assert counts.cpu().tolist() == host_counts.tolist()
    torch.testing.assert_close(cuda.cpu(), host, rtol=0, atol=1e-4)   # exp on the GPU may differ by an ulp


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_nms_equals_slow_reference():
    boxes = grid_boxes(4, 300, seed=9)
    counts = [300, 200, 64, 1]
    keep = postprocess.nms_sorted(torch.from_numpy(boxes).cuda(), torch.tensor(counts).cuda(), 0.4).cpu().numpy()
    for n, count in enumerate(counts):
        assert np.flatnonzero(keep[n]).tolist() == slow_greedy(boxes[n], count, 0.4)


@pytest.fixture(scope="module")
def compiled_ptx():
    """What the PTX of the kernels compiled for Turing, Ampere and Hopper uses (one subprocess: Triton's
    interpreter, used above, patches triton.language for the rest of the process it runs in)."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "tests.runtime.triton_ptx", "75", "80", "90"], capture_output=True,
                          text=True, timeout=300, cwd=pathlib.Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@needs_triton
@pytest.mark.parametrize("capability", ["75", "80", "90"])
def test_triton_kernels_compile_for_nvidia_gpus_with_ieee_float32(compiled_ptx, capability):
    # No GPU here: compiled ahead of time. The IoU must use IEEE division (div.rn, not div.full) and no fused
    # multiply-add, or it differs from NumPy's.
    found = compiled_ptx[capability]
    assert found["_suppression_bits"] == {"div.rn.f32": True, "div.full": False, "fma.rn.f32": False}
    assert found["_greedy_pass"]["fma.rn.f32"] is False
