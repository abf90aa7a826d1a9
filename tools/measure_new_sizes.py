"""What a new image size costs on a CUDA GPU: ``Detector.detect`` on photos of one-off sizes, and the first
three calls of one size (the first runs PyTorch's own kernels, the second hands the size to cuDNN and captures
the CUDA graph, the later ones replay it). For docs/benchmarks.md.

    python tools/measure_new_sizes.py WEIGHTS IMAGE [--precision fp32] [--sizes 40]

Prints one JSON object: the median, mean and largest ms of the one-off sizes (300 to 1400 px per side, seeded),
the ms of the first three calls of 1000×700, and the median of 15 later calls.
"""

import argparse
import json
import time

import cv2
import numpy as np
import torch

from runtime.backends.executor import ExecutorBackend
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
    parser.add_argument("--sizes", type=int, default=40)
    args = parser.parse_args()
    image = cv2.imread(args.image)
    detector = Detector(ExecutorBackend(args.weights, device="cuda", precision=args.precision))
    detector.detect(cv2.resize(image, (320, 320)))      # CUDA and the backend initialised outside the timing
    sizes = np.random.default_rng(2).integers(300, 1400, (args.sizes, 2))
    one_off = [timed_ms(detector, cv2.resize(image, (int(w), int(h)))) for w, h in sizes]
    same = cv2.resize(image, (1000, 700))
    repeated = [timed_ms(detector, same) for _ in range(20)]
    print(json.dumps({"device": torch.cuda.get_device_name(), "precision": args.precision,
                      "one_off_median_ms": float(np.median(one_off)), "one_off_mean_ms": float(np.mean(one_off)),
                      "one_off_max_ms": float(np.max(one_off)), "first_three_calls_of_1000x700_ms": repeated[:3],
                      "later_median_ms": float(np.median(repeated[5:]))}))


if __name__ == "__main__":
    main()
