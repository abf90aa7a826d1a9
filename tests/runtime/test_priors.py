"""Priors: the vectorised construction against the stored priors and a slow loop of the published rule."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from network.config import MOBILENET_0_25, RESNET_50
from runtime.priors import prior_boxes, prior_tensor


def _slow_priors(cfg, height, width):
    """The rule of RETINAFACE_FACTS.md written as plain loops (level, row, column, min size)."""
    out = []
    for step, sizes in zip(cfg.steps, cfg.min_sizes):
        for i, j in itertools.product(range(math.ceil(height / step)), range(math.ceil(width / step))):
            for m in sizes:
                out.append([(j + 0.5) * step / width, (i + 0.5) * step / height, m / width, m / height])
    return np.array(out, dtype=np.float32)


def test_priors_equal_stored_priors_at_640(crowd_reference):
    np.testing.assert_array_equal(prior_boxes(MOBILENET_0_25, 640, 640), crowd_reference["priors_640"])


def test_priors_match_slow_loop_at_odd_size():
    np.testing.assert_allclose(prior_boxes(RESNET_50, 333, 517), _slow_priors(RESNET_50, 333, 517), atol=1e-7)


def test_prior_count_uses_ceil_per_level():
    expected = sum(math.ceil(624 / s) * math.ceil(1024 / s) * 2 for s in (8, 16, 32))
    assert prior_boxes(MOBILENET_0_25, 624, 1024).shape == (expected, 4)


def test_prior_tensor_is_cached_per_size():
    first = prior_tensor(MOBILENET_0_25, 64, 96)
    assert prior_tensor(MOBILENET_0_25, 64, 96) is first
    assert prior_tensor(MOBILENET_0_25, 96, 64) is not first
    assert first.dtype == torch.float32
