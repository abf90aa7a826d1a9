"""The original implementation's pipeline, written again independently: the baseline and the reference.

What detect.py does per image: ``cv2.resize`` to the input size (stretch), float32 minus (104, 117, 123),
the PyTorch model eagerly on the device, outputs copied to the host, priors rebuilt with Python loops, NumPy
decode, threshold, sort, top-k, greedy NMS in NumPy (one step per kept box, "+1 pixel" areas), keep_top_k.
It shares no code with the pipeline (:mod:`runtime.detector`): ``benchmark --baseline`` times it, and the tests
compare the pipeline's detections with it. One deliberate difference from detect.py: equal scores keep prior
order (a stable sort), where detect.py's ``argsort()[::-1]`` leaves their order to NumPy's unstable quicksort.
"""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import torch

from retinaface_trt.thresholds import Thresholds
from runtime.preprocess import MEAN_BGR


def loop_priors(cfg, height: int, width: int) -> np.ndarray:
    """Priors [P, 4] (cx, cy, w, h) built cell by cell in Python, as the original PriorBox does."""
    anchors = []
    for step, sizes in zip(cfg.steps, cfg.min_sizes):
        for i, j in itertools.product(range(math.ceil(height / step)), range(math.ceil(width / step))):
            for m in sizes:
                anchors += [(j + 0.5) * step / width, (i + 0.5) * step / height, m / width, m / height]
    return np.array(anchors, dtype=np.float32).reshape(-1, 4)


def numpy_nms(dets: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS over dets [K, 5] (x1, y1, x2, y2, score): indices kept, by score ("+1 pixel" areas)."""
    x1, y1, x2, y2, scores = dets.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = np.argsort(-scores, kind="stable"), []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= threshold]
    return keep


class OriginalPipeline:
    """``detect(bgr) -> dets [K, 15]`` in original pixels, with the model (wts_export RetinaFace) on ``device``."""

    def __init__(self, model: torch.nn.Module, cfg, device, input_size=(640, 640), options=Thresholds()):
        self.model, self.cfg, self.device = model.to(device).eval(), cfg, torch.device(device)
        self.input_size, self.options = tuple(input_size), options

    @torch.no_grad()
    def detect(self, bgr: np.ndarray) -> np.ndarray:
        width, height = self.input_size
        image = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        image -= np.array(MEAN_BGR, dtype=np.float32)
        x = torch.from_numpy(image.transpose(2, 0, 1)).unsqueeze(0).to(self.device)
        loc, conf, landms = (t[0].cpu().numpy() for t in self.model(x))
        dets = self._postprocess(loc, conf, landms, loop_priors(self.cfg, height, width))
        sx, sy = bgr.shape[1] / width, bgr.shape[0] / height
        dets[:, 0:4] *= [sx, sy, sx, sy]
        dets[:, 5:15] *= [sx, sy] * 5
        return dets

    def _postprocess(self, loc, conf, landms, priors) -> np.ndarray:
        width, height = self.input_size
        v0, v1 = self.cfg.variance
        centre = priors[:, :2] + loc[:, :2] * v0 * priors[:, 2:]
        size = priors[:, 2:] * np.exp(loc[:, 2:] * v1)
        boxes = np.concatenate([centre - size / 2, centre + size / 2], 1) * [width, height, width, height]
        points = (priors[:, None, :2] + landms.reshape(-1, 5, 2) * v0 * priors[:, None, 2:]).reshape(-1, 10)
        points = points * np.tile([width, height], 5)
        scores = conf[:, 1]
        index = np.where(scores > self.options.confidence_threshold)[0]
        index = index[np.argsort(-scores[index], kind="stable")[:self.options.top_k]]
        dets = np.hstack([boxes[index], scores[index, None], points[index]]).astype(np.float32)
        keep = numpy_nms(dets[:, :5], self.options.nms_threshold)[:self.options.keep_top_k]
        return dets[keep]
