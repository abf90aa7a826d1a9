"""Prior (anchor) boxes of RetinaFace, vectorised and cached per input size.

For level k (stride s, min sizes m0, m1) the feature map is (ceil(H/s), ceil(W/s)); priors are ordered
row i, column j, min size m, which is the order of the heads' NHWC reshape. Each prior is
(cx, cy, w, h) = ((j + 0.5)·s/W, (i + 0.5)·s/H, m/W, m/H), normalised to [0, 1] (not clipped: both
published configurations have ``clip=False``).
"""

from __future__ import annotations

import functools
import math

import numpy as np


def prior_boxes(cfg, height: int, width: int) -> np.ndarray:
    """Priors for a network input of ``height`` × ``width`` pixels: float32 [P, 4] of (cx, cy, w, h).

    P = Σ_levels ceil(H/s)·ceil(W/s)·len(min_sizes); 16,800 at 640×640.
    """
    levels = [_level_priors(steps, sizes, height, width) for steps, sizes in zip(cfg.steps, cfg.min_sizes)]
    priors = np.concatenate(levels, axis=0)
    if cfg.clip:
        np.clip(priors, 0.0, 1.0, out=priors)
    return priors


def _level_priors(step: int, min_sizes, height: int, width: int) -> np.ndarray:
    rows, cols, anchors = math.ceil(height / step), math.ceil(width / step), len(min_sizes)
    # Same arithmetic as the original (float64, then float32) so values agree bit for bit.
    cx = (np.arange(cols, dtype=np.float64) + 0.5) * step / width
    cy = (np.arange(rows, dtype=np.float64) + 0.5) * step / height
    out = np.empty((rows, cols, anchors, 4), dtype=np.float64)
    out[..., 0] = cx[None, :, None]
    out[..., 1] = cy[:, None, None]
    out[..., 2] = np.asarray(min_sizes, dtype=np.float64) / width
    out[..., 3] = np.asarray(min_sizes, dtype=np.float64) / height
    return out.reshape(-1, 4).astype(np.float32)


@functools.lru_cache(maxsize=32)
def _cached_priors(cfg, height: int, width: int, device: str):
    import torch

    return torch.from_numpy(prior_boxes(cfg, height, width)).to(device)


def prior_tensor(cfg, height: int, width: int, device="cpu"):
    """:func:`prior_boxes` as a float32 torch tensor [P, 4] on ``device``, cached per (cfg, H, W, device).

    The cached tensor is shared: callers must not modify it in place.
    """
    return _cached_priors(cfg, int(height), int(width), str(device))
