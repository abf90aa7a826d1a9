"""runtime.align: the similarity against OpenCV's estimator, the GPU-style sampling against cv2.warpAffine."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.align import (ARCFACE_TEMPLATE, aligned_crops, alignment_matrices, similarity_transform, template)


def _faces(seed: int, count: int = 20) -> np.ndarray:
    """Landmarks [count, 5, 2] like a detector's: the template moved by a random similarity (scale 0.3..4,
    any angle, shifts up to 1000 px) plus up to 3 px of noise per point, so no exact fit exists."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        angle, scale = rng.uniform(-np.pi, np.pi), rng.uniform(0.3, 4)
        rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        out.append(ARCFACE_TEMPLATE @ rotation.T + rng.uniform(0, 1000, 2) + rng.uniform(-3, 3, (5, 2)))
    return np.stack(out)


@pytest.mark.parametrize("size", [112, 224])
def test_similarity_equals_opencv_estimate(size):
    # estimateAffinePartial2D with every point an inlier (huge threshold) refines the 4-parameter similarity by
    # Levenberg-Marquardt: the same least-squares problem, solved independently. Its points are float32, and its
    # solver stops at a relative step of about FLT_EPSILON, so far from the origin its translation is only good to
    # ~1e-3 px; the problem is translation-equivariant (points moved by -c: M = [A | t' - A c]), so OpenCV is given
    # each face's points centred on their float32 mean and its matrix is moved back exactly.
    target = template(size).astype(np.float32)
    for points in _faces(seed=size).astype(np.float32):
        centre = points.mean(0, dtype=np.float32)
        ours = similarity_transform(points, target)
        theirs, inliers = cv2.estimateAffinePartial2D(points - centre, target, method=cv2.RANSAC,
                                                      ransacReprojThreshold=1e6, maxIters=10, refineIters=100)
        theirs[:, 2] -= theirs[:, :2] @ centre.astype(np.float64)
        assert inliers.all()
        assert np.abs(ours - theirs).max() <= 1e-4


def test_similarity_equals_linear_least_squares():
    # the 4-parameter similarity [a -b tx; b a ty] is linear in (a, b, tx, ty): numpy's lstsq solves it directly;
    # agreement to float64 rounding over coordinates up to ~1000 px (a few 1e-13 relative, amplified by the
    # conditioning of the 10x4 system: 1e-8 absolute)
    for points in _faces(seed=5):
        rows = [[x, -y, 1, 0] for x, y in points] + [[y, x, 0, 1] for x, y in points]
        values = np.concatenate([template(112)[:, 0], template(112)[:, 1]])
        a, b, tx, ty = np.linalg.lstsq(np.array(rows), values, rcond=None)[0]
        expected = np.array([[a, -b, tx], [b, a, ty]])
        assert np.abs(similarity_transform(points, template(112)) - expected).max() <= 1e-8


def test_exact_similarity_is_recovered():
    matrix = np.array([[0.8, -0.6, 30.0], [0.6, 0.8, -12.0]]) * np.array([[2.5], [2.5]])
    matrix[:, 2] /= 2.5
    src = _faces(seed=1, count=1)[0]
    dst = src @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(similarity_transform(src, dst) - matrix).max() <= 1e-9 * 1000


def test_reflection_is_not_a_solution():
    mirrored = ARCFACE_TEMPLATE * [-1, 1]       # left and right swapped: the best rotation, never a mirror
    matrix = similarity_transform(mirrored, ARCFACE_TEMPLATE)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_coincident_landmarks_are_refused():
    with pytest.raises(RetinaFaceError, match="one point"):
        similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE)


def test_tensor_crops_equal_warp_affine(crowd_image):
    # cv2.warpAffine rounds each source coordinate to 1/32 px (INTER_BITS = 5), i.e. moves it by at most 1/64 px in
    # x and in y, so its bilinear value may differ from the exact one by at most (range of the 2x2 source cell) x
    # (1/64 + 1/64); its 15-bit weights add < 0.01, and each side rounds once to uint8 (0.5 each).
    landmarks = _faces(seed=7, count=12) * 0.3 + [100, 60]      # faces inside the 1024x624 photo, some at edges
    size = 112
    expected = aligned_crops(crowd_image, landmarks, size)
    found = aligned_crops(torch.from_numpy(crowd_image), landmarks, size).numpy()
    assert found.shape == expected.shape == (12, size, size, 3)
    bound = _cell_range(crowd_image, landmarks, size) / 32 + 1.01
    assert (np.abs(found.astype(float) - expected) <= bound).all()
    assert (found != expected).mean() < 0.5         # mostly the same value exactly, not just within the bound


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_crops_equal_warp_affine(crowd_image):
    # the same bound as on the CPU: grid_sample on the GPU computes the exact bilinear value in float32
    landmarks = _faces(seed=11, count=32) * 0.3 + [100, 60]
    expected = aligned_crops(crowd_image, landmarks, 112)
    found = aligned_crops(torch.from_numpy(crowd_image).cuda(), landmarks, 112)
    assert found.device.type == "cuda"
    bound = _cell_range(crowd_image, landmarks, 112) / 32 + 1.01
    assert (np.abs(found.cpu().numpy().astype(float) - expected) <= bound).all()


def _cell_range(image: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """max − min of the 2x2 source pixels (zeros outside) each crop pixel interpolates: [K, size, size, 1]."""
    padded = np.pad(image.astype(float), ((1, 2), (1, 2), (0, 0)))
    ys, xs = np.mgrid[0:size, 0:size]
    out = []
    for matrix in alignment_matrices(landmarks, size):
        inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
        u = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
        v = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
        x0 = np.clip(np.floor(u).astype(int) + 1, 0, padded.shape[1] - 2)
        y0 = np.clip(np.floor(v).astype(int) + 1, 0, padded.shape[0] - 2)
        cell = np.stack([padded[y0, x0], padded[y0, x0 + 1], padded[y0 + 1, x0], padded[y0 + 1, x0 + 1]])
        out.append((cell.max(0) - cell.min(0)).max(-1, keepdims=True))
    return np.stack(out)


def test_crop_puts_the_landmarks_on_the_template(crowd_image):
    # the similarity maps the landmarks near the template (within the fit's residual), so a marker drawn at a
    # landmark appears at its template point in the crop
    marked = np.zeros_like(crowd_image)
    landmarks = _faces(seed=3, count=1) * 0.3 + [200, 100]
    x, y = np.round(landmarks[0, 2]).astype(int)
    marked[y - 2:y + 3, x - 2:x + 3] = 255
    crop = aligned_crops(marked, landmarks, 112)[0, :, :, 0]
    centre = np.argwhere(crop > 64).mean(0)[::-1]
    residual = np.abs(landmarks[0] @ alignment_matrices(landmarks)[0][:, :2].T
                      + alignment_matrices(landmarks)[0][:, 2] - template(112)).max()
    assert np.abs(centre - template(112)[2]).max() <= residual + 1.0


def test_no_faces_give_an_empty_batch(crowd_image):
    assert aligned_crops(crowd_image, np.zeros((0, 10)), 64).shape == (0, 64, 64, 3)
    assert tuple(aligned_crops(torch.from_numpy(crowd_image), np.zeros((0, 10)), 64).shape) == (0, 64, 64, 3)


@pytest.mark.parametrize("size", [0, 5000, "x"])
def test_bad_crop_size_is_one_line(crowd_image, size):
    with pytest.raises(RetinaFaceError, match="crop size"):
        aligned_crops(crowd_image, _faces(seed=0, count=1), size)
