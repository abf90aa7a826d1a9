"""The Detector around a replay backend (stored outputs of the original implementation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.detector import Detector
from tests.runtime.conftest import ReplayBackend


def _as_array(faces) -> np.ndarray:
    """Faces → [K, 15] like the stored detections."""
    return np.array([[*f.box, f.score, *np.asarray(f.landmarks).ravel()] for f in faces], dtype=np.float32)


def test_stretch_detections_equal_reference_in_original_pixels(replay_backend, crowd_image, crowd_reference):
    faces = Detector(replay_backend, resize="stretch").detect(crowd_image)
    np.testing.assert_allclose(_as_array(faces), crowd_reference["dets_640_in_origin_coords"], rtol=0, atol=1e-4)


def test_stretch_feeds_the_reference_input(replay_backend, crowd_image, crowd_reference):
    Detector(replay_backend, resize="stretch").detect(crowd_image)
    np.testing.assert_array_equal(replay_backend.batches[0].numpy(), crowd_reference["input_640x640_bgr_minus_mean"])


def test_landmarks_are_five_points(replay_backend, crowd_image):
    faces = Detector(replay_backend, resize="stretch").detect(crowd_image)
    assert all(f.landmarks.shape == (5, 2) for f in faces)


def test_batch_groups_same_sizes_and_keeps_order(replay_backend, crowd_image):
    small = crowd_image[:312, :512]
    results = Detector(replay_backend, resize="stretch").detect_batch([crowd_image, small, crowd_image])
    assert [b.shape[0] for b in replay_backend.batches] == [3]
    # Same network outputs, different original sizes: boxes scale with the image.
    np.testing.assert_allclose(_as_array(results[1])[:, :4] * 2, _as_array(results[0])[:, :4], rtol=1e-6)
    np.testing.assert_array_equal(_as_array(results[2]), _as_array(results[0]))


def test_original_batch_runs_each_size_separately(crowd_reference):
    sizes = []

    class SizeRecorder(ReplayBackend):
        def infer_impl(self, batch):
            sizes.append(tuple(batch.shape))
            n, _, h, w = batch.shape
            p = sum(-(-h // s) * -(-w // s) * 2 for s in (8, 16, 32))
            return torch.zeros(n, p, 4), torch.zeros(n, p, 2), torch.zeros(n, p, 10)

    images = [np.zeros((64, 96, 3), np.uint8), np.zeros((40, 40, 3), np.uint8), np.zeros((64, 96, 3), np.uint8)]
    results = Detector(SizeRecorder(crowd_reference)).detect_batch(images)
    assert sorted(sizes) == [(1, 3, 40, 40), (2, 3, 64, 96)] and results == [[], [], []]


def test_fixed_size_engine_refuses_other_input_size(crowd_reference):
    with pytest.raises(RetinaFaceError, match="--input-size 640x640"):
        Detector(ReplayBackend(crowd_reference, fixed_input_size=(640, 640)), resize="stretch", input_size=(320, 320))


def test_fixed_size_engine_refuses_original_of_other_size(crowd_reference, crowd_image):
    detector = Detector(ReplayBackend(crowd_reference, fixed_input_size=(640, 640)))
    with pytest.raises(RetinaFaceError, match="--resize stretch"):
        detector.detect(crowd_image)


def test_non_array_input_is_refused(replay_backend):
    with pytest.raises(RetinaFaceError, match="numpy array"):
        Detector(replay_backend).detect("photo.jpg")


def test_pixel_limit_applies_to_arrays(replay_backend, crowd_image):
    with pytest.raises(RetinaFaceError, match="exceeds the limit"):
        Detector(replay_backend, max_pixels=1000).detect(crowd_image)


def test_close_releases_backend_and_refuses_use(replay_backend, crowd_image):
    with Detector(replay_backend, resize="stretch") as detector:
        pass
    assert replay_backend.closed
    with pytest.raises(RetinaFaceError, match="closed"):
        detector.detect(crowd_image)


def test_from_options_needs_a_model():
    with pytest.raises(RetinaFaceError, match="weights"):
        Detector.from_options()


def test_postprocess_inside_the_network_on_the_executor_finds_the_pipelines_faces(mnet_pth, crowd_image):
    from runtime.postprocess import box_iou

    options = dict(weights=str(mnet_pth), backend="torch", device="cpu", resize="stretch", input_size=(320, 320))
    with Detector.from_options(**options) as pipeline, \
            Detector.from_options(postprocess="network", **options) as network:
        assert network.backend.postprocess_in_network and network.backend.fixed_input_size == (320, 320)
        ours, theirs = (d.detect_arrays([crowd_image])[0] for d in (pipeline, network))
    confident = ours[ours[:, 4] >= 0.5]
    assert len(confident) > 5
    assert (box_iou(confident[:, :4], theirs[:, :4]).max(axis=1) >= 0.99).all()


def test_postprocess_network_needs_a_model_that_has_it(replay_backend):
    with pytest.raises(RetinaFaceError, match="--with-postprocess"):
        Detector(replay_backend, postprocess="network")


def test_thresholds_must_be_the_networks(mnet_pth):
    from retinaface_trt.thresholds import Thresholds
    from runtime.backends.executor import ExecutorBackend

    backend = ExecutorBackend(str(mnet_pth), postprocess=Thresholds().in_engine(), input_size=(160, 160))
    with pytest.raises(RetinaFaceError, match="thresholds"):
        Detector(backend, resize="stretch", input_size=(160, 160), postprocess="network",
                 thresholds=Thresholds(nms_threshold=0.3))
    assert Detector(backend, resize="stretch", input_size=(160, 160), postprocess="network").postprocess == "network"


def test_prepare_needs_a_size_where_the_canvas_is_the_images_and_is_a_no_op_on_the_cpu(replay_backend):
    with pytest.raises(RetinaFaceError, match="pass the image size"):
        Detector(replay_backend, resize="original").prepare()
    Detector(replay_backend, resize="stretch").prepare(batches=(1, 8))
    Detector(replay_backend, resize="original").prepare((1024, 624), (3,))
    assert replay_backend.batches == []                   # nothing ran: no plan to make on the CPU


def test_batches_on_the_cpu_run_as_they_come(replay_backend, crowd_image):
    """Padding to a power of two is for GPUs (one cuDNN plan per shape); on the CPU it would only cost."""
    Detector(replay_backend, resize="stretch").detect_batch([crowd_image] * 3)
    assert [b.shape[0] for b in replay_backend.batches] == [3]
