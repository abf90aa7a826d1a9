"""Aligned face crops for recognisers: the five landmarks mapped onto ArcFace's five-point template.

Conventions:

* **Template.** :data:`ARCFACE_TEMPLATE` is the reference position of (left eye, right eye, nose, mouth left,
  mouth right) in a 112×112 crop, the points ArcFace-style recognisers (InsightFace) are trained on, in the
  order of :data:`runtime.face.LANDMARK_NAMES`. A crop of size S×S uses the template scaled by S / 112.
* **Transform.** :func:`similarity_transform` is the least-squares similarity (rotation, uniform scale,
  translation; no reflection) taking the landmarks onto the template, by Umeyama's method; it is returned as
  OpenCV's 2×3 forward matrix ``M`` (``dst = M @ [x, y, 1]``), the matrix ``cv2.warpAffine`` takes.
* **Sampling.** Bilinear, pixel centres at integer coordinates (OpenCV's convention), zeros outside the
  image. On the CPU a crop is ``cv2.warpAffine``; for a uint8 [H, W, 3] tensor on a device (frames or images
  already there) all the faces of an image are sampled in one ``grid_sample`` call. The two agree within
  the rounding of OpenCV's fixed-point interpolation (coordinates in 1/32 pixel: tests/runtime/test_align.py).
"""

from __future__ import annotations

import numpy as np

from retinaface_trt.errors import RetinaFaceError

TEMPLATE_SIZE = 112
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
DEFAULT_CROP_SIZE = 112
MAX_CROP_SIZE = 1024


def check_crop_size(value) -> int:
    """``value`` as a crop side in pixels (1..MAX_CROP_SIZE); RetinaFaceError otherwise."""
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise RetinaFaceError(f"the crop size must be a whole number of pixels, found {value!r}") from None
    if not 1 <= size <= MAX_CROP_SIZE:
        raise RetinaFaceError(f"the crop size must be in 1..{MAX_CROP_SIZE} pixels, found {size}")
    return size


def template(size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
    """The five template points float64 [5, 2] for a ``size``×``size`` crop."""
    return ARCFACE_TEMPLATE * (size / TEMPLATE_SIZE)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The similarity float64 [2, 3] minimising Σ‖dst_i − (s·R·src_i + t)‖² over s > 0, R a rotation, t.

    src, dst: float [N, 2] points (N ≥ 2, src not all equal). Umeyama (1991): the rotation from the SVD of the
    cross-covariance, a reflection turned back into a rotation, the scale from the singular values.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    variance = (src_c ** 2).sum() / len(src)
    if variance <= 0:
        raise RetinaFaceError("the landmarks of a face are all at one point; no alignment exists")
    u, singular, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / variance
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def alignment_matrices(landmarks, size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
    """Landmarks float [K, 5, 2] (or [K, 10], or a list of :class:`runtime.face.Face`) in image pixels → float64
    [K, 2, 3] image→crop matrices."""
    if isinstance(landmarks, (list, tuple)) and landmarks and hasattr(landmarks[0], "landmarks"):
        landmarks = [face.landmarks for face in landmarks]
    points = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    target = template(size)
    return np.stack([similarity_transform(p, target) for p in points]) if len(points) else np.zeros((0, 2, 3))


def aligned_crops(image, landmarks, size: int = DEFAULT_CROP_SIZE):
    """The faces of one BGR image aligned to the template: uint8 [K, size, size, 3].

    image: uint8 [H, W, 3] ndarray (→ ndarray, by cv2.warpAffine) or tensor on any device (→ tensor on that
    device, all K faces in one grid_sample); landmarks: float [K, 5, 2] or [K, 10] in that image's pixels, or the
    image's faces (``Detector.detect``'s list of Face).
    """
    size = check_crop_size(size)
    matrices = alignment_matrices(landmarks, size)
    if isinstance(image, np.ndarray):
        import cv2

        crops = [cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=0) for m in matrices]
        return np.stack(crops) if crops else np.zeros((0, size, size) + image.shape[2:], np.uint8)
    return _warp_tensor(image, matrices, size)


def _warp_tensor(image, matrices: np.ndarray, size: int):
    """uint8 tensor [H, W, C] and [K, 2, 3] forward matrices → uint8 tensor [K, size, size, C], same device."""
    import torch
    import torch.nn.functional as F

    height, width, channels = image.shape
    if len(matrices) == 0:
        return torch.zeros((0, size, size, channels), dtype=torch.uint8, device=image.device)
    inverse = torch.as_tensor(_inverted(matrices), dtype=torch.float32, device=image.device)   # crop → image
    ys, xs = torch.meshgrid(torch.arange(size, device=image.device, dtype=torch.float32),
                            torch.arange(size, device=image.device, dtype=torch.float32), indexing="ij")
    crop_points = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(-1, 3)           # [size², 3]
    source = torch.einsum("kij,pj->kpi", inverse, crop_points)                             # [K, size², 2] pixels
    # grid_sample with align_corners=False puts pixel x's centre at (2x + 1) / W − 1
    scale = torch.tensor([2.0 / width, 2.0 / height], device=image.device)
    grid = (source * scale + scale / 2 - 1).reshape(len(matrices), size, size, 2)
    planes = image.permute(2, 0, 1).unsqueeze(0).float().expand(len(matrices), -1, -1, -1)
    sampled = F.grid_sample(planes, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return sampled.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _inverted(matrices: np.ndarray) -> np.ndarray:
    """[K, 2, 3] affine maps → their inverses, [K, 2, 3]."""
    full = np.concatenate([matrices, np.tile([[[0.0, 0.0, 1.0]]], (len(matrices), 1, 1))], axis=1)
    return np.linalg.inv(full)[:, :2]


def encoded_crops(image, landmarks, size: int = DEFAULT_CROP_SIZE) -> list[bytes]:
    """:func:`aligned_crops` of one image, each encoded as PNG (lossless), in the order of ``landmarks``."""
    import cv2

    crops = aligned_crops(image, landmarks, size)
    if not isinstance(crops, np.ndarray):
        crops = crops.cpu().numpy()
    return [cv2.imencode(".png", crop)[1].tobytes() for crop in crops]
