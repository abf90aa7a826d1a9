"""Agreement of the in-network post-processing (``build --with-postprocess``, run here by the executor on
the CPU) with the pipeline's detect.py post-processing (``runtime.postprocess.detect_faces``).

    python tools/measure_postprocess.py photos [IMAGE ...]        # default: $RETINAFACE_SHARED/images/*
    python tools/measure_postprocess.py wider [--limit N]         # ../shared/widerface/val_subset_416, AP each way

Both sides run the same executor network on the same image at its own size (``resize original``), so
every difference comes from the post-processing: TensorRT's plain IoU against detect.py's "+1 pixel" IoU,
and top-k 3840 against 5000. Results go to stdout as one JSON object per line (docs/tensorrt.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("RETINAFACE_SHARED", REPO.parent / "shared"))   # as the tests find it


class NetworkPostprocessDetector:
    """``detect(bgr) -> list[Face]`` with decoding and NMS inside the executor network (one per input size)."""

    def __init__(self, weights, settings):
        from network.config import config_for_weights

        self.weights, self.settings, self.cfg = weights, settings, config_for_weights(weights)
        self._programs = {}

    def _program(self, height: int, width: int):
        from network import populate_network
        from network.executor import Program, trt
        from runtime.priors import prior_boxes

        if (height, width) not in self._programs:
            network = trt.Builder(trt.Logger()).create_network(0)
            store = populate_network(trt, network, self.weights, self.cfg, input_shape=(-1, 3, height, width),
                                     postprocess=self.settings, priors=prior_boxes(self.cfg, height, width))
            self._programs[(height, width)] = (Program(network), store)
        return self._programs[(height, width)][0]

    @torch.inference_mode()
    def detections(self, bgr: np.ndarray) -> np.ndarray:
        from runtime.preprocess import to_network_input

        out = self._program(*bgr.shape[:2])({"input": to_network_input([bgr])})
        return out["dets"][0, :int(out["count"][0])].numpy()

    def detect(self, bgr: np.ndarray):
        from runtime.face import Face

        return [Face(box=tuple(float(v) for v in row[:4]), score=float(row[4]), landmarks=row[5:].reshape(5, 2))
                for row in self.detections(bgr)]


def pipeline_detections(model, bgr: np.ndarray, options) -> np.ndarray:
    """detect.py's post-processing on the executor's raw outputs: float32 [K, 15]."""
    from runtime.postprocess import detect_faces
    from runtime.preprocess import to_network_input
    from runtime.priors import prior_tensor

    height, width = bgr.shape[:2]
    with torch.inference_mode():
        loc, conf, landms = model(to_network_input([bgr]))
        priors = prior_tensor(model.cfg, height, width)
        return detect_faces(loc[0], conf[0], landms[0], priors, width, height, options).numpy()


def _iou(box, boxes):
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def compare(ours: np.ndarray, theirs: np.ndarray, threshold: float) -> dict:
    """Detections scoring ≥ threshold: counts, how many of ours have an identical row in theirs (IoU ≥ 0.999),
    and the largest element difference among those matched."""
    a, b = ours[ours[:, 4] >= threshold], theirs[theirs[:, 4] >= threshold]
    matched, worst = 0, 0.0
    for row in a:
        if len(b):
            best = int(np.argmax(_iou(row[:4], b[:, :4])))
            if _iou(row[:4], b[best:best + 1, :4])[0] >= 0.999:
                matched += 1
                worst = max(worst, float(np.abs(row - b[best]).max()))
    return {"network": len(a), "pipeline": len(b), "identical": matched, "max_abs_diff": worst}


def measure_photos(paths) -> None:
    import cv2

    from network import PostprocessSettings
    from network.runner import ExecutorModel
    from runtime.options import DetectionOptions
    from wts_export.weights import load_weights

    weights = load_weights(REPO / "weights" / "mobilenet0.25_Final.pth")
    model, network = ExecutorModel(weights), NetworkPostprocessDetector(weights, PostprocessSettings())
    for path in paths:
        bgr = cv2.imread(str(path))
        ours, theirs = network.detections(bgr), pipeline_detections(model, bgr, DetectionOptions())
        row = {"image": Path(path).name, "size": f"{bgr.shape[1]}x{bgr.shape[0]}", "all": compare(ours, theirs, 0.0),
               "score>=0.5": compare(ours, theirs, 0.5), "score>=0.6": compare(ours, theirs, 0.6)}
        print(json.dumps(row), flush=True)


def measure_wider(limit: int | None) -> None:
    from network import PostprocessSettings
    from runtime.backends.executor import TorchBackend
    from runtime.detector import Detector
    from runtime.evaluation.run import evaluate_folder
    from runtime.evaluation.widerface import load_ground_truth, read_image_list, read_scale_manifest
    from wts_export.weights import load_weights

    subset = SHARED / "widerface" / "val_subset_416"
    truth = load_ground_truth(SHARED / "widerface" / "ground_truth")
    keys = read_image_list(subset / "wider_val_subset.txt")[:limit]
    manifest = read_scale_manifest(subset / "manifest.tsv")
    weights_path = REPO / "weights" / "mobilenet0.25_Final.pth"
    detectors = {
        "pipeline (detect.py: +1 IoU, top_k 5000)": Detector(TorchBackend(str(weights_path), device="cpu")),
        "network (TensorRT NMS: plain IoU, top_k 3840)":
            NetworkPostprocessDetector(load_weights(weights_path), PostprocessSettings()),
    }
    for name, detector in detectors.items():
        start = time.perf_counter()
        summary = evaluate_folder(detector, subset / "images", truth, keys, manifest, show_progress=False)
        print(json.dumps({"post-processing": name, "images": summary["images"],
                          **{s: summary[s] for s in ("easy", "medium", "hard")},
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    photos = sub.add_parser("photos")
    photos.add_argument("images", nargs="*", type=Path)
    wider = sub.add_parser("wider")
    wider.add_argument("--limit", type=int)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.what == "photos":
        images = args.images or sorted((SHARED / "images").glob("*"))
        if not images:
            parser.error(f"no images given and none in {SHARED / 'images'} (set RETINAFACE_SHARED)")
        measure_photos(images)
    else:
        measure_wider(args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
