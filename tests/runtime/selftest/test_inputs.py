"""The selftest's synthetic inputs (runtime.selftest.inputs): seeded, shared across batch sizes, with faces."""

from __future__ import annotations

import numpy as np
import torch

from runtime.selftest.inputs import _face_boxes, network_batch, synthetic_image


def test_images_are_seeded_and_shared_by_batches_of_one_size():
    four = network_batch(4, 72, 40)
    assert torch.equal(network_batch(1, 72, 40), four[:1]) and not torch.equal(four[0], four[1])
    assert not np.array_equal(synthetic_image(0, 72, 40, seed=1), synthetic_image(0, 72, 40))


def test_the_batch_is_float32_nchw_bgr_minus_the_mean():
    batch = network_batch(2, 64, 96)
    assert batch.shape == (2, 3, 64, 96) and batch.dtype == torch.float32 and batch.is_contiguous()
    image = synthetic_image(1, 64, 96).astype(np.float32)
    expected = torch.from_numpy(image - np.array([104, 117, 123], np.float32)).permute(2, 0, 1)
    assert torch.equal(batch[1], expected)


def test_faces_do_not_overlap_and_fit_in_the_image():
    boxes = _face_boxes(np.random.default_rng(5), 328, 200)
    assert len(boxes) >= 4
    # Each face with its hair and margin; centres are whole pixels, so allow one pixel.
    extents = [(x - 0.55 * s + 1, y - 0.7 * s + 1, x + 0.55 * s - 1, y + 0.7 * s - 1) for x, y, s in boxes]
    assert all(0 <= a[0] and a[2] <= 200 and 0 <= a[1] and a[3] <= 328 for a in extents)
    assert not any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                   for i, a in enumerate(extents) for b in extents[i + 1:])


def test_the_published_checkpoint_finds_the_drawn_faces(mnet_pth):
    from runtime.backends.executor import ExecutorBackend
    from runtime.compare import detections

    backend = ExecutorBackend(mnet_pth)
    faces = detections(backend.infer(network_batch(1, 640, 640)), backend.cfg, 640, 640, 0.5)[0]
    assert len(faces) >= 25 and float(faces[:, 4].max()) > 0.95
