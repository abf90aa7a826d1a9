"""Pre-processing on the device: BGR uint8 [N, H, W, 3] → resized float [N, 3, h, w] minus the mean.

The resize reproduces OpenCV's ``cv2.resize(..., INTER_LINEAR)`` for 8-bit images in integer arithmetic:
half-pixel source coordinates ``(d + 0.5)·in/out − 0.5`` clamped at the borders, weights rounded to
1/2048 (11 bits), a horizontal pass into integers, then OpenCV's vectorised vertical rounding
``((b0·(r0 >> 4)) >> 16) + ((b1·(r1 >> 4)) >> 16) + 2) >> 2``. OpenCV switches exact 2× reductions to
INTER_AREA (a 2×2 mean); that case is handled too. Measured deviation from cv2 (OpenCV 4.x) on the
shared test photos: see docs/benchmarks.md; tests bound it at 1 grey level.
"""

from __future__ import annotations

import functools


import numpy as np
import torch

from runtime.preprocess import MEAN_BGR

_COEF_BITS = 11
_COEF_SCALE = 1 << _COEF_BITS


@functools.lru_cache(maxsize=64)
def _axis_table(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Source index [n_out] and the pair of 11-bit weights [n_out, 2] along one axis, as OpenCV builds them."""
    scale = n_in / n_out
    f = ((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    index = np.floor(f).astype(np.int64)
    frac = f - index
    low = index < 0
    frac[low], index[low] = 0.0, 0
    high = index >= n_in - 1
    frac[high], index[high] = 0.0, n_in - 1
    weights = np.stack([1.0 - frac, frac], axis=1) * _COEF_SCALE
    return index, np.rint(weights).astype(np.int64)


@functools.lru_cache(maxsize=64)
def _device_tables(n_in: int, n_out: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    index, weights = _axis_table(n_in, n_out)
    upper = np.minimum(index + 1, n_in - 1)
    as_t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return as_t(index), as_t(upper), as_t(weights.astype(np.int32))


def _tables(n_in: int, n_out: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Cached per device: no host-to-device copy after the first call (none is allowed in a CUDA graph capture).
    return _device_tables(n_in, n_out, str(device))


@functools.lru_cache(maxsize=16)
def _mean(dtype: torch.dtype, device: str) -> torch.Tensor:
    return torch.tensor(MEAN_BGR, dtype=dtype, device=device)


def resize_linear_u8(images: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """uint8 [N, H, W, C] → uint8 [N, height, width, C], OpenCV INTER_LINEAR semantics (see module doc)."""
    n_h, n_w = images.shape[1:3]
    if (n_w, n_h) == (width, height):
        return images
    if n_w == 2 * width and n_h == 2 * height:
        return _half_area(images)
    x0, x1, wx = _tables(n_w, width, images.device)
    y0, y1, wy = _tables(n_h, height, images.device)
    src = images.to(torch.int32)
    rows = (src[:, :, x0] * wx[None, None, :, 0, None] + src[:, :, x1] * wx[None, None, :, 1, None])
    top, bottom = rows[:, y0] >> 4, rows[:, y1] >> 4
    b0, b1 = wy[None, :, 0, None, None], wy[None, :, 1, None, None]
    out = (((b0 * top) >> 16) + ((b1 * bottom) >> 16) + 2) >> 2
    return out.clamp_(0, 255).to(torch.uint8)


def _half_area(images: torch.Tensor) -> torch.Tensor:
    """OpenCV's INTER_AREA for an exact 2× reduction: the rounded mean of each 2×2 block."""
    n, h, w, c = images.shape
    blocks = images.to(torch.int32).reshape(n, h // 2, 2, w // 2, 2, c).sum(dim=(2, 4))
    return ((blocks + 2) >> 2).to(torch.uint8)


def network_input(images: torch.Tensor, dtype: torch.dtype = torch.float32,
                  channels_last: bool = False) -> torch.Tensor:
    """uint8 [N, H, W, 3] BGR → ``dtype`` [N, 3, H, W] minus (104, 117, 123); NHWC memory if ``channels_last``."""
    nhwc = images.to(dtype) - _mean(dtype, str(images.device))
    chw = nhwc.permute(0, 3, 1, 2)
    return chw if channels_last else chw.contiguous()


def preprocess_batch(images: torch.Tensor, width: int, height: int, dtype: torch.dtype = torch.float32,
                     channels_last: bool = False) -> torch.Tensor:
    """Stretch BGR uint8 [N, H, W, 3] (on any device) to (width, height) and make the network input."""
    return network_input(resize_linear_u8(images, width, height), dtype, channels_last)


def stretch_scale(image_size: tuple[int, int], input_size: tuple[int, int]) -> tuple[float, float]:
    """(sx, sy) mapping network pixels back to original pixels for a stretch resize ((W, H) sizes)."""
    return image_size[0] / input_size[0], image_size[1] / input_size[1]



