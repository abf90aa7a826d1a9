"""The whole pipeline with the executor on CPU (float32) against the original implementation's detections.

Criteria: the same faces at score ≥ 0.5 (IoU ≥ 0.99), scores within 1e-3, landmarks within 0.5 px.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from runtime.backends.executor import ExecutorBackend
from runtime.detector import Detector

# Faces at score >= 0.6 found by the original at each image's own size (../shared/README.md).
REFERENCE_COUNTS = {"crowd_1024x624.jpg": 26, "selfie_1600x898.jpg": 364,
                    "children_1024x768.jpg": 8, "astronaut_512x512.png": 1}


@pytest.fixture(scope="module")
def executor(mnet_pth):
    """The executor backend on CPU, weights read independently of the project's loaders."""
    state = torch.load(mnet_pth, map_location="cpu", weights_only=True)
    backend = ExecutorBackend({k: v.numpy() for k, v in state.items()}, device="cpu")
    yield backend
    backend.close()


def _iou(box, boxes):
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area(box) + area(boxes) - inter)


def _assert_same_faces(faces, reference, min_score=0.5):
    ours = np.array([[*f.box, f.score, *np.asarray(f.landmarks).ravel()] for f in faces if f.score >= min_score])
    theirs = reference[reference[:, 4] >= min_score]
    assert len(ours) == len(theirs)
    for face in theirs:
        match = ours[np.argmax(_iou(face[:4], ours[:, :4]))]
        assert _iou(face[:4], match[None, :4])[0] >= 0.99
        assert abs(match[4] - face[4]) <= 1e-3
        assert np.abs(match[5:] - face[5:]).max() <= 0.5


def test_original_size_equals_reference(executor, crowd_image, crowd_reference):
    faces = Detector(executor, resize="original").detect(crowd_image)
    _assert_same_faces(faces, crowd_reference["dets_origin"])


def test_stretch_640_equals_reference(executor, crowd_image, crowd_reference):
    faces = Detector(executor, resize="stretch", input_size=(640, 640)).detect(crowd_image)
    _assert_same_faces(faces, crowd_reference["dets_640_in_origin_coords"])


def test_letterbox_finds_the_reference_faces(executor, crowd_image, crowd_reference):
    """Letterbox has no stored reference: its confident faces must be faces found at original size."""
    faces = [f for f in Detector(executor, resize="letterbox").detect(crowd_image) if f.score >= 0.9]
    reference = crowd_reference["dets_origin"][:, :4]
    assert len(faces) > 10
    assert all(_iou(np.array(f.box), reference).max() >= 0.5 for f in faces)


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_shared_images_face_counts(executor, shared_dir, name):
    faces = Detector(executor).detect(cv2.imread(str(shared_dir / "images" / name)))
    assert sum(f.score >= 0.6 for f in faces) == REFERENCE_COUNTS[name]


def test_cli_with_weights_file(mnet_pth, shared_dir, tmp_path):
    from runtime.cli import main as cli

    out = tmp_path / "out.json"
    image = str(shared_dir / "images" / "crowd_1024x624.jpg")
    assert cli.main(["detect", image, "--weights", str(mnet_pth), "--backend", "torch", "--device", "cpu",
                     "--json", str(out)]) == 0
    assert len(json.loads(out.read_text())[0]["faces"]) == REFERENCE_COUNTS["crowd_1024x624.jpg"]


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def cuda_detectors(mnet_pth):
    """The executor on CUDA in fp32 and fp16, as `detect --device cuda` builds it (CUDA graphs on)."""
    from runtime.backends.executor import ExecutorBackend

    backends = {p: ExecutorBackend(str(mnet_pth), device="cuda", precision=p) for p in ("fp32", "fp16")}
    yield backends
    for backend in backends.values():
        backend.close()


@pytest.mark.cuda
@gpu
@pytest.mark.parametrize("resize, key", [("original", "dets_origin"), ("stretch", "dets_640_in_origin_coords")])
def test_cuda_fp32_equals_the_original_detections(cuda_detectors, crowd_image, crowd_reference, resize, key):
    detector = Detector(cuda_detectors["fp32"], resize=resize)
    height, width = crowd_image.shape[:2]
    for call in range(4):         # PyTorch's kernels; then planned by cuDNN; captured; replayed: every call the same
        if call == 1:
            detector.prepare((width, height))
        faces = detector.detect(crowd_image)
        _assert_same_faces(faces, crowd_reference[key], min_score=0.02)
        ours = np.array([f.score for f in faces])
        assert np.abs(ours - crowd_reference[key][:, 4]).max() <= 1e-4


@pytest.mark.cuda
@gpu
@pytest.mark.parametrize("resize", ["original", "stretch"])
def test_cuda_fp16_finds_the_fp32_faces(cuda_detectors, shared_dir, resize):
    from runtime.postprocess import box_iou

    names = sorted(REFERENCE_COUNTS)
    images = [cv2.imread(str(shared_dir / "images" / n)) for n in names]
    full, half = (Detector(cuda_detectors[p], resize=resize).detect_arrays(images) for p in ("fp32", "fp16"))
    total = matched = 0
    for reference, candidate in zip(full, half):
        reference = reference[reference[:, 4] >= 0.5]
        total += len(reference)
        if len(reference) and len(candidate):
            matched += int((box_iou(reference[:, :4], candidate[:, :4]).max(axis=1) >= 0.9).sum())
    floor = {"original": 390, "stretch": 120}[resize]  # fp32 finds 399 / 132 such faces on these photos
    assert total >= floor and matched >= 0.99 * total, (matched, total)


@pytest.mark.cuda
@gpu
@pytest.mark.parametrize("resize", ["original", "stretch", "padded"])
def test_cuda_batches_from_two_threads_get_what_one_thread_gets(cuda_detectors, shared_dir, resize):
    """Batches are staged and uploaded outside the detector's lock (each thread its own buffers, the copies on the
    upload stream): two threads detecting at once get, bit for bit, what one thread gets one batch after another."""
    from concurrent.futures import ThreadPoolExecutor

    photos = [cv2.imread(str(shared_dir / "images" / n)) for n in sorted(REFERENCE_COUNTS)]
    batches = [[photo] * n for n in (1, 3, 2) for photo in photos]
    detector = Detector(cuda_detectors["fp32"], resize=resize)
    for photo in photos:           # every shape planned by cuDNN and captured before the first comparison
        detector.prepare((photo.shape[1], photo.shape[0]), (1, 2, 3))
    alone = [detector.detect_arrays(batch) for batch in batches]
    for _ in range(2):
        with ThreadPoolExecutor(2) as pool:
            together = list(pool.map(detector.detect_arrays, batches))
        for one, two in zip(alone, together):
            assert all(np.array_equal(a, b) for a, b in zip(one, two))


@pytest.mark.cuda
@gpu
def test_cuda_batches_run_padded_to_a_power_of_two_and_padding_changes_no_detection(cuda_detectors, shared_dir):
    """Three photos run as a batch of four (one blank canvas, its detections dropped); each photo's detections
    are those of the photo alone (batch 1: other cuDNN kernels, so within float32 rounding) and, bit for bit,
    those of a batch of four real photos."""
    backend = cuda_detectors["fp32"]
    photo = cv2.imread(str(shared_dir / "images" / "crowd_1024x624.jpg"))
    photos = [photo, cv2.flip(photo, 1), cv2.GaussianBlur(photo, (5, 5), 0)]
    detector = Detector(backend, resize="stretch")
    three = detector.detect_arrays(photos)
    assert backend._tuning._run.get((4, 3, 640, 640)) and (3, 3, 640, 640) not in backend._tuning._run
    four = detector.detect_arrays(photos + [photo])
    assert all(np.array_equal(a, b) for a, b in zip(three, four))
    for together, image in zip(three, photos):
        alone = detector.detect_batch([image])[0]
        assert len(together[together[:, 4] >= 0.5]) > 5
        _assert_same_faces(alone, together, min_score=0.02)


@pytest.mark.cuda
@gpu
def test_cuda_prepare_plans_and_captures_every_bucket_asked_for(mnet_pth):
    backend = ExecutorBackend(str(mnet_pth), device="cuda", precision="fp32")
    try:
        detector = Detector(backend, resize="stretch")
        detector.prepare(batches=(1, 3))
        assert backend.settled((1, 3, 640, 640)) and backend.settled((4, 3, 640, 640))
        assert not backend.settled((2, 3, 640, 640))
        assert set(detector._graphs["detect"]._graphs) == {("detect", 1, 640, 640, 3), ("detect", 4, 640, 640, 3)}
    finally:
        backend.close()
