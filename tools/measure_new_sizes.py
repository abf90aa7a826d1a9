"""What a new image size costs on a CUDA GPU, and what it takes to pay for its plan: the figures behind
``runtime.backends.executor.TUNE_AFTER_PIXELS`` (docs/benchmarks.md).

    python tools/measure_new_sizes.py WEIGHTS IMAGE [--precision fp32] [--sizes 12]

For ``--sizes`` one-off sizes (300 to 1400 px per side, seeded), ``Detector.detect`` of the image resized to
each: its first call (PyTorch's own kernels, as every call of a size runs until it has earned a plan), then the
call that plans it with cuDNN (:meth:`Backend.settle` first), then the median of 5 later calls (planned,
captured as a CUDA graph, replayed). Prints one JSON object: the medians over the sizes of those three (ms), the
untuned and planned ms per megapixel, and the megapixels a size must run untuned to have paid for its plan
(plan cost ÷ the difference per megapixel): what ``TUNE_AFTER_PIXELS`` should be for this GPU and precision.
"""

import argparse
import json
import time

import cv2
import numpy as np
import torch

from runtime.backends.executor import TUNE_AFTER_PIXELS, ExecutorBackend
from runtime.detector import Detector


def timed_ms(detector: Detector, image: np.ndarray) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    detector.detect(image)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights")
    parser.add_argument("image")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    parser.add_argument("--sizes", type=int, default=12)
    args = parser.parse_args()
    image = cv2.imread(args.image)
    backend = ExecutorBackend(args.weights, device="cuda", precision=args.precision)
    detector = Detector(backend)
    detector.detect(cv2.resize(image, (320, 320)))      # CUDA and the backend initialised outside the timing
    rows = []
    for width, height in np.random.default_rng(2).integers(300, 1400, (args.sizes, 2)).tolist():
        resized = cv2.resize(image, (width, height))
        first = timed_ms(detector, resized)
        backend.settle((1, 3, height, width))
        planned = timed_ms(detector, resized)
        later = float(np.median([timed_ms(detector, resized) for _ in range(6)][1:]))
        rows.append((width * height / 1e6, first, planned, later))
    megapixels, first, planned, later = (np.array(column) for column in zip(*rows))
    untuned_per_mp, tuned_per_mp = float(np.median(first / megapixels)), float(np.median(later / megapixels))
    plan_ms = float(np.median(planned - later))
    print(json.dumps({
        "device": torch.cuda.get_device_name(), "precision": args.precision, "sizes": len(rows),
        "megapixels_median": round(float(np.median(megapixels)), 3),
        "first_call_ms": round(float(np.median(first)), 2), "planning_call_ms": round(float(np.median(planned)), 1),
        "later_ms": round(float(np.median(later)), 3),
        "untuned_ms_per_megapixel": round(untuned_per_mp, 2), "tuned_ms_per_megapixel": round(tuned_per_mp, 2),
        "plan_paid_after_megapixels": round(plan_ms / max(untuned_per_mp - tuned_per_mp, 1e-9), 1),
        "TUNE_AFTER_PIXELS_megapixels": TUNE_AFTER_PIXELS[args.precision] / 1e6}))


if __name__ == "__main__":
    main()
