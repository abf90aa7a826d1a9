"""``FastDetector``: the whole detection pipeline on the device, around :class:`network.fast_runner.FastExecutorModel`.

BGR uint8 images (host) → upload as uint8 → stretch to the input size (:mod:`runtime.gpu_preprocess`,
cv2 INTER_LINEAR semantics) → minus mean → fused network (float16 / channels-last / CUDA graph on a GPU;
pre-processing and network share one graph per batch shape) → batched decode + exact greedy NMS
(:mod:`runtime.gpu_postprocess`) → faces in original pixels. The same code runs on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch

from network.fast_runner import CudaGraphed, FastExecutorModel
from network.populate import INPUT_NAME, OUTPUT_NAMES
from runtime.gpu_postprocess import detect_faces_batch
from runtime.gpu_preprocess import network_input, preprocess_batch
from runtime.options import DetectionOptions
from runtime.priors import prior_tensor
from runtime.face import Face


class FastDetector:
    """detect.py-style detection with a stretch resize to ``input_size`` (W, H), batched over images.

    ``model``: a FastExecutorModel; ``options``: detect.py's thresholds (defaults 0.02 / 5000 / 0.4 / 750).
    """

    def __init__(self, model: FastExecutorModel, input_size=(640, 640), options=DetectionOptions()):
        self.model, self.options = model, options
        self.input_size = tuple(int(v) for v in input_size)
        self.device = model.device
        self._graphed = CudaGraphed(self.network_outputs) if model.cuda_graph else None

    def network_outputs(self, images: torch.Tensor):
        """uint8 [N, H, W, 3] on the device → (loc, conf, landms) float32 for the stretched input."""
        program = self.model.program
        x = preprocess_batch(images, *self.input_size, program.dtype, program.channels_last)
        outputs = program({INPUT_NAME: x})
        return tuple(outputs[name] for name in OUTPUT_NAMES)

    def detect_device(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [N, H, W, 3] on the device → (dets [N, D, 15] in network pixels, counts [N]) on the device."""
        run = self._graphed or self.network_outputs
        loc, conf, landms = run(images)
        width, height = self.input_size
        priors = prior_tensor(self.model.cfg, height, width, self.device)
        return detect_faces_batch(loc, conf, landms, priors, width, height, self.options, self.model.cfg.variance)

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """BGR uint8 [H, W, 3] host images of one size → faces per image, in original pixels, by score.

        On the CPU, cv2 resizes and :func:`runtime.postprocess.detect_faces` runs per image (its one-kept-box-
        per-step NMS beats the IoU matrix there); on a GPU everything after the upload stays on the device.
        """
        height, width = images[0].shape[:2]
        if self.device.type == "cpu":
            return self._detect_cpu(images, np.float32([width / self.input_size[0], height / self.input_size[1]]))
        host = torch.from_numpy(np.stack(images)).pin_memory()
        dets, counts = self.detect_device(host.to(self.device, non_blocking=True))
        dets, counts = dets.cpu().numpy(), counts.cpu().tolist()
        scale = np.array([width / self.input_size[0], height / self.input_size[1]], dtype=np.float32)
        return [_faces(dets[i, :counts[i]], scale) for i in range(len(images))]

    def _detect_cpu(self, images, scale) -> list[list[Face]]:
        import cv2

        from runtime.postprocess import detect_faces

        resized = np.stack([cv2.resize(im, self.input_size, interpolation=cv2.INTER_LINEAR) for im in images])
        loc, conf, landms = self.model(network_input(torch.from_numpy(resized)))
        width, height = self.input_size
        priors = prior_tensor(self.model.cfg, height, width, self.device)
        return [_faces(detect_faces(loc[i], conf[i], landms[i], priors, width, height, self.options,
                                    self.model.cfg.variance).numpy(), scale) for i in range(len(images))]

    def detect(self, bgr: np.ndarray) -> list[Face]:
        return self.detect_batch([bgr])[0]


def _faces(dets: np.ndarray, scale: np.ndarray) -> list[Face]:
    boxes = dets[:, :4] * np.tile(scale, 2)
    points = dets[:, 5:15].reshape(-1, 5, 2) * scale
    return [Face(box=tuple(float(v) for v in box), score=float(s), landmarks=p)
            for box, s, p in zip(boxes, dets[:, 4], points)]
