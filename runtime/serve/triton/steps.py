"""What the repository's Python models compute, as functions of numpy arrays (testable without Triton).

The models (``models/*.py``, copied into the repository as ``model.py``) only unpack Triton's requests,
call these functions and pack the responses. Each step is the runtime's own code: decoding
(:mod:`runtime.image_io`), the resize policies and the network input (:mod:`runtime.preprocess`), the priors
(:mod:`runtime.priors`) and the batched post-processing, so a face from Triton is the SDK's face.
"""

from __future__ import annotations

import json

import numpy as np

from retinaface_trt import detections
from runtime.face import Face, reported_rows
from runtime.postprocess import detect_faces_batch
from retinaface_trt.thresholds import Thresholds


def parameters(model_config) -> dict[str, str]:
    """The ``parameters`` of a model config (JSON text or dict, as Triton hands it over) as {key: string}."""
    config = json.loads(model_config) if isinstance(model_config, str) else model_config
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


def prepare(encoded, resize: str, input_size: tuple[int, int], max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Encoded images (bytes each) → network input float32 [N, 3, H, W] and transforms float64 [N, 4].

    A transform row is (scale_x, scale_y, offset_x, offset_y) of :class:`runtime.preprocess.Transform`.
    Raises RetinaFaceError (the SDK's line, source ``IMAGE``) for an image that cannot be used.
    """
    from runtime.image_io import decode_image
    from runtime.preprocess import resize_image, to_network_input

    images, transforms = [], []
    for data in encoded:
        bgr = decode_image(bytes(data), source="IMAGE", max_pixels=max_pixels)
        image, transform = resize_image(bgr, resize, input_size)
        images.append(image)
        transforms.append((transform.scale_x, transform.scale_y, transform.offset_x, transform.offset_y))
    return to_network_input(images).numpy(), np.asarray(transforms, dtype=np.float64).reshape(-1, 4)


def postprocess(outputs: tuple[np.ndarray, np.ndarray, np.ndarray], transforms: np.ndarray, cfg,
                input_size: tuple[int, int], options: Thresholds, vis_threshold: float) -> list:
    """Network outputs (loc [N, P, 4], conf [N, P, 2], landms [N, P, 10]) → per image (boxes [K, 4],
    scores [K], landmarks [K, 10]) in original pixels, score ≥ ``vis_threshold``, by score descending."""
    import torch

    from runtime.priors import prior_tensor
    from runtime.preprocess import Transform

    width, height = input_size
    priors = prior_tensor(cfg, height, width, "cpu")
    loc, conf, landms = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in outputs)
    dets, counts = detect_faces_batch(loc, conf, landms, priors, width, height, options, cfg.variance)
    faces = []
    for rows, count, row in zip(dets.numpy(), counts.tolist(), transforms):
        rows = reported_rows(rows[:count], vis_threshold)
        transform = Transform(*(float(v) for v in row))   # Python floats: the arithmetic of the Detector
        faces.append((transform.boxes_to_original(detections.boxes(rows)), detections.scores(rows).copy(),
                      transform.boxes_to_original(detections.landmarks(rows))))
    return faces


def pad(faces: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-image (boxes, scores, landmarks) → BOXES [B, D, 4], SCORES [B, D], LANDMARKS [B, D, 10], COUNT
    int32 [B, 1], D the largest count; rows past an image's count are zeros."""
    depth = max((len(scores) for _, scores, _ in faces), default=0)
    boxes = np.zeros((len(faces), depth, 4), np.float32)
    scores = np.zeros((len(faces), depth), np.float32)
    landmarks = np.zeros((len(faces), depth, 10), np.float32)
    for i, (b, s, m) in enumerate(faces):
        boxes[i, :len(s)], scores[i, :len(s)], landmarks[i, :len(s)] = b, s, m
    counts = np.array([[len(s)] for _, s, _ in faces], dtype=np.int32).reshape(-1, 1)
    return boxes, scores, landmarks, counts


def faces_from_outputs(boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray, count) -> list[Face]:
    """One image's ensemble outputs (BOXES [D, 4], SCORES [D], LANDMARKS [D, 10], COUNT) → its Faces."""
    n = int(np.asarray(count).reshape(-1)[0])
    return [Face(box=tuple(float(v) for v in boxes[i]), score=float(scores[i]),
                 landmarks=np.asarray(landmarks[i], np.float32).reshape(5, 2)) for i in range(n)]
